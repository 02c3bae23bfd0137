//! Sample data for every template: what `aftercare preview` and the snapshot tests render.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::domain::{CustomerId, CustomerState, EmailAddress, Enrollment, Event, Locale, Name};
use crate::engine::SendIntent;
use crate::flow::{Category, FlowSet, StepKind};

/// The sample customer: a repeat buyer with a full order, shipment, checkout and review.
pub fn sample_send(flows: &FlowSet, template: &str, locale: &str, now: DateTime<Utc>) -> Option<SendIntent> {
    let (flow, step_id) = flows.flows().iter().find_map(|f| {
        f.steps.iter().find_map(|s| match &s.kind {
            StepKind::Send { choices, .. } if choices.iter().any(|c| c.template == template) => Some((f, s.id.clone())),
            _ => None,
        })
    })?;
    let mut state = CustomerState::new(CustomerId::parse("sample-customer").ok()?, now);
    let profile = state.profile_mut();
    profile.email = EmailAddress::parse("hanako@example.jp").ok();
    profile.first_name = Some(if locale == "ja" { "花子" } else { "Hanako" }.into());
    profile.last_name = Some(if locale == "ja" { "山田" } else { "Yamada" }.into());
    profile.locale = Locale::parse(locale).ok();
    profile.orders_count = 5;
    profile.has_account = Some(false);
    profile.marketing_consent = true;
    let item = |sku: &str, name: &str, price: &str, extra: serde_json::Value| {
        let mut v = json!({"sku": sku, "name": name, "quantity": 1, "unit_price": price, "url": format!("{}/p/{}", flows.store.base_url, sku.to_lowercase())});
        if let (Some(map), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            map.extend(more);
        }
        v
    };
    let items = vec![
        item("BEANS-ETHIOPIA-200", "エチオピア イルガチェフェ 200g", "2400", json!({"quantity": 2, "replenish_after_days": 30, "category": "beans"})),
        item("DRIPPER-CERAMIC", "有田焼セラミックドリッパー", "3200", json!({"guide_url": format!("{}/guides/dripper", flows.store.base_url), "category": "equipment"})),
        item("DRIP-FILTER-100", "ペーパーフィルター 100枚", "600", json!({"category": "supplies"})),
    ];
    let trigger = Event::parse(&json!({
        "id": "sample-event", "type": flow.trigger.event().unwrap_or("customer_updated"), "occurred_at": now.to_rfc3339(),
        "customer": {"id": "sample-customer"},
        "order": {"id": "A1001", "number": "#1001", "total": "8600", "currency": "JPY", "items": items},
        "shipment": {"carrier": "ヤマト運輸", "tracking_number": "1234-5678-9012", "tracking_url": "https://track.example.com/1234-5678-9012", "estimated_delivery": "2026-11-23"},
        "checkout": {"id": "CK-1", "url": format!("{}/checkout/CK-1", flows.store.base_url), "total": "8600", "currency": "JPY", "items": items},
        "review": {"order_id": "A1001", "sku": "DRIPPER-CERAMIC", "rating": 5},
    }))
    .ok()?;
    let enrollment = Enrollment {
        id: format!("{}:sample", flow.id).into(),
        flow: flow.id.as_str().into(),
        flow_version: flow.version.as_str().into(),
        key: "sample".into(),
        step_id: step_id.as_str().into(),
        due_at: None,
        anchor: now,
        generation: 1,
        entered_at: now,
        trigger: std::sync::Arc::new(trigger),
        item: Some(std::sync::Arc::new(items[0].clone())),
        variant: None,
        opened: Vec::new(),
        clicked: Vec::new(),
        trigger_value: None,
    };
    let recommendations = ["GRINDER-HAND", "KETTLE-GOOSENECK", "MUG-STONE"].iter().filter(|s| flows.catalog.get(s).is_some()).map(|s| s.to_string()).collect();
    Some(SendIntent {
        enrollment_id: enrollment.id.clone(),
        flow: Name::new(&flow.id),
        step_id: Name::from(step_id),
        template: Name::new(template),
        category: flow.category,
        to: state.profile.email.clone()?,
        profile: state.profile.clone(),
        enrollment,
        recommendations,
    })
}

/// Every email template name, sorted.
pub fn template_names(flows: &FlowSet) -> Vec<String> {
    let mut names: Vec<String> = flows.templates.values().flat_map(|t| t.keys()).filter(|n| !n.starts_with('_')).cloned().collect();
    names.sort();
    names.dedup();
    names
}

pub fn is_marketing(flows: &FlowSet, template: &str) -> bool {
    flows.flows().iter().any(|f| {
        f.category == Category::Marketing
            && f.steps.iter().any(|s| matches!(&s.kind, StepKind::Send { choices, .. } if choices.iter().any(|c| c.template == template)))
    })
}
