//! A model of recipients for `aftercare simulate --engagement`: each simulated email is
//! delivered or bounces, and may be opened, clicked, complained about or unsubscribed from,
//! at plausible delays. Rates are typical of e-commerce lifecycle mail; each template gets a
//! fixed "appeal" (0.8–1.25×, from its name) so that A/B variants differ as real ones would.
//! Seeded: the same seed gives the same feedback.

use aftercare_core::domain::Event;
use aftercare_core::engine::enrollment_tag;
use aftercare_core::service::SendReport;
use aftercare_core::simulation::Recipients;
use chrono::Duration;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sha2::{Digest, Sha256};

pub struct Rates {
    pub hard_bounce: f64,
    pub soft_bounce: f64,
    pub open_transactional: f64,
    pub open_marketing: f64,
    /// Of those who open.
    pub click_transactional: f64,
    pub click_marketing: f64,
    pub complaint_marketing: f64,
    /// Of those who open a marketing email.
    pub unsubscribe_marketing: f64,
}

pub const TYPICAL: Rates = Rates {
    hard_bounce: 0.002,
    soft_bounce: 0.004,
    open_transactional: 0.62,
    open_marketing: 0.38,
    click_transactional: 0.10,
    click_marketing: 0.14,
    complaint_marketing: 0.0006,
    unsubscribe_marketing: 0.008,
};

pub struct EngagementModel {
    rng: SmallRng,
    rates: Rates,
    made: u64,
}

impl EngagementModel {
    pub fn new(seed: u64, rates: Rates) -> Self {
        Self { rng: SmallRng::seed_from_u64(seed), rates, made: 0 }
    }

    /// 0.8–1.25, fixed per template name.
    fn appeal(template: &str) -> f64 {
        let byte = Sha256::digest(template.as_bytes())[0];
        0.8 + 0.45 * f64::from(byte) / 255.0
    }

    fn event(&mut self, kind: &str, sent: &SendReport, after: Duration, extra: serde_json::Value) -> Option<Event> {
        self.made += 1;
        let mut email = json!({
            "flow": sent.flow, "step": sent.step_id, "template": sent.template,
            "enrollment": enrollment_tag(&sent.enrollment_id), "message_id": sent.message_id,
        });
        if let (Some(map), serde_json::Value::Object(more)) = (email.as_object_mut(), extra) {
            map.extend(more);
        }
        let envelope = json!({
            "id": format!("sim-{}-{kind}", self.made), "type": kind, "occurred_at": (sent.at + after).to_rfc3339(),
            "customer": {"id": sent.customer_id}, "email": email,
        });
        Event::parse(&envelope).ok()
    }
}

impl Recipients for EngagementModel {
    fn react(&mut self, sent: &SendReport) -> Vec<Event> {
        let r = &self.rates;
        let marketing = sent.category == "marketing";
        let appeal = Self::appeal(&sent.template);
        let (open, click) = if marketing { (r.open_marketing, r.click_marketing) } else { (r.open_transactional, r.click_transactional) };
        let (open, click) = ((open * appeal).min(0.95), (click * appeal).min(0.95));
        let (complaint, unsubscribe) = (r.complaint_marketing, r.unsubscribe_marketing);
        let bounce_roll: f64 = self.rng.random();
        let mut events = Vec::new();
        if bounce_roll < r.hard_bounce + r.soft_bounce {
            let kind = if bounce_roll < r.hard_bounce { "permanent" } else { "transient" };
            events.extend(self.event("email_bounced", sent, Duration::seconds(30), json!({"bounce_type": kind})));
            return events;
        }
        events.extend(self.event("email_delivered", sent, Duration::seconds(5), json!({})));
        if marketing && self.rng.random_bool(complaint) {
            events.extend(self.event("email_complained", sent, Duration::hours(20), json!({})));
            return events;
        }
        if !self.rng.random_bool(open) {
            return events;
        }
        // Most opens come within hours; some the next day.
        let opened_after = Duration::minutes(self.rng.random_range(5..60 * 30));
        events.extend(self.event("email_opened", sent, opened_after, json!({})));
        if self.rng.random_bool(click) {
            let clicked_after = opened_after + Duration::minutes(self.rng.random_range(1..10));
            events.extend(self.event("email_clicked", sent, clicked_after, json!({})));
        } else if marketing && self.rng.random_bool(unsubscribe) {
            let customer = json!({"id": sent.customer_id});
            let at = (sent.at + opened_after + Duration::minutes(2)).to_rfc3339();
            self.made += 1;
            events.extend(Event::parse(&json!({"id": format!("sim-{}-unsub", self.made), "type": "unsubscribed", "occurred_at": at, "customer": customer})).ok());
        }
        events
    }
}
