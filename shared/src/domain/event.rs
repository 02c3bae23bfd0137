//! The event envelope of FLOWS.md §1, parsed with every rule enforced.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::json::{Json, JsonDoc};
use super::reader::{ObjectReader, Place};
use super::values::{Currency, CustomerId, EmailAddress, EventId, EventType, Locale, Money, TimeZone};
use super::FieldError;

pub const MAX_PROPERTIES_BYTES: usize = 32 * 1024;
const MAX_ITEMS: usize = 250;
const MAX_TEXT: usize = 1000;
const MAX_URL: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: DateTime<FixedOffset>,
    pub customer: CustomerFields,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    // The rarer parts are boxed: an event is kept by every enrollment it starts and, in the
    // simulator, for the whole run; inline, these parts were 430 of its 768 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<Box<Shipment>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<Box<Checkout>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Box<Review>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Box<EmailFeedback>>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerFields {
    pub id: CustomerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<super::customer::Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<super::customer::Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<Locale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<TimeZone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marketing_consent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_account: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// Shared, so that expressions and templates read the lines in place (`engine::order_value`)
    /// instead of copying them into minijinja values.
    #[serde(default, skip_serializing_if = "<[LineItem]>::is_empty")]
    pub items: std::sync::Arc<[LineItem]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replenish_after_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guide_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_skus: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_delivery: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkout {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<LineItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub order_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceType {
    Permanent,
    Transient,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EmailFeedback {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_type: Option<BounceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Hash of the enrollment the email belongs to (SES tag `enrollment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Event {
    /// Parses one envelope. The first problem found is returned, naming its field.
    pub fn parse(value: &Value) -> Result<Event, FieldError> {
        Self::parse_json(value)
    }

    /// `parse`, from a document parsed as a `JsonDoc` (input read as text): the same rules
    /// and errors, without building a `Value` first.
    pub fn parse_doc(doc: &JsonDoc<'_>) -> Result<Event, FieldError> {
        Self::parse_json(doc)
    }

    pub(crate) fn parse_json<J: Json>(value: &J) -> Result<Event, FieldError> {
        let root = ObjectReader::new(Place::Root, value)?;
        let id = root.required_parsed("id", EventId::parse)?;
        let event_type = root.required_parsed("type", EventType::parse)?;
        let occurred_at = root.required_parsed("occurred_at", |s| {
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| format!("{s:?} is not an RFC 3339 timestamp with an offset (e.g. 2026-11-20T10:15:00+09:00)"))
        })?;
        let customer = parse_customer(&root.required_object("customer")?)?;
        let order = root.object("order")?.map(|o| parse_order(&o)).transpose()?;
        let shipment = root.object("shipment")?.map(|s| parse_shipment(&s).map(Box::new)).transpose()?;
        let checkout = root.object("checkout")?.map(|c| parse_checkout(&c).map(Box::new)).transpose()?;
        let review = root.object("review")?.map(|r| parse_review(&r).map(Box::new)).transpose()?;
        let email = root.object("email")?.map(|e| parse_email(&e).map(Box::new)).transpose()?;
        let properties = match root.get("properties").map(|p| p.to_map().ok_or(p)) {
            None => Map::new(),
            Some(Ok(map)) => {
                let size = serde_json::to_vec(&map).map(|v| v.len()).unwrap_or(usize::MAX);
                if size > MAX_PROPERTIES_BYTES {
                    return Err(FieldError::new(
                        "properties",
                        "too_large",
                        format!("properties must be at most 32 KiB of JSON, got {size} bytes"),
                    ));
                }
                map
            }
            Some(Err(other)) => return Err(FieldError::new("properties", "invalid_type", format!("properties must be an object, got {}", other.kind()))),
        };
        let event = Event { id, event_type, occurred_at, customer, order, shipment, checkout, review, email, properties };
        event.check_required_parts()?;
        Ok(event)
    }

    /// The parts a standard event type cannot do without.
    fn check_required_parts(&self) -> Result<(), FieldError> {
        let kind = self.event_type.as_str();
        if kind.starts_with("order_") && self.order.is_none() {
            return Err(FieldError::new("order", "required", format!("order is required for {kind} events")));
        }
        if matches!(kind, "order_placed" | "order_shipped") && self.order.as_ref().is_some_and(|o| o.items.is_empty()) {
            return Err(FieldError::new("order.items", "required", format!("order.items must list at least one item for {kind} events")));
        }
        if kind == "order_shipped" && self.shipment.is_none() {
            return Err(FieldError::new("shipment", "required", "shipment is required for order_shipped events"));
        }
        if kind == "review_submitted" && self.review.is_none() {
            return Err(FieldError::new("review", "required", "review is required for review_submitted events"));
        }
        if kind == "checkout_started" && self.checkout.is_none() {
            return Err(FieldError::new("checkout", "required", "checkout is required for checkout_started events"));
        }
        if kind == "email_bounced" && self.email.as_ref().and_then(|e| e.bounce_type).is_none() {
            return Err(FieldError::new("email.bounce_type", "required", "email.bounce_type (permanent|transient) is required for email_bounced events"));
        }
        Ok(())
    }

    pub fn occurred_at_utc(&self) -> DateTime<Utc> {
        self.occurred_at.with_timezone(&Utc)
    }
}

fn parse_customer<J: Json>(c: &ObjectReader<'_, J>) -> Result<CustomerFields, FieldError> {
    Ok(CustomerFields {
        id: c.required_parsed("id", CustomerId::parse)?,
        email: c.parsed("email", EmailAddress::parse)?,
        first_name: c.text("first_name", 100)?.map(Into::into),
        last_name: c.text("last_name", 100)?.map(Into::into),
        locale: c.parsed("locale", Locale::parse)?,
        timezone: c.parsed("timezone", TimeZone::parse)?,
        birthday: c.parsed("birthday", |s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("{s:?} is not a date in YYYY-MM-DD form"))
        })?,
        marketing_consent: c.bool("marketing_consent")?,
        has_account: c.bool("has_account")?,
    })
}

fn required_text<J: Json>(r: &ObjectReader<'_, J>, key: &str) -> Result<String, FieldError> {
    let text = r.text(key, 128)?.ok_or_else(|| FieldError::required(r.path_of(key)))?;
    if text.is_empty() {
        return Err(FieldError::new(r.path_of(key), "invalid", format!("{} must not be empty", r.path_of(key))));
    }
    Ok(text)
}

fn parse_items<J: Json>(r: &ObjectReader<'_, J>) -> Result<Vec<LineItem>, FieldError> {
    let Some(items) = r.array("items")? else { return Ok(Vec::new()) };
    if items.len() > MAX_ITEMS {
        return Err(FieldError::new(r.path_of("items"), "too_many", format!("{} has more than {MAX_ITEMS} items", r.path_of("items"))));
    }
    let list = r.place_of("items");
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item = ObjectReader::new(Place::Index(&list, i), item)?;
            Ok(LineItem {
                sku: required_text(&item, "sku")?,
                name: item.text("name", MAX_TEXT)?,
                quantity: item.integer("quantity", 1, 100_000)?.unwrap_or(1) as u32,
                unit_price: item.money("unit_price")?,
                category: item.text("category", 128)?,
                url: item.text("url", MAX_URL)?,
                image_url: item.text("image_url", MAX_URL)?,
                replenish_after_days: item.integer("replenish_after_days", 1, 3650)?.map(|d| d as u32),
                guide_url: item.text("guide_url", MAX_URL)?,
                related_skus: item.string_list("related_skus", 50)?,
            })
        })
        .collect()
}

fn parse_order<J: Json>(o: &ObjectReader<'_, J>) -> Result<Order, FieldError> {
    Ok(Order {
        id: required_text(o, "id")?,
        number: o.text("number", 128)?,
        total: o.money("total")?,
        currency: o.parsed("currency", Currency::parse)?,
        items: parse_items(o)?.into(),
    })
}

fn parse_shipment<J: Json>(s: &ObjectReader<'_, J>) -> Result<Shipment, FieldError> {
    Ok(Shipment {
        carrier: s.text("carrier", 128)?,
        tracking_number: s.text("tracking_number", 128)?,
        tracking_url: s.text("tracking_url", MAX_URL)?,
        estimated_delivery: s.parsed("estimated_delivery", |d| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| format!("{d:?} is not a date in YYYY-MM-DD form"))
        })?,
    })
}

fn parse_checkout<J: Json>(c: &ObjectReader<'_, J>) -> Result<Checkout, FieldError> {
    Ok(Checkout {
        id: required_text(c, "id")?,
        url: c.text("url", MAX_URL)?,
        items: parse_items(c)?,
        total: c.money("total")?,
        currency: c.parsed("currency", Currency::parse)?,
    })
}

fn parse_review<J: Json>(r: &ObjectReader<'_, J>) -> Result<Review, FieldError> {
    Ok(Review {
        order_id: required_text(r, "order_id")?,
        sku: r.text("sku", 128)?,
        rating: r.integer("rating", 1, 5)?.map(|v| v as u8),
    })
}

fn parse_email<J: Json>(e: &ObjectReader<'_, J>) -> Result<EmailFeedback, FieldError> {
    Ok(EmailFeedback {
        flow: e.text("flow", 64)?,
        step: e.text("step", 64)?,
        template: e.text("template", 64)?,
        message_id: e.text("message_id", 256)?,
        bounce_type: e.parsed("bounce_type", |s| match s {
            "permanent" => Ok(BounceType::Permanent),
            "transient" => Ok(BounceType::Transient),
            other => Err(format!("{other:?} must be permanent or transient")),
        })?,
        link: e.text("link", MAX_URL)?,
        enrollment: e.text("enrollment", 64)?,
        variant: e.text("variant", 64)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_placed() -> Value {
        json!({
            "id": "evt-1", "type": "order_placed", "occurred_at": "2026-11-20T10:15:00+09:00",
            "customer": {"id": "cust-1", "email": "hanako@example.jp", "locale": "ja-JP", "timezone": "Asia/Tokyo"},
            "order": {"id": "A1001", "number": "#1001", "total": 12800, "currency": "JPY",
                      "items": [{"sku": "COFFEE-1KG", "quantity": 1, "unit_price": "3200"}]}
        })
    }

    /// Both readings of one text: through a `Value`, and through a `JsonDoc`.
    fn both_ways(text: &str) -> (Result<Event, FieldError>, Result<Event, FieldError>) {
        let value: Value = serde_json::from_str(text).unwrap();
        let doc: JsonDoc = serde_json::from_str(text).unwrap();
        (Event::parse(&value), Event::parse_doc(&doc))
    }

    /// A value for a mutated field: each JSON type, and strings and numbers near the rules'
    /// edges (lengths, ranges, formats).
    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (0u64..300).prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-zA-Z0-9@._:+ -]{0,12}".prop_map(Value::from),
            Just(Value::from("x".repeat(1001))),
            Just(Value::from("2026-11-20T10:15:00+09:00")),
            Just(Value::from("1990-02-30")),
            Just(Value::from("12.50")),
            Just(Value::from("-3")),
            Just(Value::from("é\"\\\n")),
            Just(serde_json::json!([])),
            Just(serde_json::json!(["A", ""])),
            Just(serde_json::json!({})),
            Just(serde_json::json!({"sku": "S"})),
        ]
    }

    proptest::proptest! {
        /// Whatever a field holds, both readings agree: the same event, or the same error.
        #[test]
        fn a_json_doc_reads_as_a_value_does(
            edits in proptest::collection::vec((0usize..30, any_json()), 0..4),
            remove in proptest::option::of(0usize..30),
        ) {
            let paths: [&[&str]; 30] = [
                &["id"], &["type"], &["occurred_at"], &["customer"], &["customer", "id"], &["customer", "email"],
                &["customer", "first_name"], &["customer", "locale"], &["customer", "timezone"], &["customer", "birthday"],
                &["customer", "marketing_consent"], &["customer", "has_account"], &["order"], &["order", "id"],
                &["order", "total"], &["order", "currency"], &["order", "items"], &["order", "number"],
                &["shipment"], &["shipment", "estimated_delivery"], &["checkout"], &["review"], &["review", "rating"],
                &["email"], &["email", "bounce_type"], &["properties"], &["properties", "gift"],
                &["order", "items", "0"], &["order", "items", "0", "quantity"], &["order", "items", "0", "related_skus"],
            ];
            let mut value = order_placed();
            value["order"]["items"][0]["related_skus"] = serde_json::json!(["BEANS"]);
            value["properties"] = serde_json::json!({"gift": true});
            for (path, new) in edits {
                let mut at = &mut value;
                for key in &paths[path][..paths[path].len() - 1] {
                    at = match key.parse::<usize>() {
                        // An earlier edit may have left the array shorter: the edit then lands nowhere.
                        Ok(i) if at.as_array().is_some_and(|items| i < items.len()) => &mut at[i],
                        _ if at.is_object() => &mut at[*key],
                        _ => break,
                    };
                }
                if at.is_object() {
                    at[*paths[path].last().unwrap()] = new;
                }
            }
            if let Some(path) = remove {
                let (last, parents) = paths[path].split_last().unwrap();
                let mut at = Some(&mut value);
                for key in parents {
                    at = at.and_then(|v| if v.is_object() { v.get_mut(*key) } else { None });
                }
                if let Some(object) = at.and_then(Value::as_object_mut) {
                    object.remove(*last);
                }
            }
            let text = value.to_string();
            let (from_value, from_doc) = both_ways(&text);
            proptest::prop_assert_eq!(from_value, from_doc, "{}", text);
        }
    }

    #[test]
    fn a_repeated_key_and_escapes_read_the_same_both_ways() {
        let text = r#"{"id":"evt-0","id":"evt-1","type":"order_placed","occurred_at":"2026-11-20T10:15:00+09:00",
            "customer":{"id":"cust-1","email":"hanako@example.jp","first_name":"\u82b1\u5b50 \"H\""},
            "order":{"id":"A1","items":[{"sku":"S","quantity":1}],"items":[{"sku":"T\/2","quantity":2,"unit_price":1.50}]},
            "properties":{"b":1,"a":{"x":[1,"y",null]},"b":2}}"#;
        let (from_value, from_doc) = both_ways(text);
        let event = from_doc.unwrap();
        assert_eq!(Ok(&event), from_value.as_ref());
        assert_eq!((event.id.as_str(), event.customer.first_name.as_deref()), ("evt-1", Some("花子 \"H\"")));
        assert_eq!(event.order.as_ref().unwrap().items[0].sku, "T/2");
        assert_eq!(event.properties["b"], 2);
    }

    fn error_field(mut value: Value, edit: impl FnOnce(&mut Value)) -> String {
        edit(&mut value);
        Event::parse(&value).expect_err("should be refused").field
    }

    #[test]
    fn parses_a_full_order() {
        let event = Event::parse(&order_placed()).unwrap();
        assert_eq!(event.order.as_ref().unwrap().total.unwrap().to_string(), "12800");
        assert_eq!(event.occurred_at_utc().to_rfc3339(), "2026-11-20T01:15:00+00:00");
        // Stored form round-trips.
        let stored = serde_json::to_value(&event).unwrap();
        let back: Event = serde_json::from_value(stored).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases: Vec<(&str, Box<dyn FnOnce(&mut Value)>)> = vec![
            ("id", Box::new(|v| { v["id"] = json!("bad id"); })),
            ("id", Box::new(|v| { v.as_object_mut().unwrap().remove("id"); })),
            ("type", Box::new(|v| { v["type"] = json!("Order"); })),
            ("occurred_at", Box::new(|v| { v["occurred_at"] = json!("2026-11-20T10:15:00"); })),
            ("customer", Box::new(|v| { v.as_object_mut().unwrap().remove("customer"); })),
            ("customer.id", Box::new(|v| { v["customer"]["id"] = json!(""); })),
            ("customer.email", Box::new(|v| { v["customer"]["email"] = json!("not-an-email"); })),
            ("customer.timezone", Box::new(|v| { v["customer"]["timezone"] = json!("Tokyo"); })),
            ("customer.birthday", Box::new(|v| { v["customer"]["birthday"] = json!("04/05/1990"); })),
            ("customer.marketing_consent", Box::new(|v| { v["customer"]["marketing_consent"] = json!("yes"); })),
            ("order", Box::new(|v| { v.as_object_mut().unwrap().remove("order"); })),
            ("order.items", Box::new(|v| { v["order"]["items"] = json!([]); })),
            ("order.items[0].sku", Box::new(|v| { v["order"]["items"][0]["sku"] = json!(7); })),
            ("order.items[0].quantity", Box::new(|v| { v["order"]["items"][0]["quantity"] = json!(0); })),
            ("order.items[1]", Box::new(|v| { v["order"]["items"] = json!([{"sku": "A"}, "a line"]); })),
            ("order.items[2].unit_price", Box::new(|v| { v["order"]["items"] = json!([{"sku": "A"}, {"sku": "B"}, {"sku": "C", "unit_price": "1,800"}]); })),
            ("order.items[2].related_skus[1]", Box::new(|v| { v["order"]["items"] = json!([{"sku": "A"}, {"sku": "B"}, {"sku": "C", "related_skus": ["A", 7]}]); })),
            ("customer", Box::new(|v| { v["customer"] = json!("c1"); })),
            ("order.total", Box::new(|v| { v["order"]["total"] = json!("-5"); })),
            ("order.currency", Box::new(|v| { v["order"]["currency"] = json!("yen"); })),
            ("properties", Box::new(|v| { v["properties"] = json!({"blob": "x".repeat(40_000)}); })),
        ];
        for (field, edit) in cases {
            assert_eq!(error_field(order_placed(), edit), field);
        }
    }

    #[test]
    fn type_specific_parts_are_required() {
        let shipped = json!({"id": "e", "type": "order_shipped", "occurred_at": "2026-11-20T10:15:00Z",
            "customer": {"id": "c"}, "order": {"id": "A", "items": [{"sku": "X"}]}});
        assert_eq!(Event::parse(&shipped).unwrap_err().field, "shipment");
        let review = json!({"id": "e", "type": "review_submitted", "occurred_at": "2026-11-20T10:15:00Z", "customer": {"id": "c"}});
        assert_eq!(Event::parse(&review).unwrap_err().field, "review");
        let custom = json!({"id": "e", "type": "wishlist_added", "occurred_at": "2026-11-20T10:15:00Z", "customer": {"id": "c"}});
        assert!(Event::parse(&custom).is_ok());
    }

    #[test]
    fn non_object_root_is_refused() {
        assert_eq!(Event::parse(&json!([1])).unwrap_err().field, "$");
    }
}
