//! `aftercare generate`: a realistic year of a store's events, for benchmarks and for trying
//! flows at scale. Deterministic for a given seed.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// How many customers.
    #[arg(long, default_value_t = 1000)]
    customers: u32,
    /// Random seed (same seed, same events).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First day of the events (RFC 3339).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    start: String,
    /// Customers join over the first 300/365 of this many days (default 365) and nothing
    /// after it is written; without it, later orders of the year's customers run on past it.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: Option<u32>,
    /// Leave out the generated email opens (use `simulate --engagement` to model them per email).
    #[arg(long)]
    without_opens: bool,
}

const PRODUCTS: &[(&str, &str, u32, &str, Option<u32>, bool)] = &[
    ("BEANS-HOUSE-200", "ハウスブレンド 200g", 1800, "beans", Some(30), false),
    ("BEANS-ETHIOPIA-200", "エチオピア イルガチェフェ 200g", 2400, "beans", Some(30), false),
    ("DRIPBAG-10", "ドリップバッグ 10袋", 1500, "beans", Some(14), false),
    ("DRIP-FILTER-100", "ペーパーフィルター 100枚", 600, "supplies", Some(60), false),
    ("DRIPPER-CERAMIC", "有田焼セラミックドリッパー", 3200, "equipment", None, true),
    ("KETTLE-GOOSENECK", "細口ドリップケトル", 6800, "equipment", None, true),
    ("GRINDER-HAND", "手挽きコーヒーミル", 8800, "equipment", None, true),
    ("MUG-STONE", "信楽焼ストーンマグ", 2800, "tableware", None, false),
    ("GIFT-SET", "ギフトセット", 7500, "gifts", None, false),
];

fn item(rng: &mut SmallRng) -> Value {
    let (sku, name, price, category, replenish, guide) = PRODUCTS[rng.random_range(0..PRODUCTS.len())];
    let mut v = json!({"sku": sku, "name": name, "quantity": rng.random_range(1..=2), "unit_price": price.to_string(), "category": category});
    if let Some(days) = replenish {
        v["replenish_after_days"] = json!(days);
    }
    if guide {
        v["guide_url"] = json!(format!("https://shop.example.com/guides/{}", sku.to_lowercase()));
    }
    v
}

pub fn run(args: GenerateArgs) -> ExitCode {
    let Ok(start) = DateTime::parse_from_rfc3339(&args.start).map(|t| t.with_timezone(&Utc)) else {
        eprintln!("error: --start: {:?} is not an RFC 3339 time", args.start);
        return ExitCode::from(2);
    };
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let mut events: Vec<(DateTime<Utc>, Value)> = Vec::new();
    let mut n = 0u64;
    let mut push = |at: DateTime<Utc>, kind: &str, customer: Value, extra: Value, events: &mut Vec<(DateTime<Utc>, Value)>| {
        n += 1;
        let mut v = json!({"id": format!("gen-{n}"), "type": kind, "occurred_at": at.to_rfc3339(), "customer": customer});
        if let (Some(map), Value::Object(more)) = (v.as_object_mut(), extra) {
            map.extend(more);
        }
        events.push((at, v));
    };
    for c in 0..args.customers {
        let id = format!("c{c:07}");
        let english = rng.random_bool(0.15);
        let profile = json!({
            "id": id, "email": format!("{id}@example.jp"), "first_name": if english { "Sam" } else { "花子" },
            "locale": if english { "en-US" } else { "ja-JP" }, "timezone": if english { "America/New_York" } else { "Asia/Tokyo" },
            "marketing_consent": rng.random_bool(0.6), "has_account": rng.random_bool(0.5),
            "birthday": format!("19{}-{:02}-{:02}", rng.random_range(60..99), rng.random_range(1..=12), rng.random_range(1..=28)),
        });
        let only_id = json!({"id": id});
        let joined = start + Duration::minutes(rng.random_range(0..(60 * 24 * i64::from(args.days.unwrap_or(365)) * 300 / 365).max(1)));
        if rng.random_bool(0.6) {
            push(joined, "customer_registered", profile.clone(), json!({}), &mut events);
        }
        if rng.random_bool(0.3) {
            let at = joined + Duration::hours(rng.random_range(1..72));
            push(at, "checkout_started", profile.clone(), json!({"checkout": {"id": format!("ck-{id}"), "currency": "JPY", "items": [item(&mut rng)]}}), &mut events);
        }
        let orders = [0, 1, 1, 1, 2, 2, 3, 4, 6][rng.random_range(0..9)];
        let mut at = joined + Duration::hours(rng.random_range(2..200));
        for o in 0..orders {
            let order_id = format!("{id}-o{o}");
            let items: Vec<Value> = (0..rng.random_range(1..=3)).map(|_| item(&mut rng)).collect();
            let total: u64 = items.iter().map(|i| i["unit_price"].as_str().unwrap_or("0").parse::<u64>().unwrap_or(0) * i["quantity"].as_u64().unwrap_or(1)).sum();
            let order = json!({"id": order_id, "total": total.to_string(), "currency": "JPY", "items": items});
            push(at, "order_placed", if o == 0 { profile.clone() } else { only_id.clone() }, json!({"order": order}), &mut events);
            if rng.random_bool(0.03) {
                push(at + Duration::minutes(30), "order_cancelled", only_id.clone(), json!({"order": {"id": order_id}}), &mut events);
            } else {
                let shipped = at + Duration::hours(rng.random_range(12..48));
                let eta = (shipped + Duration::days(2)).date_naive().to_string();
                push(shipped, "order_shipped", only_id.clone(), json!({"order": order, "shipment": {"carrier": "ヤマト運輸", "tracking_number": format!("t-{order_id}"), "estimated_delivery": eta}}), &mut events);
                let delivered = shipped + Duration::hours(rng.random_range(30..72));
                push(delivered, "order_delivered", only_id.clone(), json!({"order": order}), &mut events);
                if rng.random_bool(0.5) && !args.without_opens {
                    push(at + Duration::hours(rng.random_range(2..30)), "email_opened", only_id.clone(), json!({"email": {"flow": "thank_you"}}), &mut events);
                }
                if rng.random_bool(0.2) {
                    push(delivered + Duration::days(8), "review_submitted", only_id.clone(), json!({"review": {"order_id": order_id, "rating": rng.random_range(3..=5)}}), &mut events);
                }
            }
            at += Duration::days(rng.random_range(10..90));
        }
    }
    if let Some(days) = args.days {
        let end = start + Duration::days(i64::from(days));
        events.retain(|(at, _)| *at < end);
    }
    events.sort_by_key(|(at, _)| *at);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (_, event) in &events {
        if writeln!(out, "{event}").is_err() {
            return ExitCode::from(1);
        }
    }
    let _ = out.flush();
    eprintln!("{} events for {} customers", events.len(), args.customers);
    ExitCode::SUCCESS
}
