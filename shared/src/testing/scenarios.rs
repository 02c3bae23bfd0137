//! Scenarios for the default flows: events in, every send and skip out with its exact UTC
//! time. The same list runs through the simulator (shared/tests) and through the Lambda
//! handlers against moto (tests/), which must agree.

use serde_json::{json, Value};

pub struct Scenario {
    pub name: &'static str,
    pub events: Vec<Value>,
    pub until: &'static str,
    /// `(at, flow, template, status or "skipped:<reason>")`, compared as sorted lists.
    pub expected: Vec<(&'static str, &'static str, &'static str, &'static str)>,
}

fn customer(consent: bool) -> Value {
    json!({"id": "c1", "email": "c1@example.jp", "first_name": "花子", "locale": "ja-JP", "timezone": "Asia/Tokyo",
           "marketing_consent": consent, "has_account": true})
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn event(id: &str, kind: &str, at: &str, extra: Value) -> Value {
    with(json!({"id": id, "type": kind, "occurred_at": at, "customer": {"id": "c1"}}), extra)
}

fn item(sku: &str, extra: Value) -> Value {
    with(json!({"sku": sku, "name": sku, "quantity": 1, "unit_price": "1800"}), extra)
}

fn order(id: &str, at: &str, order_id: &str, total: &str, items: Vec<Value>) -> Value {
    event(id, "order_placed", at, json!({"customer": customer(true), "order": {"id": order_id, "total": total, "currency": "JPY", "items": items}}))
}

fn simple_order(id: &str, at: &str, order_id: &str) -> Value {
    order(id, at, order_id, "3200", vec![item("DRIPPER-CERAMIC", json!({}))])
}

fn order_event(id: &str, kind: &str, at: &str, order_id: &str, items: Vec<Value>) -> Value {
    event(id, kind, at, json!({"order": {"id": order_id, "items": items}}))
}

fn shipped(id: &str, at: &str, order_id: &str, estimated: Option<&str>, items: Vec<Value>) -> Value {
    event(id, "order_shipped", at, json!({"order": {"id": order_id, "items": items},
        "shipment": {"carrier": "ヤマト運輸", "tracking_number": "1234", "tracking_url": "https://track.example.com/1234", "estimated_delivery": estimated}}))
}

fn guide_item() -> Value {
    item("DRIPPER-CERAMIC", json!({"guide_url": "https://shop.example.com/guides/dripper", "category": "equipment"}))
}

fn opened(id: &str, at: &str, flow: &str, template: &str) -> Value {
    event(id, "email_opened", at, json!({"email": {"flow": flow, "template": template}}))
}

pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "journey: first order, shipment with guide, delivery, review, cross-sell, replenishment",
            events: vec![
                order("e1", "2026-11-20T10:15:00+09:00", "A1", "12800", vec![
                    item("BEANS-HOUSE-200", json!({"quantity": 2, "replenish_after_days": 30, "related_skus": ["MUG-STONE"], "category": "beans"})),
                    guide_item(),
                ]),
                shipped("e2", "2026-11-21T15:00:00+09:00", "A1", Some("2026-11-23"), vec![item("BEANS-HOUSE-200", json!({})), guide_item()]),
                order_event("e3", "order_delivered", "2026-11-23T14:00:00+09:00", "A1", vec![item("BEANS-HOUSE-200", json!({"category": "beans"})), guide_item()]),
            ],
            until: "2026-12-31T00:00:00Z",
            expected: vec![
                ("2026-11-20T01:15:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:15:00Z", "thank_you", "thank_you_first", "sent"),
                ("2026-11-21T06:00:00Z", "shipping_confirmation", "shipping_confirmation", "sent"),
                ("2026-11-22T01:00:00Z", "usage_guide", "usage_guide", "sent"),
                ("2026-11-25T05:00:00Z", "delivery_followup", "delivery_followup", "sent"),
                ("2026-11-30T05:00:00Z", "review_request", "review_request", "sent"),
                ("2026-12-05T05:00:00Z", "review_request", "review_reminder", "sent"),
                ("2026-12-07T05:00:00Z", "cross_sell", "cross_sell", "sent"),
                ("2026-12-15T01:15:00Z", "replenishment", "replenishment_reminder", "sent"),
            ],
        },
        Scenario {
            name: "review reminder only when the request was not opened",
            events: vec![
                simple_order("e1", "2026-11-20T10:15:00+09:00", "A2"),
                order_event("e2", "order_delivered", "2026-11-23T14:00:00+09:00", "A2", vec![guide_item()]),
                opened("o1", "2026-11-30T20:00:00+09:00", "review_request", "review_request"),
            ],
            until: "2026-12-06T00:00:00Z",
            expected: vec![
                ("2026-11-20T01:15:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:15:00Z", "thank_you", "thank_you_first", "sent"),
                ("2026-11-25T05:00:00Z", "delivery_followup", "delivery_followup", "sent"),
                ("2026-11-30T05:00:00Z", "review_request", "review_request", "sent"),
                ("2026-12-05T05:00:00Z", "review_request", "review_reminder", "skipped:condition_false"),
            ],
        },
        Scenario {
            name: "a submitted review ends the review request",
            events: vec![
                simple_order("e1", "2026-11-20T10:15:00+09:00", "A3"),
                order_event("e2", "order_delivered", "2026-11-23T14:00:00+09:00", "A3", vec![guide_item()]),
                event("r1", "review_submitted", "2026-11-26T09:00:00+09:00", json!({"review": {"order_id": "A3", "rating": 5}})),
            ],
            until: "2026-12-06T00:00:00Z",
            expected: vec![
                ("2026-11-20T01:15:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:15:00Z", "thank_you", "thank_you_first", "sent"),
                ("2026-11-25T05:00:00Z", "delivery_followup", "delivery_followup", "sent"),
            ],
        },
        Scenario {
            name: "quiet hours move a 21:30 thank-you to 09:00 the next morning",
            events: vec![simple_order("e1", "2026-11-20T20:30:00+09:00", "A1")],
            until: "2026-11-22T00:00:00Z",
            expected: vec![
                ("2026-11-20T11:30:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-21T00:00:00Z", "thank_you", "thank_you_first", "sent"),
            ],
        },
        Scenario {
            name: "quiet hours across the New York spring-forward night",
            events: vec![with(simple_order("e1", "2026-03-07T20:30:00-05:00", "A1"), json!({"customer": with(customer(true), json!({"timezone": "America/New_York", "locale": "en-US"}))}))],
            until: "2026-03-09T00:00:00Z",
            expected: vec![
                ("2026-03-08T01:30:00Z", "order_confirmation", "order_confirmation", "sent"),
                // 21:30 EST is quiet; 09:00 the next morning is already EDT (UTC-4).
                ("2026-03-08T13:00:00Z", "thank_you", "thank_you_first", "sent"),
            ],
        },
        Scenario {
            name: "29 February birthday, welcome series, and a birthday change",
            events: vec![
                event("g1", "customer_registered", "2026-11-20T12:00:00+09:00", json!({"customer": with(customer(true), json!({"birthday": "1992-02-29"}))})),
                event("u1", "customer_updated", "2027-03-10T12:00:00+09:00", json!({"customer": {"id": "c1", "birthday": "1992-04-01"}})),
            ],
            until: "2027-04-02T00:00:00Z",
            expected: vec![
                ("2026-11-21T03:00:00Z", "welcome", "welcome_offer", "sent"),
                ("2026-12-12T03:00:00Z", "welcome", "welcome_followup", "sent"),
                ("2027-02-28T00:00:00Z", "birthday", "birthday", "sent"),
                ("2027-04-01T00:00:00Z", "birthday", "birthday", "sent"),
            ],
        },
        Scenario {
            name: "29 February birthday in a leap year",
            events: vec![event("g1", "customer_registered", "2027-03-05T12:00:00+09:00", json!({"customer": with(customer(true), json!({"birthday": "1992-02-29"}))}))],
            until: "2028-03-01T00:00:00Z",
            expected: vec![
                ("2027-03-06T03:00:00Z", "welcome", "welcome_offer", "sent"),
                ("2027-03-27T03:00:00Z", "welcome", "welcome_followup", "sent"),
                ("2028-02-29T00:00:00Z", "birthday", "birthday", "sent"),
            ],
        },
        Scenario {
            name: "smart sending skips a second promotional email within 16 hours; an order reaches the welcome goal",
            events: vec![
                event("g1", "customer_registered", "2026-11-20T12:00:00+09:00", json!({"customer": customer(true)})),
                event("k1", "checkout_started", "2026-11-21T13:00:00+09:00", json!({"checkout": {"id": "CK1", "url": "https://shop.example.com/checkout/CK1", "total": "1800", "currency": "JPY", "items": [item("BEANS-HOUSE-200", json!({}))]}})),
                simple_order("e1", "2026-11-25T10:00:00+09:00", "A1"),
            ],
            until: "2026-12-31T00:00:00Z",
            expected: vec![
                ("2026-11-21T03:00:00Z", "welcome", "welcome_offer", "sent"),
                ("2026-11-21T05:00:00Z", "abandoned_cart", "abandoned_cart", "skipped:smart_sending"),
                ("2026-11-25T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-25T02:00:00Z", "thank_you", "thank_you_first", "sent"),
            ],
        },
        Scenario {
            name: "consent given later",
            events: vec![
                with(simple_order("e1", "2026-11-20T10:15:00+09:00", "A1"), json!({"customer": customer(false)})),
                event("s1", "subscribed", "2026-11-21T10:00:00+09:00", json!({})),
                with(simple_order("e2", "2026-11-22T10:00:00+09:00", "A2"), json!({"customer": {"id": "c1"}})),
            ],
            until: "2026-11-23T00:00:00Z",
            expected: vec![
                ("2026-11-20T01:15:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:15:00Z", "thank_you", "thank_you_first", "skipped:no_consent"),
                ("2026-11-22T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-22T02:00:00Z", "thank_you", "thank_you_repeat", "sent"),
            ],
        },
        Scenario {
            name: "an unsubscribe stops marketing, not receipts",
            events: vec![
                simple_order("e1", "2026-11-20T10:15:00+09:00", "A1"),
                event("u1", "unsubscribed", "2026-11-20T10:30:00+09:00", json!({})),
                shipped("e2", "2026-11-21T15:00:00+09:00", "A1", None, vec![item("BEANS-HOUSE-200", json!({}))]),
            ],
            until: "2026-11-22T00:00:00Z",
            expected: vec![
                ("2026-11-20T01:15:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:15:00Z", "thank_you", "thank_you_first", "skipped:unsubscribed"),
                ("2026-11-21T06:00:00Z", "shipping_confirmation", "shipping_confirmation", "sent"),
            ],
        },
        Scenario {
            name: "a transient bounce suppresses nothing; a permanent one suppresses everything",
            events: vec![
                simple_order("e1", "2026-11-20T10:15:00+09:00", "A1"),
                event("b1", "email_bounced", "2026-11-20T10:20:00+09:00", json!({"email": {"bounce_type": "transient"}})),
                event("b2", "email_bounced", "2026-11-21T10:00:00+09:00", json!({"email": {"bounce_type": "permanent"}})),
                with(simple_order("e2", "2026-11-22T10:00:00+09:00", "A2"), json!({"customer": {"id": "c1"}})),
            ],
            until: "2026-11-23T00:00:00Z",
            expected: vec![
                ("2026-11-20T01:15:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:15:00Z", "thank_you", "thank_you_first", "sent"),
                ("2026-11-22T01:00:00Z", "order_confirmation", "order_confirmation", "skipped:suppressed"),
                ("2026-11-22T02:00:00Z", "thank_you", "thank_you_repeat", "skipped:suppressed"),
            ],
        },
        Scenario {
            name: "a complaint suppresses marketing and keeps receipts",
            events: vec![
                simple_order("e1", "2026-11-20T10:15:00+09:00", "A1"),
                event("c1", "email_complained", "2026-11-20T10:20:00+09:00", json!({})),
                with(simple_order("e2", "2026-11-22T10:00:00+09:00", "A2"), json!({"customer": {"id": "c1"}})),
            ],
            until: "2026-11-23T00:00:00Z",
            expected: vec![
                ("2026-11-20T01:15:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:15:00Z", "thank_you", "thank_you_first", "skipped:suppressed"),
                ("2026-11-22T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-22T02:00:00Z", "thank_you", "thank_you_repeat", "skipped:suppressed"),
            ],
        },
        Scenario {
            name: "a replayed event id changes nothing",
            events: vec![simple_order("e1", "2026-11-20T10:15:00+09:00", "A1"), simple_order("e1", "2026-11-20T10:15:00+09:00", "A1")],
            until: "2026-11-21T00:00:00Z",
            expected: vec![
                ("2026-11-20T01:15:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:15:00Z", "thank_you", "thank_you_first", "sent"),
            ],
        },
        Scenario {
            name: "a cancel before the due time exits the thank-you",
            events: vec![
                simple_order("e1", "2026-11-20T10:15:00+09:00", "A1"),
                order_event("x1", "order_cancelled", "2026-11-20T10:45:00+09:00", "A1", vec![]),
            ],
            until: "2026-11-21T00:00:00Z",
            expected: vec![("2026-11-20T01:15:00Z", "order_confirmation", "order_confirmation", "sent")],
        },
        Scenario {
            name: "a newer checkout restarts the abandoned cart; an order ends it",
            events: vec![
                event("k1", "checkout_started", "2026-11-20T10:00:00+09:00", json!({"customer": customer(true), "checkout": {"id": "CK1", "items": [item("BEANS-HOUSE-200", json!({}))]}})),
                event("k2", "checkout_started", "2026-11-20T10:30:00+09:00", json!({"checkout": {"id": "CK2", "items": [item("GRINDER-HAND", json!({}))]}})),
                event("k3", "checkout_started", "2026-11-22T10:00:00+09:00", json!({"checkout": {"id": "CK3", "items": [item("MUG-STONE", json!({}))]}})),
                with(simple_order("e1", "2026-11-22T10:20:00+09:00", "A1"), json!({"customer": {"id": "c1"}})),
            ],
            until: "2026-11-23T00:00:00Z",
            expected: vec![
                ("2026-11-20T02:30:00Z", "abandoned_cart", "abandoned_cart", "sent"),
                ("2026-11-22T01:20:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-22T02:20:00Z", "thank_you", "thank_you_first", "sent"),
            ],
        },
        Scenario {
            name: "every fifth order earns the loyalty reward",
            events: (1..=5).map(|d| simple_order(&format!("e{d}"), &format!("2026-11-{:02}T10:00:00+09:00", 19 + d), &format!("A{d}"))).collect(),
            until: "2026-11-25T00:00:00Z",
            expected: vec![
                ("2026-11-20T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:00:00Z", "thank_you", "thank_you_first", "sent"),
                ("2026-11-21T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-21T02:00:00Z", "thank_you", "thank_you_repeat", "sent"),
                ("2026-11-22T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-22T02:00:00Z", "thank_you", "thank_you_repeat", "sent"),
                ("2026-11-23T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-23T02:00:00Z", "thank_you", "thank_you_repeat", "sent"),
                ("2026-11-24T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-24T02:00:00Z", "thank_you", "thank_you_repeat", "sent"),
                ("2026-11-24T02:00:00Z", "loyalty_reward", "loyalty_reward", "sent"),
            ],
        },
        Scenario {
            name: "three opens in 30 days without an order earn one engagement coupon in 90 days",
            events: vec![
                simple_order("e1", "2026-09-01T10:00:00+09:00", "A1"),
                opened("o1", "2026-11-20T10:00:00+09:00", "thank_you", "thank_you_first"),
                opened("o2", "2026-11-20T11:00:00+09:00", "thank_you", "thank_you_first"),
                opened("o3", "2026-11-20T12:00:00+09:00", "thank_you", "thank_you_first"),
                opened("o4", "2026-11-25T12:00:00+09:00", "thank_you", "thank_you_first"),
            ],
            until: "2026-11-26T00:00:00Z",
            expected: vec![
                ("2026-09-01T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-09-01T02:00:00Z", "thank_you", "thank_you_first", "sent"),
                ("2026-11-20T03:00:00Z", "engagement_coupon", "engagement_coupon", "sent"),
            ],
        },
        Scenario {
            name: "replenishment: a later order of the SKU replaces the reminder with a subscription offer",
            events: vec![
                order("e1", "2026-11-01T10:00:00+09:00", "A1", "2400", vec![item("BEANS-ETHIOPIA-200", json!({"replenish_after_days": 30}))]),
                with(order("e2", "2026-11-20T10:00:00+09:00", "A2", "2400", vec![item("BEANS-ETHIOPIA-200", json!({"replenish_after_days": 30}))]), json!({"customer": {"id": "c1"}})),
            ],
            until: "2026-12-16T00:00:00Z",
            expected: vec![
                ("2026-11-01T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-01T02:00:00Z", "thank_you", "thank_you_first", "sent"),
                ("2026-11-20T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:00:00Z", "thank_you", "thank_you_repeat", "sent"),
                ("2026-12-15T01:00:00Z", "replenishment", "subscription_offer", "sent"),
            ],
        },
        Scenario {
            name: "only the latest order's win-back fires",
            events: vec![simple_order("e1", "2026-01-10T10:00:00+09:00", "A1"), simple_order("e2", "2026-03-10T10:00:00+09:00", "A2")],
            until: "2026-09-07T00:00:00Z",
            expected: vec![
                ("2026-01-10T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-01-10T02:00:00Z", "thank_you", "thank_you_first", "sent"),
                ("2026-03-10T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-03-10T02:00:00Z", "thank_you", "thank_you_repeat", "sent"),
                ("2026-09-06T01:00:00Z", "win_back", "win_back", "sent"),
            ],
        },
        Scenario {
            name: "a VIP order gets the VIP thank-you",
            events: vec![
                simple_order("e1", "2026-11-01T10:00:00+09:00", "A1"),
                order("e2", "2026-11-20T10:00:00+09:00", "A2", "32000", vec![item("GRINDER-HAND", json!({"quantity": 2}))]),
            ],
            until: "2026-11-21T00:00:00Z",
            expected: vec![
                ("2026-11-01T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-01T02:00:00Z", "thank_you", "thank_you_first", "sent"),
                ("2026-11-20T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:00:00Z", "thank_you", "thank_you_vip", "sent"),
            ],
        },
        Scenario {
            name: "anniversary a year after the first order; win-back moved out of quiet hours",
            events: vec![simple_order("e1", "2026-11-20T08:00:00+09:00", "A1")],
            until: "2027-11-21T00:00:00Z",
            expected: vec![
                ("2026-11-19T23:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T00:00:00Z", "thank_you", "thank_you_first", "sent"),
                ("2027-05-19T00:00:00Z", "win_back", "win_back", "sent"),
                ("2027-11-20T01:00:00Z", "anniversary", "anniversary", "sent"),
            ],
        },
        Scenario {
            name: "usage guide: +1h without an estimate; skipped when delivered first",
            events: vec![
                simple_order("e1", "2026-11-20T10:00:00+09:00", "A1"),
                with(simple_order("e2", "2026-11-20T10:05:00+09:00", "A2"), json!({"customer": {"id": "c1"}})),
                shipped("s1", "2026-11-21T15:00:00+09:00", "A1", None, vec![guide_item()]),
                shipped("s2", "2026-11-21T15:30:00+09:00", "A2", Some("2026-11-30"), vec![guide_item()]),
                order_event("d2", "order_delivered", "2026-11-25T12:00:00+09:00", "A2", vec![guide_item()]),
            ],
            until: "2026-11-28T00:00:00Z",
            expected: vec![
                ("2026-11-20T01:00:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T01:05:00Z", "order_confirmation", "order_confirmation", "sent"),
                ("2026-11-20T02:00:00Z", "thank_you", "thank_you_first", "sent"),
                ("2026-11-20T02:05:00Z", "thank_you", "thank_you_repeat", "sent"),
                ("2026-11-21T06:00:00Z", "shipping_confirmation", "shipping_confirmation", "sent"),
                ("2026-11-21T06:30:00Z", "shipping_confirmation", "shipping_confirmation", "sent"),
                ("2026-11-21T07:00:00Z", "usage_guide", "usage_guide", "sent"),
                ("2026-11-27T03:00:00Z", "delivery_followup", "delivery_followup", "sent"),
            ],
        },
    ]
}

/// One line per send or skip, as the scenarios write them.
pub fn outcome_line(r: &crate::service::SendReport) -> (String, String, String, String) {
    let status = match &r.reason {
        Some(reason) if r.status != "sent" => format!("{}:{reason}", r.status),
        _ => r.status.to_owned(),
    };
    (r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), r.flow.to_string(), r.template.to_string(), status)
}

pub fn expected_lines(scenario: &Scenario) -> Vec<(String, String, String, String)> {
    let mut lines: Vec<_> = scenario.expected.iter().map(|(a, f, t, s)| (a.to_string(), f.to_string(), t.to_string(), s.to_string())).collect();
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulation::Simulation;

    async fn simulate(scenario: &Scenario) -> Vec<(String, String, String, String)> {
        let start = crate::testing::at("2026-01-01T00:00:00Z");
        let simulation = Simulation::new(crate::testing::repo_flows(), start).unwrap();
        let mut events = scenario.events.clone();
        events.sort_by_key(|e| crate::domain::Event::parse(e).map(|e| e.occurred_at_utc()).unwrap_or(start));
        let mut reports = Vec::new();
        for event in &events {
            reports.extend(simulation.ingest(event).await.unwrap_or_else(|e| panic!("{}: {e}", scenario.name)));
        }
        reports.extend(simulation.run_until(crate::testing::at(scenario.until)).await.unwrap());
        let mut lines: Vec<_> = reports.iter().map(outcome_line).collect();
        lines.sort();
        lines
    }

    #[tokio::test]
    async fn every_scenario_sends_exactly_what_it_expects() {
        let mut failures = Vec::new();
        for scenario in all() {
            let actual = simulate(&scenario).await;
            let expected = expected_lines(&scenario);
            if actual != expected {
                failures.push(format!("{}\n  expected: {expected:#?}\n  actual:   {actual:#?}", scenario.name));
            }
        }
        assert!(failures.is_empty(), "{} scenario(s) differ:\n{}", failures.len(), failures.join("\n"));
    }
}
