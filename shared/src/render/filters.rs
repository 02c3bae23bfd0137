//! Template filters: `{{ order.total | money(order.currency) }}`.

use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;

pub(super) fn register(env: &mut minijinja::Environment<'static>) {
    env.add_filter("money", |amount: minijinja::Value, currency: Option<String>| -> Result<String, minijinja::Error> {
        let text = amount.to_string();
        let value = Decimal::from_str(&text).map_err(|_| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("money: {text:?} is not an amount"))
        })?;
        Ok(format_money(value, currency.as_deref().unwrap_or("JPY")))
    });
}

fn group_thousands(digits: &str, separator: char) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(separator);
        }
        out.push(c);
    }
    out
}

/// `¥12,800`, `$250.00`, `12,80 €`; other currencies as `1,234.50 GBP`.
pub fn format_money(amount: Decimal, currency: &str) -> String {
    let decimals = if matches!(currency, "JPY" | "KRW") { 0 } else { 2 };
    let rounded = amount.round_dp_with_strategy(decimals, RoundingStrategy::MidpointAwayFromZero);
    let text = format!("{:.*}", decimals as usize, rounded);
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    match currency {
        "JPY" => format!("¥{}", group_thousands(whole, ',')),
        "USD" => format!("${}.{fraction}", group_thousands(whole, ',')),
        "EUR" => format!("{},{fraction} €", group_thousands(whole, '.')),
        other if decimals == 0 => format!("{} {other}", group_thousands(whole, ',')),
        other => format!("{}.{fraction} {other}", group_thousands(whole, ',')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_currency() {
        assert_eq!(format_money(Decimal::from(12800), "JPY"), "¥12,800");
        assert_eq!(format_money(Decimal::from(250), "USD"), "$250.00");
        assert_eq!(format_money(Decimal::from_str("12.8").unwrap(), "EUR"), "12,80 €");
        assert_eq!(format_money(Decimal::from(1234567), "JPY"), "¥1,234,567");
        assert_eq!(format_money(Decimal::from_str("999.5").unwrap(), "GBP"), "999.50 GBP");
    }
}
