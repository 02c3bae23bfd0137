//! Domain types. Everything from outside is parsed into these once, at the edge
//! (parse, don't validate); the rest of the crate trusts them.

mod customer;
mod event;
mod json;
mod reader;
mod stored;
mod values;

pub use customer::{CustomerState, Enrollment, Enrollments, FinishedId, FinishedIds, Name, Profile, SendRecord, TimelineEntry, TimelineKind};
pub use json::JsonDoc;
pub(crate) use json::Json;
pub use stored::{Deflated, STATE_DICTIONARY_1};
pub use event::{
    BounceType, Checkout, CustomerFields, EmailFeedback, Event, LineItem, Order, Review, Shipment,
    MAX_PROPERTIES_BYTES,
};
pub use values::{
    Currency, CustomerId, EmailAddress, EventId, EventType, Locale, Money, TimeZone,
};

use serde::Serialize;

/// One thing wrong with one field of the input. `field` is a dotted path such as
/// `customer.email` or `order.items[2].sku`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self { field: field.into(), code, message: message.into() }
    }
    pub fn required(field: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field} is required");
        Self { field, code: "required", message }
    }
}
