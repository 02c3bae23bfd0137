//! `order` as expressions and templates see it, its lines read in place.
//!
//! Why: `replenishment`'s `order["items"] | selectattr("replenish_after_days") | list` runs on
//! every order and reads the order whole (`items` is also a map's method, so it is subscripted),
//! and serializing it for that (`Value::from_serialize`: every field of every line turned into
//! a value) was about 6,500 of an order's 132,000 instructions, to read one field of each line
//! (BENCHMARKS.md, item 72). These objects answer as the serialized order does: maps holding
//! the fields present, in declaration order, each valued as serialized, and the lines a list of
//! such maps. A property test compares the two on varied orders.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::Value;

use super::rules::Fields;
use crate::domain::{LineItem, Order};
use crate::flow::{OrderAttr, Reads};

/// `order` as the event serializes it, or, when `reads` names its fields, only those: a
/// subject's `order.number or order.id` need not build the lines. Nothing can tell them
/// apart, since reading the order whole (bare, iterated, by a computed key) reads it all.
pub(crate) fn order_value(order: Option<&Order>, reads: &Reads) -> Value {
    let Some(order) = order else { return Value::UNDEFINED };
    // As serialized: an absent number, total or currency, or no items, is no field at all.
    let field = |attr: OrderAttr| {
        let value = match attr {
            OrderAttr::Id => Some(Value::from(order.id.as_str())),
            OrderAttr::Number => order.number.as_deref().map(Value::from),
            OrderAttr::Total => order.total.as_ref().map(Value::from_serialize),
            OrderAttr::Currency => order.currency.as_ref().map(Value::from_serialize),
            OrderAttr::Items => (!order.items.is_empty()).then(|| Value::from_object(Lines(Arc::clone(&order.items)))),
        };
        value.map(|v| (attr.name(), v))
    };
    match reads.order_attrs() {
        Some(attrs) => Fields::value(attrs.filter_map(field).collect()),
        // `OrderAttr::ALL` is `Order`'s fields in declaration order.
        None => Fields::in_order(OrderAttr::ALL.into_iter().filter_map(field).collect()),
    }
}

/// The lines, as `Value::from_serialize(&order.items)` has them.
#[derive(Debug)]
struct Lines(Arc<[LineItem]>);

impl Object for Lines {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let index = key.as_usize()?;
        (index < self.0.len()).then(|| Value::from_object(Line { lines: Arc::clone(&self.0), index }))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.len())
    }
}

/// One line. Shares the order's lines rather than copying its own.
#[derive(Debug)]
struct Line {
    lines: Arc<[LineItem]>,
    index: usize,
}

/// `LineItem`'s fields in declaration order, as it serializes them.
const FIELDS: [&str; 10] = ["sku", "name", "quantity", "unit_price", "category", "url", "image_url", "replenish_after_days", "guide_url", "related_skus"];

impl Line {
    fn line(&self) -> &LineItem {
        &self.lines[self.index]
    }

    /// The field as serialized, `None` where serializing skips it (an absent option, an empty
    /// list). Listing the keys builds each value: rare (printing a line, testing it as true).
    fn field(&self, field: &str) -> Option<Value> {
        let l = self.line();
        let text = |t: &Option<String>| t.as_deref().map(Value::from);
        match field {
            "sku" => Some(Value::from(l.sku.as_str())),
            "name" => text(&l.name),
            "quantity" => Some(Value::from(l.quantity)),
            "unit_price" => l.unit_price.as_ref().map(Value::from_serialize),
            "category" => text(&l.category),
            "url" => text(&l.url),
            "image_url" => text(&l.image_url),
            "replenish_after_days" => l.replenish_after_days.map(Value::from),
            "guide_url" => text(&l.guide_url),
            "related_skus" => (!l.related_skus.is_empty()).then(|| Value::from_serialize(&l.related_skus)),
            _ => None,
        }
    }
}

impl Object for Line {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.field(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.field(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(FIELDS.iter().filter(|f| self.field(f).is_some()).map(|f| Value::from(*f)).collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(FIELDS.iter().filter(|f| self.field(f).is_some()).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, Money};
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-zA-Z0-9 /:.-]{0,30}")
    }

    fn money() -> impl Strategy<Value = Option<Money>> {
        proptest::option::of((0u32..1_000_000, 0u32..3).prop_map(|(units, scale)| Money::parse(&rust_decimal::Decimal::new(i64::from(units), scale).to_string()).unwrap()))
    }

    prop_compose! {
        fn line()(
            sku in "[A-Z0-9/-]{1,12}", name in text(), quantity in 1u32..100_000, unit_price in money(),
            category in text(), url in text(), image_url in text(),
            replenish_after_days in proptest::option::of(1u32..3650), guide_url in text(),
            related_skus in proptest::collection::vec("[A-Z0-9]{1,8}", 0..3),
        ) -> LineItem {
            LineItem { sku, name, quantity, unit_price, category, url, image_url, replenish_after_days, guide_url, related_skus }
        }
    }

    prop_compose! {
        fn order()(
            id in "[A-Z0-9-]{1,10}", number in text(), total in money(),
            currency in proptest::option::of(prop_oneof![Just("JPY"), Just("USD")]),
            items in proptest::collection::vec(line(), 0..4),
        ) -> Order {
            Order { id, number, total, currency: currency.map(|c| Currency::parse(c).unwrap()), items: items.into() }
        }
    }

    /// What templates can observe of a value, compared all the way down: its kind, text,
    /// JSON, truth and length, equality both ways, a map's keys in order and each one's value
    /// (and a key it lacks), a list's items and the index past its end.
    fn assert_reads_the_same(ours: &Value, serialized: &Value, at: &str) {
        let seen = |v: &Value| (v.kind(), v.to_string(), v.is_true(), v.len());
        assert_eq!(seen(ours), seen(serialized), "{at}");
        assert_eq!(serde_json::to_value(ours).unwrap(), serde_json::to_value(serialized).unwrap(), "{at}");
        assert!(ours == serialized && serialized == ours, "{at}");
        match serialized.kind() {
            minijinja::value::ValueKind::Map => {
                let keys = |v: &Value| v.try_iter().unwrap().map(|k| k.to_string()).collect::<Vec<_>>();
                assert_eq!(keys(ours), keys(serialized), "{at}'s keys");
                for key in keys(serialized).iter().map(String::as_str).chain(["nope"]) {
                    assert_reads_the_same(&ours.get_attr(key).unwrap(), &serialized.get_attr(key).unwrap(), &format!("{at}.{key}"));
                }
            }
            minijinja::value::ValueKind::Seq => {
                for i in 0..=serialized.len().unwrap() {
                    assert_reads_the_same(&ours.get_item(&Value::from(i)).unwrap(), &serialized.get_item(&Value::from(i)).unwrap(), &format!("{at}[{i}]"));
                }
            }
            _ => {}
        }
    }

    proptest! {
        #[test]
        fn an_order_read_whole_reads_as_serialized(order in order()) {
            assert_reads_the_same(&order_value(Some(&order), &Reads::everything()), &Value::from_serialize(&order), "order");
        }

        #[test]
        fn each_line_field_reads_as_serialized(order in order()) {
            for (i, line) in order.items.iter().enumerate() {
                let ours = order_value(Some(&order), &Reads::everything()).get_attr("items").unwrap().get_item(&Value::from(i)).unwrap();
                for field in FIELDS {
                    assert_reads_the_same(&ours.get_attr(field).unwrap(), &Value::from_serialize(line).get_attr(field).unwrap(), &format!("items[{i}].{field}"));
                }
            }
        }
    }

    #[test]
    fn a_line_with_every_field_and_one_with_none_read_as_serialized() {
        let full = LineItem {
            sku: "A1".into(),
            name: Some("Tea".into()),
            quantity: 2,
            unit_price: Some(Money::parse("12.50").unwrap()),
            category: Some("tea".into()),
            url: Some("https://shop.example/a1".into()),
            image_url: Some("https://shop.example/a1.jpg".into()),
            replenish_after_days: Some(30),
            guide_url: Some("https://shop.example/guide".into()),
            related_skus: vec!["B2".into()],
        };
        let bare = LineItem { sku: "B2".into(), name: None, quantity: 1, unit_price: None, category: None, url: None, image_url: None, replenish_after_days: None, guide_url: None, related_skus: vec![] };
        let order = Order { id: "o1".into(), number: Some("#1".into()), total: None, currency: None, items: vec![full, bare].into() };
        assert_reads_the_same(&order_value(Some(&order), &Reads::everything()), &Value::from_serialize(&order), "order");
    }
}
