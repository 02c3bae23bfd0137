//! The `aftercare` binary as users run it: exit codes, messages, output format.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn aftercare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aftercare")).args(args).current_dir(repo()).output().expect("aftercare runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory for one test, removed when it goes out of scope, also when the test fails.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("aftercare-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn validate_accepts_the_shipped_flows() {
    let out = aftercare(&["validate", "--flows", "flows"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ok: 15 flows, 40 templates in 2 locales"), "{}", text(&out.stdout));
}

#[test]
fn validate_reports_every_broken_file_with_its_line() {
    let dir = temp_dir("broken");
    copy_dir(&repo().join("flows"), &dir);
    let edit = |file: &str, from: &str, to: &str| {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} lacks {from:?}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    };
    edit("thank_you.yaml", "order.id == customer.first_order_id", "order.id ==");
    edit("cross_sell.yaml", "send: cross_sell", "send: cross_sel");
    edit("birthday.yaml", "goto: on_birthday", "goto: on_birthdy");
    edit("catalog.yaml", "related_skus: [DRIPBAG-10]", "related_skus: [DRIPBAG-11]");
    let out = aftercare(&["validate", "--flows", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let errors = text(&out.stderr);
    for expected in ["thank_you.yaml:12: steps[1] (thank): send thank_you_first: when", "cross_sell.yaml:12: step \"offer\"", "templates/ja/cross_sel.mjml does not exist", "birthday.yaml:10:", "\"on_birthdy\"", "catalog.yaml:", "DRIPBAG-11", "4 problem(s)"] {
        assert!(errors.contains(expected), "missing {expected:?} in:\n{errors}");
    }
}

#[test]
fn simulate_prints_the_documented_line_format() {
    let out = aftercare(&["simulate", "--events", "events/simulate-order.jsonl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let first = stdout.lines().next().expect("at least one send");
    assert_eq!(
        first,
        r#"{"at":"2026-11-20T01:15:00Z","customer_id":"cust-1","flow":"order_confirmation","template":"order_confirmation","locale":"ja","category":"transactional","to":"hanako@example.jp","subject":"ご注文ありがとうございます（注文番号 #1001）","status":"sent"}"#
    );
    let times: Vec<String> = stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["at"].as_str().unwrap().to_owned()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "lines come in time order");
    assert!(!stdout.contains("\"skipped\""), "skips only with --show-skipped");
    let with_skips = text(&aftercare(&["simulate", "--events", "events/simulate-order.jsonl", "--show-skipped"]).stdout);
    assert!(with_skips.contains(r#""status":"skipped","reason":"no_consent""#), "{with_skips}");
}

#[test]
fn simulate_stops_with_exit_code_2_naming_the_line_and_field() {
    let dir = temp_dir("bad-line");
    let file = dir.join("events.jsonl");
    let good = std::fs::read_to_string(repo().join("events/simulate-order.jsonl")).unwrap();
    let first = good.lines().next().unwrap();
    std::fs::write(&file, format!("{first}\n\n{}\n", first.replace("evt-1001", "evt-9").replace("hanako@example.jp", "hanako-at-example"))).unwrap();
    let out = aftercare(&["simulate", "--events", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("line 3: customer.email"), "{}", text(&out.stderr));
    std::fs::write(&file, "{not json\n").unwrap();
    let out = aftercare(&["simulate", "--events", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("line 1: $: not valid JSON"), "{}", text(&out.stderr));
}

/// Customers simulated a group at a time print what one simulation of them all prints, in the
/// same order (ties at the same second included): with skips, with --until before the last
/// event, and up to a line that stops the run.
#[test]
fn simulate_prints_the_same_lines_however_many_customers_go_to_a_group() {
    let dir = temp_dir("groups");
    // A month of them: steps fall due at the very second of other customers' events.
    let generated = aftercare(&["generate", "--customers", "200", "--days", "30"]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    let store = dir.join("store.jsonl");
    std::fs::write(&store, &generated.stdout).unwrap();
    let simulate = |file: &Path, per_group: &str, extra: &[&str]| {
        let args: Vec<&str> = ["simulate", "--events", file.to_str().unwrap(), "--show-skipped", "--customers-per-group", per_group].into_iter().chain(extra.iter().copied()).collect();
        aftercare(&args)
    };
    for extra in [&[][..], &["--until", "2026-01-20T00:00:00Z"]] {
        let together = simulate(&store, "0", extra);
        assert!(together.status.success(), "{}", text(&together.stderr));
        let lines = text(&together.stdout).lines().count();
        assert!(lines > 1000, "{lines} lines");
        for per_group in ["1", "7", "1000"] {
            let grouped = simulate(&store, per_group, extra);
            assert!(grouped.status.success(), "{}", text(&grouped.stderr));
            assert!(grouped.stdout == together.stdout, "{per_group} to a group, {extra:?}: {} lines against {lines}", text(&grouped.stdout).lines().count());
        }
    }
    // The report counts the same too (its counters stay from group to group).
    let report = |per_group: &str| simulate(&store, per_group, &["--report", "--format", "json", "--from", "2026-01-01", "--to", "2026-03-31"]);
    let (together, grouped) = (report("0"), report("7"));
    assert!(together.status.success(), "{}", text(&together.stderr));
    assert!(text(&together.stdout).contains("\"sent\":"), "{}", text(&together.stdout));
    assert_eq!(text(&grouped.stdout), text(&together.stdout));
    // A customer never seen, without an email, in the middle of the month.
    let events = text(&generated.stdout);
    let middle: Vec<&str> = events.lines().collect();
    let at = serde_json::from_str::<serde_json::Value>(middle[middle.len() / 2]).unwrap()["occurred_at"].as_str().unwrap().to_owned();
    let unknown = serde_json::json!({"id": "no-email", "type": "order_placed", "occurred_at": at, "customer": {"id": "c-unknown"}, "order": {"id": "o-x", "items": [{"sku": "MUG-STONE", "quantity": 1}]}});
    let mut with_bad = middle.clone();
    let bad_line = with_bad.len() / 2 + 1;
    let unknown = unknown.to_string();
    with_bad.insert(bad_line - 1, &unknown);
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, with_bad.join("\n")).unwrap();
    let together = simulate(&bad, "0", &[]);
    assert_eq!(together.status.code(), Some(2));
    assert!(text(&together.stderr).contains(&format!("line {bad_line}: customer.email")), "{}", text(&together.stderr));
    let printed = text(&together.stdout).lines().count();
    assert!(printed > 100 && text(&together.stdout).lines().all(|l| l.split("\"at\":\"").nth(1).unwrap() <= at.as_str()), "the lines before it: {printed}");
    for per_group in ["1", "7"] {
        let grouped = simulate(&bad, per_group, &[]);
        assert_eq!((grouped.status.code(), text(&grouped.stderr)), (Some(2), text(&together.stderr)));
        assert!(grouped.stdout == together.stdout, "{per_group} to a group: {} lines against {printed}", text(&grouped.stdout).lines().count());
    }
}

/// A group's lines are parsed whole only when it runs, yet a bad line stops the run as when
/// every line is parsed first: the file's first bad line is named, and nothing is printed.
#[test]
fn simulate_in_groups_names_the_files_first_bad_line_and_prints_nothing_before_it() {
    let dir = temp_dir("first-bad-line");
    let registered = |id: &str, customer: &str, email: &str, at: &str| {
        serde_json::json!({"id": id, "type": "customer_registered", "occurred_at": at, "customer": {"id": customer, "email": email, "marketing_consent": true}}).to_string()
    };
    let c1 = registered("e1", "c1", "c1@example.jp", "2026-11-01T00:00:00Z");
    let c2 = registered("e2", "c2", "c2@example.jp", "2026-11-02T00:00:00Z");
    // Bad in a way only the whole envelope tells: its time and customer read fine.
    let c2_bad = registered("e3", "c2", "c2-at-example", "2026-11-03T00:00:00Z");
    let c1_bad = registered("e4", "c1", "c1-at-example", "2026-11-04T00:00:00Z");
    let (c1, c2, c2_bad, c1_bad) = (c1.as_bytes(), c2.as_bytes(), c2_bad.as_bytes(), c1_bad.as_bytes());
    let cases: [(&str, Vec<&[u8]>, &str); 4] = [
        // c1's group runs first and meets its bad line 4; line 3, in c2's group, is the first.
        ("found while running", vec![c1, c2, c2_bad, c1_bad], "line 3: customer.email"),
        // Line 4 cannot even be read for its time; line 2 before it can, and is bad.
        ("found while reading", vec![c1, c2_bad, c2, b"{not json"], "line 2: customer.email"),
        ("out of time order", vec![c1_bad, c2, c1], "line 1: customer.email"),
        ("not UTF-8", vec![c1, c2_bad, b"{\"id\": \"\xff\"}"], "line 2: customer.email"),
    ];
    for (case, lines, expected) in cases {
        let file = dir.join("events.jsonl");
        std::fs::write(&file, lines.join(&b"\n"[..])).unwrap();
        let together = aftercare(&["simulate", "--events", file.to_str().unwrap(), "--customers-per-group", "0"]);
        assert_eq!(together.status.code(), Some(2), "{case}");
        assert!(text(&together.stderr).contains(expected), "{case}: {}", text(&together.stderr));
        for per_group in ["1", "32"] {
            let grouped = aftercare(&["simulate", "--events", file.to_str().unwrap(), "--customers-per-group", per_group]);
            assert_eq!((grouped.status.code(), text(&grouped.stderr)), (Some(2), text(&together.stderr)), "{case}, {per_group} to a group");
            assert!(grouped.stdout.is_empty(), "{case}, {per_group} to a group: {}", text(&grouped.stdout));
        }
    }
}

/// What the quick reading of a line's time and customer cannot tell, the envelope's rules do:
/// a key given twice counts its last value, an escaped id is the same customer.
#[test]
fn simulate_in_groups_reads_repeated_keys_and_escapes_as_the_envelope_does() {
    let dir = temp_dir("repeated-keys");
    let order = |id: &str, customer_json: &str, at_json: &str| {
        format!(r#"{{"id":"{id}","type":"order_placed",{at_json},"customer":{customer_json},"order":{{"id":"o-{id}","items":[{{"sku":"MUG-STONE","quantity":1}}]}}}}"#)
    };
    let lines = [
        order("e1", r#"{"id":"c1","email":"c1@example.jp","marketing_consent":true}"#, r#""occurred_at":"2026-11-01T00:00:00Z""#),
        // Registered under its escaped id, then at the time it names last.
        order("e2", r#"{"id":"c2","email":"c2@example.jp"}"#, r#""occurred_at":"2026-11-01T00:00:00Z","occurred_at":"2026-11-03T00:00:00Z""#),
        order("e3", r#"{"id":"c1","email":"c1@example.jp"}"#, r#""occurred_at":"2026-11-02T00:00:00Z""#),
        order("e4", r#"{"id":"c9","id":"c2","email":"c2@example.jp"}"#, r#""occurred_at":"2026-11-02T12:00:00Z""#),
    ];
    let file = dir.join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let together = aftercare(&["simulate", "--events", file.to_str().unwrap(), "--show-skipped", "--customers-per-group", "0"]);
    assert!(together.status.success(), "{}", text(&together.stderr));
    let printed = text(&together.stdout);
    assert!(!printed.contains("c9") && printed.contains(r#""customer_id":"c1""#) && printed.contains(r#""customer_id":"c2""#), "{printed}");
    for per_group in ["1", "32"] {
        let grouped = aftercare(&["simulate", "--events", file.to_str().unwrap(), "--show-skipped", "--customers-per-group", per_group]);
        assert!(grouped.status.success(), "{}", text(&grouped.stderr));
        assert_eq!(text(&grouped.stdout), printed, "{per_group} to a group");
    }
}

#[test]
fn preview_writes_a_gallery_of_every_template_and_locale() {
    let dir = temp_dir("preview");
    let out = aftercare(&["preview", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(index.contains("40 emails"), "20 templates × ja, en");
    for (locale, name) in [("ja", "order_confirmation"), ("en", "cross_sell"), ("ja", "birthday")] {
        assert!(index.contains(&format!("id=\"{locale}-{name}\"")), "{locale}/{name}");
        let html = std::fs::read_to_string(dir.join(locale).join(format!("{name}.html"))).unwrap();
        assert!(html.contains("<!doctype html>") || html.contains("<!DOCTYPE html>"));
    }
    assert!(index.contains("Mobile 375px") && index.contains("Text part"));
    let one = temp_dir("preview-one");
    let out = aftercare(&["preview", "--template", "win_back", "--locale", "en", "--out", one.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(std::fs::read_to_string(one.join("index.html")).unwrap().contains("1 emails"));
    let bad = aftercare(&["preview", "--template", "nope", "--out", one.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn simulate_with_engagement_reports_funnels_and_retention() {
    let args = ["simulate", "--events", "events/simulate-journey.jsonl", "--until", "2027-03-01T00:00:00Z", "--engagement", "--report", "--from", "2026-11-01", "--to", "2026-12-31"];
    let json_args: Vec<&str> = args.iter().copied().chain(["--format", "json"]).collect();
    let out = aftercare(&json_args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--format json prints one JSON report instead of send lines");
    let flows = report["flows"].as_array().unwrap();
    let receipts = flows.iter().find(|f| f["flow"] == "order_confirmation").expect("receipts in the funnel");
    assert_eq!(receipts["sent"], 2, "two orders in the journey");
    assert!(receipts["delivered"].as_i64().unwrap() <= 2);
    assert_eq!(report["retention"]["orders"], 2);
    assert_eq!(report["retention"]["repeat_customers"], 1);
    assert_eq!(report["retention"]["months"].as_array().unwrap().len(), 2);
    // The same seed gives the same report; the table and HTML come from the same numbers.
    assert_eq!(aftercare(&json_args).stdout, out.stdout);
    let table = aftercare(&args);
    assert!(text(&table.stdout).contains("RETENTION") && text(&table.stdout).contains("order_confirmation"));
    let dir = temp_dir("report");
    let html_path = dir.join("report.html");
    let html_args: Vec<&str> = args.iter().copied().chain(["--format", "html", "--out", html_path.to_str().unwrap()]).collect();
    let with_file = aftercare(&html_args);
    assert!(with_file.status.success());
    assert!(text(&with_file.stdout).lines().all(|l| l.starts_with("{\"at\"")), "with --out the send lines print as usual");
    assert!(std::fs::read_to_string(&html_path).unwrap().contains("<svg"));
}

#[test]
fn report_explains_missing_data_and_bad_ranges() {
    let dir = temp_dir("report-missing");
    let out = aftercare(&["report", "--data", dir.join("nothing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("aftercare dev"), "{}", text(&out.stderr));
    let out = aftercare(&["report", "--from", "2026-12-01", "--to", "2026-11-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--from 2026-12-01 is after --to 2026-11-01"), "{}", text(&out.stderr));
    let out = aftercare(&["report", "--from", "2026-13-01"]);
    assert_eq!(out.status.code(), Some(2), "clap names the flag: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--from"));
}

#[test]
fn cost_at_a_stores_own_mix_runs_its_events_and_measures_feedback() {
    let dir = temp_dir("cost");
    let store = dir.join("store.jsonl");
    let generated = aftercare(&["generate", "--customers", "60", "--without-opens"]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    std::fs::write(&store, &generated.stdout).unwrap();
    let orders = text(&generated.stdout).lines().filter(|l| l.contains(r#""type":"order_placed""#)).count();
    assert!(orders > 0);

    let out = aftercare(&["cost", "--orders", "1000", "--events", store.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bill: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let usage = &bill["usage"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    // Scaled to 1,000 orders: the store's events divided by its orders.
    let lines = text(&generated.stdout).lines().count() as f64;
    assert!((f(&usage["storefront_events"]) - lines * 1000.0 / orders as f64).abs() < 1e-6, "{usage}");
    // Repeat buyers get no second welcome or win-back: fewer than the 12 of one lone order.
    assert!(f(&usage["ses_sends"]) > 1000.0 && f(&usage["ses_sends"]) < 12_000.0, "{usage}");
    // Every email's `Email Sent`, plus deliveries, opens…: more than one feedback event per email.
    assert!(f(&usage["feedback_invocations"]) > 1.5 * f(&usage["ses_sends"]), "{usage}");
    assert!((f(&bill["ses"]) - f(&usage["ses_sends"]) * 0.0001).abs() < 1e-9);

    let table = text(&aftercare(&["cost", "--events", store.to_str().unwrap()]).stdout);
    assert!(table.contains("1000 orders, at the mix of") && table.contains("emails per order") && table.contains("measured"), "{table}");
}

#[test]
fn cost_refuses_an_event_file_without_orders_or_with_a_bad_line() {
    let dir = temp_dir("cost-bad");
    let no_orders = dir.join("no-orders.jsonl");
    let registered = r#"{"id":"r1","type":"customer_registered","occurred_at":"2026-11-20T10:00:00+09:00","customer":{"id":"c1","email":"c1@example.jp"}}"#;
    std::fs::write(&no_orders, format!("{registered}\n")).unwrap();
    let out = aftercare(&["cost", "--events", no_orders.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("has no order_placed event"), "{}", text(&out.stderr));

    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, format!("{registered}\n{{\"id\":\"x\"}}\n")).unwrap();
    let out = aftercare(&["cost", "--events", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("line 2: "), "{}", text(&out.stderr));
}
