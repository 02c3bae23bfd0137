//! SES events (delivered by EventBridge, `source: aws.ses`) turned into timeline events.
//! The customer comes from the message's tags (or header), so no lookup is needed.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::mail::CUSTOMER_HEADER;
use crate::domain::{Event, FieldError};

/// EventBridge detail-type → Aftercare event type.
pub fn event_type_for(detail_type: &str) -> Option<&'static str> {
    Some(match detail_type {
        "Email Sent" => "email_sent",
        "Email Delivered" => "email_delivered",
        "Email Bounced" => "email_bounced",
        "Email Complaint Received" => "email_complained",
        "Email Opened" => "email_opened",
        "Email Clicked" => "email_clicked",
        "Email Rejected" => "email_rejected",
        "Email Delivery Delayed" => "email_delivery_delayed",
        "Email Rendering Failed" => "email_rendering_failed",
        "Email Subscribed" => "email_subscription_changed",
        _ => return None,
    })
}

/// Why an SES event was dropped rather than recorded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FeedbackError {
    #[error("detail-type {0:?} is not an SES event Aftercare knows")]
    UnknownType(String),
    #[error("the message carries no customer id (tag customer_id, customer_id_hex or header {CUSTOMER_HEADER})")]
    NoCustomer,
    #[error("malformed SES event: {0}")]
    Malformed(String),
}

fn first_tag<'a>(mail: &'a Value, name: &str) -> Option<&'a str> {
    mail.pointer(&format!("/tags/{name}/0")).and_then(Value::as_str)
}

fn customer_id(mail: &Value) -> Option<String> {
    if let Some(id) = first_tag(mail, "customer_id") {
        return Some(id.to_owned());
    }
    if let Some(encoded) = first_tag(mail, "customer_id_hex") {
        return hex::decode(encoded).ok().and_then(|b| String::from_utf8(b).ok());
    }
    mail.get("headers")?.as_array()?.iter().find_map(|h| {
        (h.get("name")?.as_str()?.eq_ignore_ascii_case(CUSTOMER_HEADER)).then(|| h.get("value")?.as_str().map(str::to_owned))?
    })
}

/// The SES event as an Aftercare event, ready for the same ingest pipeline as any other.
pub fn to_event(detail_type: &str, detail: &Value, received_at: DateTime<Utc>) -> Result<Event, FeedbackError> {
    let event_type = event_type_for(detail_type).ok_or_else(|| FeedbackError::UnknownType(detail_type.to_owned()))?;
    let mail = detail.get("mail").ok_or_else(|| FeedbackError::Malformed("detail.mail is missing".into()))?;
    let message_id = mail.get("messageId").and_then(Value::as_str).ok_or_else(|| FeedbackError::Malformed("detail.mail.messageId is missing".into()))?;
    let customer = customer_id(mail).ok_or(FeedbackError::NoCustomer)?;
    let section = match event_type {
        "email_bounced" => "bounce",
        "email_complained" => "complaint",
        "email_delivered" => "delivery",
        "email_opened" => "open",
        "email_clicked" => "click",
        "email_rejected" => "reject",
        "email_delivery_delayed" => "deliveryDelay",
        "email_rendering_failed" => "failure",
        "email_subscription_changed" => "subscription",
        _ => "send",
    };
    let body = detail.get(section).cloned().unwrap_or(Value::Null);
    let occurred_at = body
        .get("timestamp")
        .or_else(|| mail.get("timestamp"))
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(received_at, |t| t.with_timezone(&Utc));
    let mut event_type = event_type;
    let mut bounce_type = None;
    if event_type == "email_bounced" {
        // Only "Permanent" suppresses; "Transient" and "Undetermined" do not.
        bounce_type = Some(if body.get("bounceType").and_then(Value::as_str) == Some("Permanent") { "permanent" } else { "transient" });
    }
    if event_type == "email_subscription_changed" && body.pointer("/newTopicPreferences/unsubscribeAll").and_then(Value::as_bool) == Some(true) {
        event_type = "unsubscribed";
    }
    // One id per SES event: opens and clicks repeat, so their time is part of it.
    let raw_id = format!("ses:{message_id}:{event_type}:{}", occurred_at.format("%Y%m%dT%H%M%S%.3f"));
    let id = if raw_id.len() <= 128 && raw_id.chars().all(|c| c.is_ascii_alphanumeric() || ".:_-".contains(c)) {
        raw_id
    } else {
        format!("ses:{}", &hex::encode(Sha256::digest(raw_id.as_bytes()))[..40])
    };
    let envelope = json!({
        "id": id,
        "type": event_type,
        "occurred_at": occurred_at.to_rfc3339(),
        "customer": {"id": customer},
        "email": {
            "flow": first_tag(mail, "flow"),
            "step": first_tag(mail, "step"),
            "template": first_tag(mail, "template"),
            "enrollment": first_tag(mail, "enrollment"),
            "variant": first_tag(mail, "variant"),
            "message_id": message_id,
            "bounce_type": bounce_type,
            "link": body.get("link"),
        },
    });
    Event::parse(&envelope).map_err(|e: FieldError| FeedbackError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BounceType;

    fn detail(section: &str, body: Value) -> Value {
        json!({
            "eventType": "x",
            "mail": {"timestamp": "2026-11-20T01:15:00.000Z", "messageId": "0100018c-abc-000000",
                     "tags": {"customer_id": ["cust-1"], "flow": ["order_confirmation"], "step": ["confirm"]}},
            section: body,
        })
    }

    #[test]
    fn bounce_types() {
        let now = Utc::now();
        let permanent = to_event("Email Bounced", &detail("bounce", json!({"bounceType": "Permanent", "timestamp": "2026-11-20T01:16:00.000Z"})), now).unwrap();
        assert_eq!(permanent.email.as_ref().unwrap().bounce_type, Some(BounceType::Permanent));
        assert_eq!(permanent.customer.id.as_str(), "cust-1");
        assert_eq!(permanent.email.as_ref().unwrap().flow.as_deref(), Some("order_confirmation"));
        let transient = to_event("Email Bounced", &detail("bounce", json!({"bounceType": "Transient"})), now).unwrap();
        assert_eq!(transient.email.unwrap().bounce_type, Some(BounceType::Transient));
    }

    #[test]
    fn every_detail_type_maps() {
        for (dt, expected) in [
            ("Email Sent", "email_sent"),
            ("Email Delivered", "email_delivered"),
            ("Email Complaint Received", "email_complained"),
            ("Email Opened", "email_opened"),
            ("Email Clicked", "email_clicked"),
            ("Email Rejected", "email_rejected"),
            ("Email Delivery Delayed", "email_delivery_delayed"),
            ("Email Rendering Failed", "email_rendering_failed"),
            ("Email Subscribed", "email_subscription_changed"),
        ] {
            let event = to_event(dt, &detail("x", json!({})), Utc::now()).unwrap();
            assert_eq!(event.event_type.as_str(), expected, "{dt}");
        }
        assert_eq!(to_event("Email Teleported", &detail("x", json!({})), Utc::now()).unwrap_err(), FeedbackError::UnknownType("Email Teleported".into()));
    }

    #[test]
    fn customer_from_hex_tag_or_header() {
        let hex_tag = json!({"mail": {"messageId": "m", "tags": {"customer_id_hex": [hex::encode("a@b.jp")]}}});
        assert_eq!(to_event("Email Opened", &hex_tag, Utc::now()).unwrap().customer.id.as_str(), "a@b.jp");
        let header = json!({"mail": {"messageId": "m", "headers": [{"name": "x-aftercare-customer", "value": "c9"}]}});
        assert_eq!(to_event("Email Opened", &header, Utc::now()).unwrap().customer.id.as_str(), "c9");
        let none = json!({"mail": {"messageId": "m"}});
        assert_eq!(to_event("Email Opened", &none, Utc::now()).unwrap_err(), FeedbackError::NoCustomer);
    }

    #[test]
    fn opens_at_different_times_are_different_events() {
        let a = to_event("Email Opened", &detail("open", json!({"timestamp": "2026-11-20T02:00:00.000Z"})), Utc::now()).unwrap();
        let b = to_event("Email Opened", &detail("open", json!({"timestamp": "2026-11-20T03:00:00.000Z"})), Utc::now()).unwrap();
        assert_ne!(a.id, b.id);
    }
}
