use serde_json::json;

use super::*;
use crate::domain::{Event, TimelineKind};
use crate::flow::FlowSet;
use crate::testing::{at, email_bounced, order_placed, repo_flows};

fn event(value: serde_json::Value) -> Event {
    Event::parse(&value).unwrap()
}

/// The shipped store policy plus a marketing flow with a wait, for timing rules.
fn flows_with_thank_you() -> FlowSet {
    let mut files = vec![
        ("store.yaml".to_owned(), std::fs::read_to_string(crate::testing::flows_dir().join("store.yaml")).unwrap()),
        (
            "thanks.yaml".to_owned(),
            "id: thanks\ncategory: marketing\ntrigger: {event: order_placed}\nkey: order\nexit_on: [{event: order_cancelled, same_order: true}]\nsteps:\n  - {id: wait_1h, wait: 1h}\n  - {id: thank, send: thanks}\n".to_owned(),
        ),
        (
            "promo.yaml".to_owned(),
            "id: promo\ncategory: marketing\npromotional: true\ntrigger: {event: promo_requested}\nkey: event\nsteps:\n  - {id: offer, send: thanks}\n".to_owned(),
        ),
    ];
    files.push(("templates/ja/thanks.mjml".to_owned(), "---\nsubject: ありがとう\n---\n<mjml><mj-body></mj-body></mjml>".to_owned()));
    FlowSet::from_files(files).unwrap()
}

fn consenting_order(id: &str, order: &str, occurred_at: &str) -> Event {
    let mut v = order_placed(id, "c1", order, occurred_at);
    v["customer"]["marketing_consent"] = json!(true);
    event(v)
}

/// A copy of a state is what a decision changes: equal to its original, sharing what most
/// decisions leave alone (the enrollments' list, the finished ids, the order-only maps), with room
/// in the send list for the send a decision adds (the derived clone had none).
#[test]
fn a_copied_state_is_equal_and_has_room_to_grow() {
    let flows = repo_flows();
    let order = event(order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00"));
    let state = decide(&flows, None, Input::Event(&order), at("2026-11-20T01:15:00Z")).state;
    assert!(!state.enrollments.is_empty() && !state.finished.is_empty() && !state.recent_sends.is_empty(), "{state:?}");
    let copy = state.clone();
    assert_eq!(copy, state);
    // The enrollments' list is shared until it changes, and then copied with room for one more.
    assert!(copy.enrollments.is_shared_with(&state.enrollments));
    let mut changed = copy.clone();
    let list = changed.enrollments.to_mut();
    assert!(list.capacity() > list.len());
    assert!(!changed.enrollments.is_shared_with(&state.enrollments) && changed.enrollments[..] == state.enrollments[..]);
    assert!(copy.recent_sends.capacity() > copy.recent_sends.len());
    assert_eq!(copy.finished.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>(), state.finished.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>());
    assert!(Arc::ptr_eq(&copy.finished, &state.finished));
    // The order-only maps are shared, and an order decided on the copy leaves the original's as they were.
    assert!(Arc::ptr_eq(&copy.profile.sku_order_counts, &state.profile.sku_order_counts));
    assert!(Arc::ptr_eq(&copy.profile.total_spent, &state.profile.total_spent));
    // So are the send records, and an open decided on a copy marks the copy's record only.
    assert!(Arc::ptr_eq(&copy.recent_sends[0], &state.recent_sends[0]));
    let opened = event(json!({"id": "o1", "type": "email_opened", "occurred_at": "2026-11-20T12:00:00+09:00", "customer": {"id": "c1"},
                              "email": {"flow": "order_confirmation"}}));
    let marked = decide(&flows, Some(copy.clone()), Input::Event(&opened), at("2026-11-20T03:00:00Z")).state;
    assert_eq!(marked.recent_sends[0].opened_at, Some(at("2026-11-20T03:00:00Z")), "the open is marked on the copy");
    assert_eq!(state.recent_sends[0].opened_at, None, "and not on the original");
    assert!(marked.enrollments.is_shared_with(&state.enrollments), "an open that changes no enrollment leaves their list shared");
    assert!(Arc::ptr_eq(&marked.finished, &state.finished), "and the finished ids");
    let before = (state.profile.sku_order_counts.clone(), state.profile.total_spent.clone());
    let second = event(order_placed("e2", "c1", "A2", "2026-11-21T10:15:00+09:00"));
    let after = decide(&flows, Some(copy), Input::Event(&second), at("2026-11-21T01:15:00Z")).state;
    assert_ne!(after.profile.sku_order_counts, before.0, "the second order is counted on the copy");
    assert!(after.has_finished("order_confirmation:A2") && !state.has_finished("order_confirmation:A2"), "its receipt ends on the copy only");
    assert_eq!((state.profile.sku_order_counts.clone(), state.profile.total_spent.clone()), before, "and not on the original");
    // A delivery whose customer fields the profile already has leaves the profile shared.
    let mut delivered = order_placed("d1", "c1", "A1", "2026-11-22T13:00:00+09:00");
    delivered["type"] = json!("order_delivered");
    let decided = decide(&flows, Some(state.clone()), Input::Event(&event(delivered)), at("2026-11-22T04:00:00Z")).state;
    assert!(Arc::ptr_eq(&decided.profile, &state.profile), "a delivery that changes nothing of the profile leaves it shared");
}

/// Sends older than the recent-sends window are forgotten at the next decision; the newer
/// ones stay, in order.
#[test]
fn sends_older_than_the_window_are_forgotten() {
    let flows = repo_flows();
    let first = event(order_placed("e1", "c1", "A1", "2026-10-01T10:00:00+09:00"));
    let state = decide(&flows, None, Input::Event(&first), at("2026-10-01T01:00:00Z")).state;
    let second = event(order_placed("e2", "c1", "A2", "2026-10-20T10:00:00+09:00"));
    let state = decide(&flows, Some(state), Input::Event(&second), at("2026-10-20T01:00:00Z")).state;
    let sent_at: Vec<_> = state.recent_sends.iter().map(|s| s.at).collect();
    assert_eq!(sent_at, [at("2026-10-01T01:00:00Z"), at("2026-10-20T01:00:00Z")], "one receipt each");
    let opened = event(json!({"id": "o1", "type": "email_opened", "occurred_at": "2026-11-05T10:00:00+09:00", "customer": {"id": "c1"},
                              "email": {"flow": "order_confirmation"}}));
    let later = decide(&flows, Some(state), Input::Event(&opened), at("2026-11-05T01:00:00Z"));
    assert!(later.changed);
    let kept: Vec<_> = later.state.recent_sends.iter().map(|s| s.at).collect();
    assert_eq!(kept, [at("2026-10-20T01:00:00Z")], "the first receipt is past the 30 days");
}

#[test]
fn an_order_sends_its_confirmation_at_once() {
    let flows = repo_flows();
    let now = at("2026-11-20T01:15:00Z");
    let order = event(order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00"));
    let decision = decide(&flows, None, Input::Event(&order), now);
    let sends: Vec<_> = decision.sends().map(|s| (s.flow.as_str(), s.template.as_str(), s.category)).collect();
    assert_eq!(sends, vec![("order_confirmation", "order_confirmation", Category::Transactional)]);
    assert!(!decision.state.enrollments.iter().any(|e| e.flow == "order_confirmation"), "a one-step flow completes at once");
    assert!(decision.state.has_finished("order_confirmation:A1"));
    assert_eq!(decision.state.profile.orders_count, 1);

    // The same order again (under another event id) does not confirm twice.
    let again = event(order_placed("e2", "c1", "A1", "2026-11-20T10:16:00+09:00"));
    let second = decide(&flows, Some(decision.state), Input::Event(&again), now);
    assert_eq!(second.sends().count(), 0);
}

#[test]
fn transactional_ignores_consent_but_not_a_permanent_bounce() {
    let flows = repo_flows();
    let now = at("2026-11-20T01:15:00Z");
    let mut state = None;
    for v in [order_placed("e1", "c1", "A1", "2026-11-20T10:00:00+09:00"), json!({"id": "u", "type": "unsubscribed", "occurred_at": "2026-11-20T10:01:00+09:00", "customer": {"id": "c1"}})] {
        state = Some(decide(&flows, state, Input::Event(&event(v)), now).state);
    }
    let transient = decide(&flows, state.clone(), Input::Event(&event(email_bounced("b1", "c1", "transient", "2026-11-20T10:02:00+09:00"))), now);
    let order = event(order_placed("e2", "c1", "A2", "2026-11-20T10:03:00+09:00"));
    assert_eq!(decide(&flows, Some(transient.state), Input::Event(&order), now).sends().count(), 1, "unsubscribe and transient bounce do not stop receipts");

    let permanent = decide(&flows, state, Input::Event(&event(email_bounced("b2", "c1", "permanent", "2026-11-20T10:02:00+09:00"))), now);
    let blocked = decide(&flows, Some(permanent.state), Input::Event(&order), now);
    assert_eq!(blocked.sends().count(), 0);
    let skipped = blocked.timeline.iter().find(|e| e.kind == TimelineKind::Skipped).expect("skip is on the timeline");
    assert_eq!(skipped.reason.as_deref(), Some("suppressed"));
}

#[test]
fn a_wait_becomes_one_schedule_and_its_callback_sends_once() {
    let flows = flows_with_thank_you();
    let order = consenting_order("e1", "A1", "2026-11-20T10:15:00+09:00");
    let first = decide(&flows, None, Input::Event(&order), at("2026-11-20T01:15:00Z"));
    let schedules: Vec<_> = first.effects.iter().filter_map(|e| if let Effect::Schedule(s) = e { Some(s.clone()) } else { None }).collect();
    assert_eq!(schedules.len(), 1);
    assert_eq!(schedules[0].at, at("2026-11-20T02:15:00Z"), "exactly +1h from occurred_at");
    assert!(schedules[0].name.len() <= 64 && schedules[0].name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    assert_eq!(first.sends().count(), 0);

    let due = schedules[0].due.clone();
    let fired = decide(&flows, Some(first.state.clone()), Input::Due(&due), at("2026-11-20T02:15:01Z"));
    assert_eq!(fired.sends().map(|s| s.template.as_str()).collect::<Vec<_>>(), vec!["thanks"]);
    // A duplicate or late callback is a no-op.
    let duplicate = decide(&flows, Some(fired.state.clone()), Input::Due(&due), at("2026-11-20T02:16:00Z"));
    assert!(!duplicate.changed);
    assert_eq!(duplicate.sends().count(), 0);
    // So is a callback of another generation.
    let stale = DueStep { generation: due.generation + 1, ..due };
    assert!(!decide(&flows, Some(first.state), Input::Due(&stale), at("2026-11-20T02:16:00Z")).changed);
}

#[test]
fn an_exit_before_the_due_time_cancels_the_schedule() {
    let flows = flows_with_thank_you();
    let order = consenting_order("e1", "A1", "2026-11-20T10:15:00+09:00");
    let first = decide(&flows, None, Input::Event(&order), at("2026-11-20T01:15:00Z"));
    let cancel = event(json!({"id": "x1", "type": "order_cancelled", "occurred_at": "2026-11-20T10:30:00+09:00",
        "customer": {"id": "c1"}, "order": {"id": "A1"}}));
    let other_cancel = event(json!({"id": "x0", "type": "order_cancelled", "occurred_at": "2026-11-20T10:30:00+09:00",
        "customer": {"id": "c1"}, "order": {"id": "B9"}}));
    let unrelated = decide(&flows, Some(first.state.clone()), Input::Event(&other_cancel), at("2026-11-20T01:30:00Z"));
    assert_eq!(unrelated.state.enrollments.len(), 1, "another order's cancel does not exit");
    let exited = decide(&flows, Some(first.state), Input::Event(&cancel), at("2026-11-20T01:30:00Z"));
    assert!(exited.state.enrollments.is_empty());
    assert!(exited.effects.iter().any(|e| matches!(e, Effect::Unschedule { .. })));
    assert!(exited.timeline.iter().any(|e| e.kind == TimelineKind::Exited && e.reason.as_deref() == Some("exit_on:order_cancelled")));
}

#[test]
fn marketing_due_in_quiet_hours_moves_to_nine_local() {
    let flows = flows_with_thank_you();
    // 20:30 JST + 1h = 21:30 JST: quiet, so 09:00 JST next day.
    let order = consenting_order("e1", "A1", "2026-11-20T20:30:00+09:00");
    let decision = decide(&flows, None, Input::Event(&order), at("2026-11-20T11:30:00Z"));
    let at_ = decision.effects.iter().find_map(|e| if let Effect::Schedule(s) = e { Some(s.at) } else { None }).unwrap();
    assert_eq!(at_, at("2026-11-21T00:00:00Z"));
}

#[test]
fn marketing_needs_consent_and_promotional_obeys_smart_sending() {
    let flows = flows_with_thank_you();
    let promo = |id: &str, consent: bool| {
        event(json!({"id": id, "type": "promo_requested", "occurred_at": "2026-11-20T12:00:00+09:00",
            "customer": {"id": "c1", "email": "c1@example.jp", "marketing_consent": consent}}))
    };
    let noon = at("2026-11-20T03:00:00Z");
    let refused = decide(&flows, None, Input::Event(&promo("p0", false)), noon);
    assert_eq!(refused.timeline.iter().find(|e| e.kind == TimelineKind::Skipped).and_then(|e| e.reason.clone()).as_deref(), Some("no_consent"));
    let first = decide(&flows, Some(refused.state), Input::Event(&promo("p1", true)), noon);
    assert_eq!(first.sends().count(), 1);
    let second = decide(&flows, Some(first.state.clone()), Input::Event(&promo("p2", true)), noon + Duration::hours(8));
    assert_eq!(second.timeline.iter().find(|e| e.kind == TimelineKind::Skipped).and_then(|e| e.reason.clone()).as_deref(), Some("smart_sending"));
    let later = decide(&flows, Some(first.state), Input::Event(&promo("p3", true)), noon + Duration::hours(22));
    assert_eq!(later.sends().count(), 1, "outside the 16h window (and quiet hours) it sends");
}

#[test]
fn a_removed_step_ends_the_enrollment_with_a_reason() {
    let flows = flows_with_thank_you();
    let order = consenting_order("e1", "A1", "2026-11-20T10:15:00+09:00");
    let first = decide(&flows, None, Input::Event(&order), at("2026-11-20T01:15:00Z"));
    let due = first.state.enrollments[0].clone();
    let mut files = vec![("store.yaml".to_owned(), std::fs::read_to_string(crate::testing::flows_dir().join("store.yaml")).unwrap())];
    files.push(("thanks.yaml".into(), "id: thanks\ncategory: marketing\ntrigger: {event: order_placed}\nkey: order\nsteps:\n  - {id: renamed_wait, wait: 2h}\n  - {id: thank, send: thanks}\n".into()));
    files.push(("templates/ja/thanks.mjml".into(), "---\nsubject: x\n---\n<mjml></mjml>".into()));
    let edited = FlowSet::from_files(files).unwrap();
    let step = DueStep::of(&first.state.profile.id, &due);
    let fired = decide(&edited, Some(first.state), Input::Due(&step), at("2026-11-20T02:15:00Z"));
    assert!(fired.timeline.iter().any(|e| e.reason.as_deref() == Some("step_removed:wait_1h")));
    assert_eq!(fired.sends().count(), 0);
}

/// A loaded state shares its enrollments with the store's copy; a decision copies only the
/// ones it changes, and the store's copy stays as it was.
#[test]
fn a_decision_copies_only_the_enrollments_it_changes() {
    let flows = repo_flows();
    let mut order = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    order["customer"]["marketing_consent"] = json!(true);
    let stored = decide(&flows, None, Input::Event(&event(order)), at("2026-11-20T01:15:00Z")).state;
    assert!(stored.enrollments.len() >= 3, "an order starts several flows");
    let loaded = stored.clone();
    let next = loaded.enrollments.iter().filter(|e| e.due_at.is_some()).min_by_key(|e| e.due_at).unwrap().clone();
    let step = DueStep::of(&loaded.profile.id, &next);
    let fired = decide(&flows, Some(loaded), Input::Due(&step), next.due_at.unwrap());
    assert!(fired.changed);
    let shared = fired.state.enrollments.iter().filter(|e| stored.enrollments.iter().any(|s| Arc::ptr_eq(e, s))).count();
    assert_eq!(shared, stored.enrollments.len() - 1, "all but the one that ran are still shared");
    let as_stored = stored.enrollments.iter().find(|e| e.id == next.id).unwrap();
    assert_eq!(**as_stored, *next, "the store's copy of the enrollment that ran is unchanged");
}

mod properties {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Clone)]
    enum Step {
        Order(u8),
        Ship(u8),
        Deliver(u8),
        Cancel(u8),
        Checkout,
        Register,
        Open,
        Unsubscribe,
        Subscribe,
        Complain,
        Bounce(bool),
        Duplicate,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..5).prop_map(Step::Order),
            2 => (0u8..5).prop_map(Step::Ship),
            2 => (0u8..5).prop_map(Step::Deliver),
            1 => (0u8..5).prop_map(Step::Cancel),
            1 => Just(Step::Checkout),
            1 => Just(Step::Register),
            2 => Just(Step::Open),
            1 => Just(Step::Unsubscribe),
            1 => Just(Step::Subscribe),
            1 => Just(Step::Complain),
            1 => any::<bool>().prop_map(Step::Bounce),
            1 => Just(Step::Duplicate),
        ]
    }

    fn marketing_allowed(p: &crate::domain::Profile) -> bool {
        p.marketing_consent && !p.unsubscribed && !p.complained && !p.bounced
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]
        #[test]
        fn the_default_flows_keep_their_promises(steps in proptest::collection::vec((step(), 0i64..240), 1..40)) {
            let flows = repo_flows();
            let mut state: Option<CustomerState> = None;
            // One send per step execution: (enrollment, its entry time, step, schedule generation).
            let mut sent: Vec<(Name, String, Name, u32)> = Vec::new();
            let key = |s: &SendIntent| (s.enrollment_id.clone(), s.enrollment.entered_at.to_rfc3339(), s.step_id.clone(), s.enrollment.generation);
            let mut seen_ids: BTreeSet<String> = BTreeSet::new();
            let mut ordered: BTreeSet<u8> = BTreeSet::new();
            let mut bounced_before: BTreeSet<u8> = BTreeSet::new();
            let mut bounced = false;
            let mut last: Option<serde_json::Value> = None;
            let mut now = at("2026-11-20T00:00:00Z");
            let customer = json!({"id": "c1", "email": "c1@example.jp", "timezone": "Asia/Tokyo", "birthday": "1990-11-25"});
            for (i, (s, gap_hours)) in steps.iter().enumerate() {
                now += Duration::hours(*gap_hours) + Duration::minutes(7);
                let occurred = now.to_rfc3339();
                let base = |kind: &str| json!({"id": format!("{kind}{i}"), "type": kind, "occurred_at": occurred, "customer": customer});
                let with_order = |kind: &str, n: &u8| {
                    let mut v = base(kind);
                    v["order"] = json!({"id": format!("A{n}"), "items": [{"sku": "BEANS-HOUSE-200", "quantity": 1, "replenish_after_days": 10, "category": "beans"},
                                                                       {"sku": "DRIPPER-CERAMIC", "guide_url": "https://g", "category": "equipment"}]});
                    v
                };
                let value = match s {
                    Step::Order(n) => {
                        let mut v = with_order("order_placed", n);
                        v["customer"]["marketing_consent"] = json!(true);
                        v["order"]["total"] = json!("3200");
                        v["order"]["currency"] = json!("JPY");
                        if !ordered.contains(n) && bounced { bounced_before.insert(*n); }
                        ordered.insert(*n);
                        v
                    }
                    Step::Ship(n) => { let mut v = with_order("order_shipped", n); v["shipment"] = json!({"estimated_delivery": "2026-12-01"}); v }
                    Step::Deliver(n) => with_order("order_delivered", n),
                    Step::Cancel(n) => with_order("order_cancelled", n),
                    Step::Checkout => { let mut v = base("checkout_started"); v["checkout"] = json!({"id": format!("CK{i}"), "items": [{"sku": "MUG-STONE"}]}); v }
                    Step::Register => base("customer_registered"),
                    Step::Open => { let mut v = base("email_opened"); v["email"] = json!({"flow": "thank_you"}); v }
                    Step::Unsubscribe => base("unsubscribed"),
                    Step::Subscribe => base("subscribed"),
                    Step::Complain => base("email_complained"),
                    Step::Bounce(permanent) => {
                        if *permanent { bounced = true; }
                        let mut v = base("email_bounced");
                        v["email"] = json!({"bounce_type": if *permanent { "permanent" } else { "transient" }});
                        v
                    }
                    Step::Duplicate => match &last { Some(v) => v.clone(), None => continue },
                };
                let event = Event::parse(&value).unwrap();
                // Fire every due step first, as the scheduler would, each at its own time.
                loop {
                    let Some((due_at, e)) = state.as_ref().and_then(|s| s.enrollments.iter().filter_map(|e| e.due_at.map(|d| (d, e.clone()))).filter(|(d, _)| *d <= now).min_by_key(|(d, _)| *d)) else { break };
                    let due = DueStep::of(&event.customer.id, &e);
                    let d = decide(&flows, state.take(), Input::Due(&due), due_at);
                    prop_assert!(d.changed, "a due step of an active enrollment always does something");
                    for s in d.sends() {
                        if s.category == Category::Marketing {
                            prop_assert!(marketing_allowed(&d.state.profile), "marketing without consent at a due step: {}", s.flow);
                        }
                        sent.push(key(s));
                    }
                    state = Some(d.state);
                }
                // The service drops replays before deciding; mirror it.
                if !seen_ids.insert(event.id.to_string()) { continue; }
                let d = decide(&flows, state.take(), Input::Event(&event), now);
                for s in d.sends() {
                    if s.category == Category::Marketing {
                        prop_assert!(marketing_allowed(&d.state.profile), "marketing without consent: {}", s.flow);
                    }
                    sent.push(key(s));
                }
                for e in &d.state.enrollments {
                    prop_assert!(e.due_at.is_some(), "an active enrollment always has one due time: {e:?}");
                }
                let names: Vec<_> = d.state.enrollments.iter().map(|e| &e.id).collect();
                prop_assert_eq!(names.len(), names.iter().collect::<BTreeSet<_>>().len(), "one active enrollment per key");
                state = Some(d.state);
                last = Some(value);
            }
            let unique: BTreeSet<_> = sent.iter().cloned().collect();
            prop_assert_eq!(unique.len(), sent.len(), "never two sends for one step execution: {:?}", sent);
            for n in &ordered {
                let receipts = sent.iter().filter(|(e, _, step, _)| *e == format!("order_confirmation:A{n}") && step == "confirm").count();
                if bounced_before.contains(n) {
                    prop_assert_eq!(receipts, 0, "no receipt after a permanent bounce");
                } else {
                    prop_assert_eq!(receipts, 1, "exactly one receipt for every order: A{}", n);
                }
            }
        }
    }
}

fn flows_with(extra_flow: &str) -> FlowSet {
    let dir = crate::testing::flows_dir();
    FlowSet::from_files(vec![
        ("store.yaml".to_owned(), std::fs::read_to_string(dir.join("store.yaml")).unwrap()),
        ("extra.yaml".to_owned(), extra_flow.to_owned()),
        ("templates/ja/a.mjml".to_owned(), "---\nsubject: a\n---\n<mjml></mjml>".to_owned()),
        ("templates/ja/b.mjml".to_owned(), "---\nsubject: b\n---\n<mjml></mjml>".to_owned()),
    ])
    .unwrap()
}

const WAIT_FOR_CLICK: &str = "id: nudge\ncategory: marketing\ntrigger: {event: order_placed}\nkey: order\nsteps:\n  - {id: click, wait_for: {event: email_clicked, timeout: 2d, matched: thanks, timed_out: reminder}}\n  - {id: reminder, send: a}\n  - {id: done, exit: reminded}\n  - {id: thanks, send: b}\n";

#[test]
fn wait_for_goes_on_at_matched_or_timed_out() {
    let flows = flows_with(WAIT_FOR_CLICK);
    let order = consenting_order("e1", "A1", "2026-11-20T10:00:00+09:00");
    let first = decide(&flows, None, Input::Event(&order), at("2026-11-20T01:00:00Z"));
    let enrollment = first.state.enrollments[0].clone();
    assert_eq!(enrollment.due_at, Some(at("2026-11-22T01:00:00Z")), "the timeout counts from entering the wait");

    let click = event(json!({"id": "k1", "type": "email_clicked", "occurred_at": "2026-11-21T12:00:00+09:00", "customer": {"id": "c1"}}));
    let matched = decide(&flows, Some(first.state.clone()), Input::Event(&click), at("2026-11-21T03:00:00Z"));
    assert_eq!(matched.sends().map(|s| s.template.as_str()).collect::<Vec<_>>(), vec!["b"]);
    assert!(matched.effects.iter().any(|e| matches!(e, Effect::Unschedule { .. })), "the timeout is cancelled");

    let due = DueStep::of(&first.state.profile.id, &enrollment);
    let timed_out = decide(&flows, Some(first.state), Input::Due(&due), at("2026-11-22T01:00:00Z"));
    assert_eq!(timed_out.sends().map(|s| s.template.as_str()).collect::<Vec<_>>(), vec!["a"]);
    assert!(timed_out.timeline.iter().any(|e| e.reason.as_deref() == Some("reminded")), "exit reason recorded");
}

#[test]
fn a_split_is_deterministic_per_customer_and_roughly_weighted() {
    let flows = flows_with("id: ab\ncategory: marketing\ntrigger: {event: order_placed}\nkey: order\nsteps:\n  - {id: test, split: [{variant: short, weight: 80, goto: send_a}, {variant: long, weight: 20, goto: send_b}]}\n  - {id: send_a, send: a}\n  - {id: stop, exit: done}\n  - {id: send_b, send: b}\n");
    let mut counts = std::collections::BTreeMap::new();
    for n in 0..500 {
        let mut v = order_placed(&format!("e{n}"), &format!("c{n}"), "A1", "2026-11-20T12:00:00+09:00");
        v["customer"]["marketing_consent"] = json!(true);
        let decision = decide(&flows, None, Input::Event(&event(v.clone())), at("2026-11-20T03:00:00Z"));
        let send = decision.sends().next().expect("one send").clone();
        assert_eq!(send.enrollment.variant.as_deref(), Some(if send.template == "a" { "short" } else { "long" }));
        // The same customer always lands in the same variant.
        let again = decide(&flows, None, Input::Event(&event(v)), at("2026-11-20T03:00:00Z"));
        assert_eq!(again.sends().next().unwrap().template, send.template);
        *counts.entry(send.template).or_insert(0) += 1;
    }
    let a = counts.get("a").copied().unwrap_or(0);
    assert!((350..=450).contains(&a), "about 80% in variant a: {counts:?}");
}

/// The engine checks only the flows an event type concerns: the index must name every one.
#[test]
fn each_event_type_lists_the_flows_it_can_start_end_or_resume() {
    let flows = repo_flows();
    let names = |event_type: &str| flows.listeners(event_type).starts.iter().map(|&i| flows.flows()[i].id.as_str()).collect::<Vec<_>>();
    assert_eq!(names("email_opened"), ["anniversary", "birthday", "engagement_coupon"], "its trigger and the customer-date flows");
    assert_eq!(names("order_placed"), ["anniversary", "birthday", "loyalty_reward", "order_confirmation", "replenishment", "thank_you", "win_back"]);
    assert_eq!(names("a_custom_event"), ["anniversary", "birthday"]);
    assert!(flows.listeners("order_cancelled").exits && flows.listeners("review_submitted").exits && flows.listeners("order_placed").exits);
    assert!(!flows.listeners("email_opened").exits && !flows.listeners("email_opened").resumes);
    let waiting = flows_with(WAIT_FOR_CLICK);
    assert!(waiting.listeners("email_clicked").resumes && !waiting.listeners("email_opened").resumes);
    assert!(waiting.listeners("email_clicked").starts.is_empty(), "no customer-date flow here, and nothing starts on a click");
}

/// Live schedules are found and deleted by name: a name must never change for the same step.
#[test]
fn a_schedule_name_is_the_one_earlier_versions_gave_the_same_step() {
    let step = DueStep { customer_id: crate::domain::CustomerId::parse("cust-1").unwrap(), enrollment_id: "thank_you:A1".into(), step_id: "wait_1h".into(), generation: 2 };
    assert_eq!(step.schedule_name(), "ac-88f605c81fdb5205133fb2c37f28944bc218d0bab9d2e5a1");
    assert_eq!(&*step.shared_schedule_name(), "ac-88f605c81fdb5205133fb2c37f28944bc218d0bab9d2e5a1", "the shared name is the same name");
    let name = DueStep { generation: 3, ..step }.schedule_name();
    assert!(name.len() <= 64 && name.starts_with("ac-") && name[3..].bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
}

mod dates {
    use chrono::{Datelike, NaiveDate};
    use proptest::prelude::*;

    use super::{date_text, is_date};

    fn date() -> impl Strategy<Value = NaiveDate> {
        let days = |range: std::ops::RangeInclusive<NaiveDate>| {
            (range.start().num_days_from_ce()..=range.end().num_days_from_ce()).prop_map(|days| NaiveDate::from_num_days_from_ce_opt(days).unwrap_or_default())
        };
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        // Mostly years 0–9999, the hand-read form; sometimes chrono's whole range, where a
        // year past 9999 or before 0 is written with a sign and only chrono's parser reads it.
        prop_oneof![4 => days(ymd(0, 1, 1)..=ymd(9999, 12, 31)), 1 => days(NaiveDate::MIN..=NaiveDate::MAX)]
    }

    proptest! {
        #[test]
        fn a_stored_date_is_read_as_chrono_reads_it(a in date(), b in date(), offset in -400i64..400) {
            prop_assert!(is_date(&a.to_string(), a));
            prop_assert_eq!(is_date(&a.to_string(), b), a == b);
            // A near date shares the year or the month, which a far one almost never does.
            let near = a.checked_add_signed(chrono::Duration::days(offset)).unwrap_or(a);
            prop_assert_eq!(is_date(&a.to_string(), near), a == near);
        }

        #[test]
        fn a_date_is_written_as_chrono_writes_it(a in date()) {
            let text = date_text(a);
            prop_assert_eq!(text.as_str(), a.to_string());
        }

        #[test]
        fn any_text_is_a_date_only_where_chrono_says_so(text in "[0-9+-]{0,12}|[0-9]{4}-[0-9]{2}-[0-9]{2}", day in date()) {
            prop_assert_eq!(is_date(&text, day), text.parse::<NaiveDate>().ok() == Some(day));
        }
    }

    #[test]
    fn the_neighbours_of_a_date_are_not_it() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap_or_default();
        assert!(is_date("2026-11-20", day));
        for other in ["2026-11-21", "2026-12-20", "2025-11-20", "2026-11-2", "2026/11/20", "2026-02-30", "20261120"] {
            assert!(!is_date(other, day), "{other}");
        }
        // Not the form it is stored in, but what chrono accepts was accepted before, and still is.
        for spaced in [" 2026-11-20", "2026-11-20 "] {
            assert_eq!(is_date(spaced, day), spaced.parse::<NaiveDate>().ok() == Some(day), "{spaced:?}");
        }
        assert!(is_date("+10000-01-01", NaiveDate::from_ymd_opt(10000, 1, 1).unwrap_or_default()), "past 9999, through chrono");
    }
}

/// A second order ends the first's win-back (keyed by the customer) and starts another; only
/// ends of flows keyed by something else are remembered, since only those are asked about.
#[test]
fn only_ends_of_flows_not_keyed_by_the_customer_are_remembered() {
    let flows = repo_flows();
    let first = event(order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00"));
    let state = decide(&flows, None, Input::Event(&first), at("2026-11-20T01:15:00Z")).state;
    let second = event(order_placed("e2", "c1", "A2", "2026-11-21T10:15:00+09:00"));
    let decision = decide(&flows, Some(state), Input::Event(&second), at("2026-11-21T01:15:00Z"));
    assert!(decision.timeline.iter().any(|e| e.kind == TimelineKind::Exited && e.flow.as_deref() == Some("win_back")), "{:?}", decision.timeline);
    assert!(decision.state.enrollments.iter().any(|e| e.id == "win_back:customer"), "a new win-back waits");
    assert!(!decision.state.has_finished("win_back:customer"), "{:?}", decision.state.finished);
    assert!(decision.state.has_finished("order_confirmation:A2"));
}
