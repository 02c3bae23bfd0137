//! `/u/<token>`: one-click unsubscribe (POST, RFC 8058) and a small preference page (GET)
//! that works without JavaScript, in the customer's language (ja or en).

use chrono::Utc;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{App, ServiceError};
use crate::domain::{CustomerId, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Unsubscribe,
    Resubscribe,
}

impl Choice {
    /// A one-click POST (`List-Unsubscribe=One-Click`, or an empty body) and the page's
    /// unsubscribe button unsubscribe; only the page's other button resubscribes.
    pub fn from_form(body: &[u8]) -> Choice {
        let body = String::from_utf8_lossy(body);
        if body.split('&').any(|pair| pair == "action=resubscribe") {
            Choice::Resubscribe
        } else {
            Choice::Unsubscribe
        }
    }
}

/// Records the choice as an event on the customer's timeline (so it is audited like any other).
pub async fn apply(app: &App, customer: &CustomerId, choice: Choice) -> Result<(), ServiceError> {
    let now = app.ports.clock.now();
    let kind = match choice {
        Choice::Unsubscribe => "unsubscribed",
        Choice::Resubscribe => "subscribed",
    };
    let digest = hex::encode(&Sha256::digest(format!("{customer}\0{kind}\0{}", now.timestamp_micros()).as_bytes())[..12]);
    let event = Event::parse(&json!({
        "id": format!("pref-{kind}-{digest}"),
        "type": kind,
        "occurred_at": now.to_rfc3339(),
        "customer": {"id": customer.as_str()},
        "properties": {"source": "preference_link"},
    }))
    .map_err(|e| ServiceError::Fatal(format!("preference event: {e}")))?;
    app.ingest_feedback(&event).await.map(|_| ())
}

fn masked(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".into(),
    }
}

/// The page, in the customer's language; `done` says what was just changed.
pub async fn page(app: &App, customer: &CustomerId, done: Option<Choice>) -> Result<String, ServiceError> {
    let state = app.ports.store.load(customer).await?.map(|s| s.value);
    let profile = state.as_ref().map(|s| &s.profile);
    let english = profile.and_then(|p| p.locale.as_ref()).is_some_and(|l| l.language() == "en");
    let subscribed = profile.is_some_and(|p| p.marketing_consent && !p.unsubscribed && !p.complained);
    let email = profile.and_then(|p| p.email.as_ref()).map(|e| masked(e.as_str())).unwrap_or_default();
    let t = |ja: &'static str, en: &'static str| if english { en } else { ja };
    let context = json!({
        "lang": if english { "en" } else { "ja" },
        "store": app.flows.store.name,
        "email": email,
        "title": t("メール配信の設定", "Email preferences"),
        "status": if subscribed { t("お知らせメールを受け取っています。", "You receive our news and offers.") }
                  else { t("お知らせメールは停止しています。", "You do not receive our news and offers.") },
        "done": match done {
            Some(Choice::Unsubscribe) => Some(t("配信を停止しました。", "You have been unsubscribed.")),
            Some(Choice::Resubscribe) => Some(t("配信を再開しました。", "You are subscribed again.")),
            None => None,
        },
        "subscribed": subscribed,
        "unsubscribe": t("すべてのお知らせメールを停止する", "Unsubscribe from all marketing email"),
        "resubscribe": t("お知らせメールを再開する", "Subscribe again"),
        "note": t("ご注文・発送に関するメールは、設定にかかわらずお送りします。", "Order and shipping emails are always sent."),
        "at": Utc::now().to_rfc3339(),
    });
    let mut env = minijinja::Environment::new();
    env.add_template("page.html", PAGE).map_err(|e| ServiceError::Fatal(e.to_string()))?;
    env.get_template("page.html").and_then(|t| t.render(context)).map_err(|e| ServiceError::Fatal(format!("preference page: {e}")))
}

const PAGE: &str = r#"<!doctype html>
<html lang="{{ lang }}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<title>{{ title }} — {{ store }}</title></head>
<body style="font-family: system-ui, 'Hiragino Sans', sans-serif; max-width: 32rem; margin: 2rem auto; padding: 0 1rem; color: #3b2f2a">
<h1 style="font-size: 1.3rem">{{ store }}: {{ title }}</h1>
{% if done %}<p role="status" style="background: #eef6ee; padding: .75rem"><strong>{{ done }}</strong></p>{% endif %}
<p>{{ email }}</p>
<p>{{ status }}</p>
{% if subscribed %}
<form method="post"><input type="hidden" name="action" value="unsubscribe"><button type="submit">{{ unsubscribe }}</button></form>
{% else %}
<form method="post"><input type="hidden" name="action" value="resubscribe"><button type="submit">{{ resubscribe }}</button></form>
{% endif %}
<p style="font-size: .85rem; color: #7a6a60">{{ note }}</p>
</body>
</html>
"#;
