//! The HTTP API, independent of the server: the ingest Lambda (API Gateway) and
//! `aftercare dev` (axum) both map their requests to `ApiRequest` and back.

use chrono::NaiveDate;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{preferences, App, ServiceError};
use crate::domain::{CustomerId, Json, JsonDoc};

pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub struct ApiRequest<'a> {
    pub method: &'a str,
    /// Percent-encoded, as received.
    pub path: &'a str,
    /// The query string without `?`.
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
    /// A page for people (the preference page): served as text/html instead of `body`.
    pub html: Option<String>,
}

impl ApiResponse {
    fn error(status: u16, code: &str, message: impl Into<String>, field: Option<&str>, index: Option<usize>) -> Self {
        let mut error = json!({"code": code, "message": message.into()});
        if let Some(field) = field {
            error["field"] = json!(field);
        }
        if let Some(index) = index {
            error["index"] = json!(index);
        }
        ApiResponse { status, body: json!({ "error": error }), html: None }
    }

    fn page(status: u16, html: String) -> Self {
        ApiResponse { status, body: Value::Null, html: Some(html) }
    }
}

/// Ingest keys, kept only as SHA-256 hashes and compared in constant time.
#[derive(Clone)]
pub struct ApiKeys {
    hashes: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} hashes)", self.hashes.len())
    }
}

impl ApiKeys {
    /// Comma-separated hex SHA-256 hashes, as in the `API_KEY_HASHES` setting.
    pub fn from_hashes(list: &str) -> Result<ApiKeys, String> {
        let hashes = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|h| {
                let bytes = hex::decode(h).map_err(|_| format!("API key hash {h:?} is not hex"))?;
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("API key hash {h:?} is not 64 hex characters (SHA-256)"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if hashes.is_empty() {
            return Err("no API key hashes configured: every request would be refused".into());
        }
        Ok(ApiKeys { hashes })
    }

    pub fn hash(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    pub fn from_plain_key(key: &str) -> ApiKeys {
        ApiKeys { hashes: vec![Sha256::digest(key.as_bytes()).into()] }
    }

    pub fn verify(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Check every hash, so timing does not tell which one (or whether any) matched.
        self.hashes.iter().fold(subtle::Choice::from(0), |found, h| found | h.ct_eq(&digest)).into()
    }
}

/// Who may call what: storefronts ingest; support staff (a separate key) read reports and
/// timelines, export and erase customers. Without admin keys those routes are off.
#[derive(Debug, Clone)]
pub struct AccessKeys {
    pub ingest: ApiKeys,
    pub admin: Option<ApiKeys>,
}

fn bearer<'a>(request: &ApiRequest<'a>) -> Option<&'a str> {
    request.authorization.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))).map(str::trim)
}

pub async fn handle(app: &App, keys: &AccessKeys, request: ApiRequest<'_>) -> ApiResponse {
    let path = request.path.trim_end_matches('/');
    if let Some(token) = path.strip_prefix("/u/") {
        return preference_link(app, token, request).await;
    }
    if path == "/v1/reports/flows" || path.starts_with("/v1/customers/") {
        return admin(app, keys.admin.as_ref(), path, request).await;
    }
    let keys = &keys.ingest;
    if path != "/v1/events" {
        return ApiResponse::error(404, "not_found", format!("no route for {} {}", request.method, request.path), None, None);
    }
    if request.method != "POST" {
        return ApiResponse::error(405, "method_not_allowed", format!("{} is not allowed on /v1/events; use POST", request.method), None, None);
    }
    if !bearer(&request).is_some_and(|key| keys.verify(key)) {
        return ApiResponse::error(401, "unauthorized", "missing or invalid API key: send Authorization: Bearer <key>", None, None);
    }
    let is_json = request
        .content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return ApiResponse::error(
            415,
            "unsupported_media_type",
            format!("content type must be application/json, got {:?}", request.content_type.unwrap_or("none")),
            None,
            None,
        );
    }
    if request.body.len() > MAX_BODY_BYTES {
        return ApiResponse::error(413, "payload_too_large", format!("body is {} bytes; the limit is 1 MiB ({MAX_BODY_BYTES} bytes)", request.body.len()), None, None);
    }
    // A `JsonDoc`: the events' strings borrow from the body, and a batch is read in place.
    let parsed: JsonDoc = match serde_json::from_slice(request.body) {
        Ok(v) => v,
        Err(e) => return ApiResponse::error(400, "invalid_json", format!("body is not valid JSON: {e}"), Some("$"), None),
    };
    let events = match (&parsed, parsed.field("events")) {
        (JsonDoc::Object(_), Some(JsonDoc::Array(events))) if !events.is_empty() => events.as_slice(),
        (JsonDoc::Object(_), Some(_)) => return ApiResponse::error(400, "invalid", "events must be a non-empty array of event objects", Some("events"), None),
        (JsonDoc::Object(_), None) => std::slice::from_ref(&parsed),
        _ => return ApiResponse::error(400, "invalid_type", "body must be an event object or {\"events\": [...]}", Some("$"), None),
    };
    match app.ingest_docs(events).await {
        Ok(report) => ApiResponse { status: 202, body: json!({"accepted": report.accepted, "duplicates": report.duplicates}), html: None },
        Err(e) => service_error(e, "retry with the same event ids"),
    }
}

fn service_error(error: ServiceError, retry_hint: &str) -> ApiResponse {
    match error {
        ServiceError::Invalid { index, error } => ApiResponse::error(400, error.code, error.message, Some(&error.field), index),
        ServiceError::Retryable(message) => {
            tracing::warn!(%message, "request failed, client should retry");
            ApiResponse::error(503, "unavailable", format!("temporary failure; {retry_hint}"), None, None)
        }
        ServiceError::Fatal(message) => {
            tracing::error!(%message, "request failed");
            ApiResponse::error(500, "internal", "internal error", None, None)
        }
    }
}

fn ok(body: Value) -> ApiResponse {
    ApiResponse { status: 200, body, html: None }
}

/// `from` / `to` query parameters as UTC days; missing ones default to the last 30 days.
fn report_range(app: &App, query: Option<&str>) -> Result<(NaiveDate, NaiveDate), ApiResponse> {
    let (default_from, default_to) = App::default_report_range(app.ports.clock.now());
    let mut range = (default_from, default_to);
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "from" => &mut range.0,
            "to" => &mut range.1,
            other => return Err(ApiResponse::error(400, "unknown_parameter", format!("unknown query parameter {other:?}; use from and to"), Some(other), None)),
        };
        *slot = value
            .parse::<NaiveDate>()
            .map_err(|_| ApiResponse::error(400, "invalid_date", format!("{name}: {value:?} is not a date (YYYY-MM-DD)"), Some(name), None))?;
    }
    if range.0 > range.1 {
        return Err(ApiResponse::error(400, "invalid_range", format!("from {} is after to {}", range.0, range.1), Some("from"), None));
    }
    if (range.1 - range.0).num_days() > 3660 {
        return Err(ApiResponse::error(400, "invalid_range", "a report covers at most 10 years", Some("from"), None));
    }
    Ok(range)
}

async fn admin(app: &App, keys: Option<&ApiKeys>, path: &str, request: ApiRequest<'_>) -> ApiResponse {
    let Some(keys) = keys else {
        return ApiResponse::error(403, "admin_disabled", "the admin API is off: configure admin key hashes (ADMIN_KEY_HASHES) to use it", None, None);
    };
    if !bearer(&request).is_some_and(|key| keys.verify(key)) {
        return ApiResponse::error(401, "unauthorized", "missing or invalid admin key: send Authorization: Bearer <admin key> (ingest keys are not admin keys)", None, None);
    }
    if path == "/v1/reports/flows" {
        if request.method != "GET" {
            return ApiResponse::error(405, "method_not_allowed", format!("{} is not allowed on {path}; use GET", request.method), None, None);
        }
        let (from, to) = match report_range(app, request.query) {
            Ok(range) => range,
            Err(response) => return response,
        };
        return match app.report(from, to).await {
            Ok(report) => ok(serde_json::to_value(&report).unwrap_or(Value::Null)),
            Err(e) => service_error(e, "retry"),
        };
    }
    let rest = path.trim_start_matches("/v1/customers/");
    let (raw_id, action) = match rest.rsplit_once('/') {
        Some((id, action @ ("timeline" | "export"))) => (id, action),
        _ => (rest, ""),
    };
    let decoded = percent_encoding::percent_decode_str(raw_id).decode_utf8_lossy();
    let customer = match CustomerId::parse(&decoded) {
        Ok(id) => id,
        Err(e) => return ApiResponse::error(400, "invalid", format!("customer_id: {e}"), Some("customer_id"), None),
    };
    match (request.method, action) {
        ("GET", "timeline") => match app.ports.store.load(&customer).await {
            Ok(None) => ApiResponse::error(404, "not_found", format!("no customer {customer:?}"), Some("customer_id"), None),
            Ok(Some(_)) => match app.ports.store.timeline(&customer).await {
                Ok(timeline) => ok(json!({"customer_id": customer.as_str(), "timeline": timeline})),
                Err(e) => service_error(e.into(), "retry"),
            },
            Err(e) => service_error(e.into(), "retry"),
        },
        ("GET", "export") => match app.export_customer(&customer).await {
            Ok(Some(export)) => ok(export),
            Ok(None) => ApiResponse::error(404, "not_found", format!("no customer {customer:?}"), Some("customer_id"), None),
            Err(e) => service_error(e, "retry"),
        },
        ("DELETE", "") => match app.erase_customer(&customer).await {
            Ok(existed) => ok(json!({"customer_id": customer.as_str(), "erased": true, "existed": existed})),
            Err(e) => service_error(e, "retry the erase; it is idempotent"),
        },
        (method, "") => ApiResponse::error(405, "method_not_allowed", format!("{method} is not allowed on {path}; use DELETE, or GET …/timeline or …/export"), None, None),
        (method, _) => ApiResponse::error(405, "method_not_allowed", format!("{method} is not allowed on {path}; use GET"), None, None),
    }
}

/// `/u/<token>`: no API key (the signed token is the credential). A POST is RFC 8058's
/// one-click unsubscribe or the page's form; a GET shows the page and changes nothing.
async fn preference_link(app: &App, token: &str, request: ApiRequest<'_>) -> ApiResponse {
    let customer = match app.links.verify(token) {
        Ok(customer) => customer,
        Err(e) => return ApiResponse::error(404, "invalid_link", e.to_string(), Some("token"), None),
    };
    let done = match request.method {
        "GET" | "HEAD" => None,
        "POST" => {
            if request.body.len() > 4096 {
                return ApiResponse::error(413, "payload_too_large", "a preference form is at most 4 KiB", None, None);
            }
            let choice = preferences::Choice::from_form(request.body);
            if let Err(e) = preferences::apply(app, &customer, choice).await {
                tracing::warn!(error = %e, "preference change failed");
                return ApiResponse::error(503, "unavailable", "temporary failure; please try again", None, None);
            }
            Some(choice)
        }
        other => return ApiResponse::error(405, "method_not_allowed", format!("{other} is not allowed here; use GET or POST"), None, None),
    };
    match preferences::page(app, &customer, done).await {
        Ok(html) => ApiResponse::page(200, html),
        Err(e) => {
            tracing::warn!(error = %e, "preference page failed");
            ApiResponse::error(503, "unavailable", "temporary failure; please try again", None, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_verify_only_their_own_secret() {
        let keys = ApiKeys::from_hashes(&format!("{},{}", ApiKeys::hash("alpha"), ApiKeys::hash("beta"))).unwrap();
        assert!(keys.verify("alpha"));
        assert!(keys.verify("beta"));
        assert!(!keys.verify("gamma"));
        assert!(!keys.verify(""));
        assert!(ApiKeys::from_hashes("").is_err());
        assert!(ApiKeys::from_hashes("abc").unwrap_err().contains("abc"));
    }
}
