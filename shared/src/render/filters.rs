//! Template filters: `{{ order.total | money(order.currency) }}`.

use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;

pub(super) fn register(env: &mut minijinja::Environment<'static>) {
    env.add_filter("local_date", |date: String, locale: Option<String>| -> Result<String, minijinja::Error> {
        let parsed = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
            .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("local_date: {date:?} is not YYYY-MM-DD")))?;
        Ok(format_date(parsed, locale.as_deref().unwrap_or("ja")))
    });
    env.add_filter("money", |amount: minijinja::Value, currency: Option<String>| -> Result<String, minijinja::Error> {
        let text = amount.to_string();
        let value = Decimal::from_str(&text).map_err(|_| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("money: {text:?} is not an amount"))
        })?;
        Ok(format_money(value, currency.as_deref().unwrap_or("JPY")))
    });
}

/// `2026年11月23日（月）` in Japanese, `Monday, November 23, 2026` in English.
pub fn format_date(date: chrono::NaiveDate, locale: &str) -> String {
    use chrono::Datelike;
    if locale.starts_with("ja") {
        let weekday = ["月", "火", "水", "木", "金", "土", "日"][date.weekday().num_days_from_monday() as usize];
        format!("{}年{}月{}日（{weekday}）", date.year(), date.month(), date.day())
    } else {
        date.format("%A, %B %-d, %Y").to_string()
    }
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

    #[test]
    fn formats_dates_by_locale() {
        let d = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(format_date(d, "ja"), "2026年11月23日（月）");
        assert_eq!(format_date(d, "en"), "Monday, November 23, 2026");
    }
}
