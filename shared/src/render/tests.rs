use serde_json::json;

use crate::domain::{CustomerState, Event, Locale};
use crate::engine::{decide, Input};
use crate::testing::{at, order_placed, order_shipped, repo_flows};

use super::Renderer;

fn render(value: serde_json::Value, locale: Option<&str>) -> super::RenderedEmail {
    let flows = repo_flows();
    let renderer = Renderer::new(&flows).unwrap();
    let mut state = CustomerState::new(crate::domain::CustomerId::parse("c1").unwrap(), at("2026-11-20T00:00:00Z"));
    state.profile.email = Some(crate::domain::EmailAddress::parse("c1@example.jp").unwrap());
    state.profile.locale = locale.map(|l| Locale::parse(l).unwrap());
    let event = Event::parse(&value).unwrap();
    let decision = decide(&flows, Some(state), Input::Event(&event), at("2026-11-20T01:00:00Z"));
    let send = decision.sends().next().expect("one send").clone();
    renderer.render(&send).unwrap()
}

#[test]
fn order_confirmation_in_japanese() {
    let email = render(order_placed("e1", "c1", "A1001", "2026-11-20T10:15:00+09:00"), Some("ja-JP"));
    assert_eq!(email.locale, "ja");
    assert_eq!(email.subject, "ご注文ありがとうございます（注文番号 #A1001）");
    assert!(email.html.contains("<!doctype html>") || email.html.contains("<!DOCTYPE html>"), "full HTML document");
    assert!(email.text.contains("花子様"), "{}", email.text);
    assert!(email.text.contains("¥12,800"), "{}", email.text);
    assert!(email.text.contains("セラミックドリッパー × 1"), "{}", email.text);
    assert!(email.text.contains("アカウントを有効化"), "guests get the activation link: {}", email.text);
}

#[test]
fn locale_falls_back_to_store_default_and_english_exists() {
    assert_eq!(render(order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00"), Some("fr-FR")).locale, "ja");
    let mut v = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    v["customer"]["locale"] = json!("en-US");
    v["customer"]["has_account"] = json!(true);
    let email = render(v, None);
    assert_eq!(email.locale, "en");
    assert_eq!(email.subject, "Thanks for your order (#A1)");
    assert!(!email.text.contains("Activate"), "account holders get no activation link");
}

#[test]
fn shipping_confirmation_has_carrier_and_tracking() {
    let mut shipped = order_shipped("s1", "c1", "A1", "2026-11-21T10:00:00+09:00");
    shipped["customer"]["email"] = json!("c1@example.jp");
    let email = render(shipped, Some("ja"));
    assert!(email.subject.contains("発送しました"));
    assert!(email.text.contains("ヤマト運輸") && email.text.contains("1234-5678-9012"), "{}", email.text);
    assert!(email.html.contains("https:&#x2f;&#x2f;track.example.com&#x2f;1234-5678-9012") || email.html.contains("https://track.example.com/1234-5678-9012"), "{}", email.html);
    assert!(email.text.contains("https://track.example.com/1234-5678-9012"), "the text part lists the link: {}", email.text);
}

#[test]
fn hostile_names_are_escaped_and_headers_stay_one_line() {
    let mut v = order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00");
    v["customer"]["first_name"] = json!("<script>alert(1)</script>");
    v["order"]["number"] = json!("#1\r\nBcc: evil@example.com");
    let email = render(v, Some("ja"));
    assert!(!email.html.contains("<script>"), "HTML is escaped");
    assert!(email.html.contains("&lt;script&gt;"));
    assert!(!email.subject.contains('\n') && !email.subject.contains('\r'), "{:?}", email.subject);
}

#[test]
fn text_part_is_plain_readable_text() {
    let email = render(order_placed("e1", "c1", "A1001", "2026-11-20T10:15:00+09:00"), Some("ja-JP"));
    println!("{}", email.text);
    assert!(!email.text.contains('─') && !email.text.contains('│'), "no table borders: {}", email.text);
    assert!(!email.text.contains("\n\n\n"), "no runs of blank lines");
    assert!(email.text.starts_with("Aftercare Coffee Roasters"), "{}", email.text);
}
