//! Fixtures shared by this crate's tests and the `tests/` crate: the repository's flows,
//! sample events, and an app wired to in-memory ports.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::flow::FlowSet;
use crate::memory::{ManualClock, MemoryMailer, MemoryPublisher, MemoryScheduler, MemoryStore};
use crate::service::{App, Ports};

pub fn flows_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../flows")
}

/// The shipped `flows/` folder; panics with every error if it does not load (tests only).
pub fn repo_flows() -> FlowSet {
    match FlowSet::load_dir(&flows_dir()) {
        Ok(flows) => flows,
        Err(errors) => panic!("flows/ does not load: {errors:#?}"),
    }
}

pub fn order_placed(event_id: &str, customer_id: &str, order_id: &str, occurred_at: &str) -> Value {
    json!({
        "id": event_id, "type": "order_placed", "occurred_at": occurred_at,
        "customer": {"id": customer_id, "email": format!("{customer_id}@example.jp"), "first_name": "花子",
                     "locale": "ja-JP", "timezone": "Asia/Tokyo", "has_account": false},
        "order": {"id": order_id, "number": format!("#{order_id}"), "total": "12800", "currency": "JPY",
                  "items": [
                      {"sku": "BEANS-HOUSE-200", "name": "ハウスブレンド 200g", "quantity": 2, "unit_price": "1800"},
                      {"sku": "DRIPPER-CERAMIC", "name": "セラミックドリッパー", "quantity": 1, "unit_price": "3200"},
                      {"sku": "DRIP-FILTER-100", "name": "ドリップフィルター 100枚", "quantity": 1, "unit_price": "600"}
                  ]}
    })
}

pub fn order_shipped(event_id: &str, customer_id: &str, order_id: &str, occurred_at: &str) -> Value {
    json!({
        "id": event_id, "type": "order_shipped", "occurred_at": occurred_at,
        "customer": {"id": customer_id},
        "order": {"id": order_id, "number": format!("#{order_id}"), "items": [{"sku": "BEANS-HOUSE-200", "quantity": 2}]},
        "shipment": {"carrier": "ヤマト運輸", "tracking_number": "1234-5678-9012",
                     "tracking_url": "https://track.example.com/1234-5678-9012", "estimated_delivery": "2026-11-23"}
    })
}

pub fn email_bounced(event_id: &str, customer_id: &str, bounce_type: &str, occurred_at: &str) -> Value {
    json!({
        "id": event_id, "type": "email_bounced", "occurred_at": occurred_at,
        "customer": {"id": customer_id}, "email": {"bounce_type": bounce_type}
    })
}

/// An app on in-memory ports, with handles to look inside them.
pub struct MemoryApp {
    pub app: App,
    pub store: Arc<MemoryStore>,
    pub scheduler: Arc<MemoryScheduler>,
    pub mailer: Arc<MemoryMailer>,
    pub publisher: Arc<MemoryPublisher>,
    pub clock: Arc<ManualClock>,
}

pub fn memory_app(flows: FlowSet, now: DateTime<Utc>) -> MemoryApp {
    let store = Arc::new(MemoryStore::new());
    let scheduler = Arc::new(MemoryScheduler::new());
    let mailer = Arc::new(MemoryMailer::new());
    let publisher = Arc::new(MemoryPublisher::new());
    let clock = Arc::new(ManualClock::new(now));
    let ports = Ports { store: store.clone(), scheduler: scheduler.clone(), mailer: mailer.clone(), publisher: publisher.clone(), clock: clock.clone() };
    let app = match App::new(flows, ports) {
        Ok(app) => app,
        Err(e) => panic!("app does not start: {e:#}"),
    };
    MemoryApp { app, store, scheduler, mailer, publisher, clock }
}

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("bad test time {rfc3339:?}: {e}"),
    }
}
pub mod scenarios;
