//! The contract every `Store` adapter passes: the in-memory twin, SQLite and DynamoDB
//! run this same suite. `prefix` keeps runs against a shared table apart.

use chrono::{DateTime, Duration, Utc};

use crate::domain::{CustomerId, CustomerState, Event, TimelineEntry, TimelineKind};
use crate::ports::{Commit, CommitOutcome, Store};
use crate::stats::{EmailKey, Metric, StatCount, StatScope};
use crate::testing::{at, order_placed};

fn event(id: &str, customer: &str) -> Event {
    match Event::parse(&order_placed(id, customer, "A1", "2026-11-20T10:15:00+09:00")) {
        Ok(e) => e,
        Err(e) => panic!("fixture: {e}"),
    }
}

fn customer(prefix: &str, name: &str) -> CustomerId {
    match CustomerId::parse(&format!("{prefix}-{name}")) {
        Ok(c) => c,
        Err(e) => panic!("fixture: {e}"),
    }
}

pub async fn run_all(store: &dyn Store, prefix: &str) {
    versions_and_dedupe(store, prefix).await;
    timeline_is_ordered(store, prefix).await;
    customers_are_isolated(store, prefix).await;
    erase_forgets_the_customer_and_keeps_the_counts(store, prefix).await;
}

async fn versions_and_dedupe(store: &dyn Store, prefix: &str) {
    let id = customer(prefix, "versions");
    let now = at("2026-11-20T01:15:00Z");
    assert_eq!(store.load(&id).await.unwrap(), None, "unknown customer loads as None");
    let first = event("evt-1", id.as_str());
    assert!(!store.event_seen(&id, &first.id).await.unwrap());
    assert_eq!(store.load_for_event(&id, &first.id).await.unwrap(), (None, false), "an unknown customer has seen nothing");

    let mut state = CustomerState::new(id.clone(), now);
    state.apply(&first);
    fn with_event<'a>(id: &CustomerId, now: DateTime<Utc>, expected: Option<u64>, state: &CustomerState, event: &'a Event, line: &str) -> Commit<'a> {
        Commit {
            customer_id: id.clone(),
            expected_version: expected,
            state: state.clone(),
            event: Some(event),
            timeline: vec![TimelineEntry { reason: Some(line.into()), ..TimelineEntry::new(now, TimelineKind::Event) }],
            stats: vec![],
        }
    }
    assert_eq!(store.commit(with_event(&id, now, None, &state, &first, "first")).await.unwrap(), CommitOutcome::Committed { version: 1 });
    let loaded = store.load(&id).await.unwrap().expect("committed state loads");
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.value, state, "state round-trips exactly");
    assert!(store.event_seen(&id, &first.id).await.unwrap());
    assert_eq!(store.load_for_event(&id, &first.id).await.unwrap(), (Some(loaded.clone()), true), "both read at once, as read apart");
    let unseen = event("evt-unseen", id.as_str());
    assert_eq!(store.load_for_event(&id, &unseen.id).await.unwrap(), (Some(loaded.clone()), false));
    // A decision starts from what is stored, and a state handed back undecided stays as it was.
    let (to_decide, seen) = store.load_to_decide(&id, Some(&first.id)).await.unwrap();
    assert_eq!((to_decide.as_ref(), seen), (Some(&loaded), true), "read to decide on an event, as read for it");
    store.hand_back(&id, to_decide.unwrap().value).await;
    let (to_decide, seen) = store.load_to_decide(&id, None).await.unwrap();
    assert_eq!((to_decide.as_ref(), seen), (Some(&loaded), false), "read to decide on a step, as loaded");
    store.hand_back(&id, to_decide.unwrap().value).await;
    assert_eq!(store.load(&id).await.unwrap(), Some(loaded), "handed back, the state is as it was");

    // Creating again is a lost race, not an overwrite.
    assert_eq!(store.commit(with_event(&id, now, None, &state, &event("evt-x", id.as_str()), "again")).await.unwrap(), CommitOutcome::VersionConflict);
    // The same event id again changes nothing.
    let mut changed = state.clone();
    changed.profile_mut().orders_count = 99;
    assert_eq!(store.commit(with_event(&id, now, Some(1), &changed, &first, "dup")).await.unwrap(), CommitOutcome::DuplicateEvent);
    assert_eq!(store.load(&id).await.unwrap().unwrap().value.profile.orders_count, state.profile.orders_count);

    let second = event("evt-2", id.as_str());
    assert_eq!(store.commit(with_event(&id, now, Some(1), &changed, &second, "second")).await.unwrap(), CommitOutcome::Committed { version: 2 });
    assert_eq!(store.load(&id).await.unwrap().unwrap().value.profile.orders_count, 99);
    // A stale version loses.
    assert_eq!(store.commit(with_event(&id, now, Some(1), &state, &event("evt-3", id.as_str()), "stale")).await.unwrap(), CommitOutcome::VersionConflict);
    assert!(!store.event_seen(&id, &event("evt-3", id.as_str()).id).await.unwrap(), "a lost commit records no event");

    let reasons: Vec<_> = store.timeline(&id).await.unwrap().into_iter().filter_map(|e| e.reason).collect();
    assert_eq!(reasons, vec!["first", "second"], "only committed lines are on the timeline");

    // A commit without an event (a due step) needs only the version.
    let step = Commit { customer_id: id.clone(), expected_version: Some(2), state: changed.clone(), event: None, timeline: vec![], stats: vec![] };
    assert_eq!(store.commit(step).await.unwrap(), CommitOutcome::Committed { version: 3 });
}

async fn timeline_is_ordered(store: &dyn Store, prefix: &str) {
    let id = customer(prefix, "timeline");
    let t0 = at("2026-11-20T01:00:00Z");
    let state = CustomerState::new(id.clone(), t0);
    let line = |minutes: i64, kind| TimelineEntry { reason: Some(smol_str::format_smolstr!("m{minutes}")), ..TimelineEntry::new(t0 + Duration::minutes(minutes), kind) };
    let commit = Commit { customer_id: id.clone(), expected_version: None, state, event: None, timeline: vec![line(5, TimelineKind::Entered), line(0, TimelineKind::Event)], stats: vec![] };
    assert!(matches!(store.commit(commit).await.unwrap(), CommitOutcome::Committed { .. }));
    store.append_timeline(&id, &[line(10, TimelineKind::Sent), line(7, TimelineKind::Failed)]).await.unwrap();
    let reasons: Vec<_> = store.timeline(&id).await.unwrap().into_iter().filter_map(|e| e.reason).collect();
    assert_eq!(reasons, vec!["m0", "m5", "m7", "m10"]);
}

async fn customers_are_isolated(store: &dyn Store, prefix: &str) {
    let a = customer(prefix, "iso-a");
    let b = customer(prefix, "iso-b");
    let now = at("2026-11-20T01:00:00Z");
    let shared_event = event("evt-shared", a.as_str());
    for id in [&a, &b] {
        let commit = Commit { customer_id: id.clone(), expected_version: None, state: CustomerState::new(id.clone(), now), event: Some(&shared_event), timeline: vec![], stats: vec![] };
        assert_eq!(store.commit(commit).await.unwrap(), CommitOutcome::Committed { version: 1 }, "event ids are per customer");
    }
    assert_eq!(store.load(&b).await.unwrap().unwrap().value.profile.id, b);
    assert!(store.timeline(&b).await.unwrap().is_empty());
}

async fn erase_forgets_the_customer_and_keeps_the_counts(store: &dyn Store, prefix: &str) {
    let gone = customer(prefix, "erase-me");
    let kept = customer(prefix, "erase-keep");
    let now = at("2026-11-20T01:00:00Z");
    let day = now.date_naive();
    let scope = StatScope::Email(EmailKey { flow: format!("{prefix}-flow").into(), step: "s".into(), template: "t".into(), variant: None });
    for id in [&gone, &kept] {
        let first = event("evt-1", id.as_str());
        let mut state = CustomerState::new(id.clone(), now);
        state.apply(&first);
        let commit = Commit {
            customer_id: id.clone(),
            expected_version: None,
            state,
            event: Some(&first),
            timeline: vec![TimelineEntry::new(now, TimelineKind::Event)],
            stats: vec![StatCount::new(day, scope.clone(), Metric::Sent, 1), StatCount::new(day, scope.clone(), Metric::Revenue("JPY".into()), 1_280_000)],
        };
        assert!(matches!(store.commit(commit).await.unwrap(), CommitOutcome::Committed { .. }));
        store.append_timeline(id, &[TimelineEntry::new(now, TimelineKind::Sent)]).await.unwrap();
    }
    let counts = |rows: Vec<StatCount>| rows.into_iter().filter(|r| r.scope == scope).map(|r| (r.metric, r.value)).collect::<Vec<_>>();
    let before = counts(store.stats(day, day).await.unwrap());
    assert_eq!(before, vec![(Metric::Sent, 2), (Metric::Revenue("JPY".into()), 2_560_000)], "counters add up across customers");

    store.erase(&gone).await.unwrap();
    assert_eq!(store.load(&gone).await.unwrap(), None);
    assert!(!store.event_seen(&gone, &event("evt-1", gone.as_str()).id).await.unwrap(), "dedupe markers go too");
    assert_eq!(store.load_for_event(&gone, &event("evt-1", gone.as_str()).id).await.unwrap(), (None, false));
    assert!(store.timeline(&gone).await.unwrap().is_empty());
    assert_eq!(counts(store.stats(day, day).await.unwrap()), before, "counts stay: they name no one");
    assert!(store.load(&kept).await.unwrap().is_some(), "only that customer is erased");
    assert_eq!(store.timeline(&kept).await.unwrap().len(), 2);
    store.erase(&gone).await.unwrap();
    // The same id can start over as a new customer.
    let again = Commit { customer_id: gone.clone(), expected_version: None, state: CustomerState::new(gone.clone(), now), event: Some(&event("evt-1", gone.as_str())), timeline: vec![], stats: vec![] };
    assert_eq!(store.commit(again).await.unwrap(), CommitOutcome::Committed { version: 1 });
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        super::run_all(&crate::memory::MemoryStore::new(), "mem").await;
    }

    #[tokio::test]
    async fn lending_memory_store_passes_the_contract() {
        super::run_all(&crate::memory::MemoryStore::new().lending(), "lending").await;
    }
}
