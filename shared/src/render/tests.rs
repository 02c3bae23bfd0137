use serde_json::json;

use crate::domain::{CustomerState, Event, Locale};
use crate::engine::{decide, Input};
use crate::testing::{at, order_placed, order_shipped, repo_flows};

use super::Renderer;

fn render(value: serde_json::Value, locale: Option<&str>) -> super::RenderedEmail {
    let flows = repo_flows();
    let renderer = Renderer::new(&flows).unwrap();
    let mut state = CustomerState::new(crate::domain::CustomerId::parse("c1").unwrap(), at("2026-11-20T00:00:00Z"));
    state.profile_mut().email = Some(crate::domain::EmailAddress::parse("c1@example.jp").unwrap());
    state.profile_mut().locale = locale.map(|l| Locale::parse(l).unwrap());
    let event = Event::parse(&value).unwrap();
    let decision = decide(&flows, Some(state), Input::Event(&event), at("2026-11-20T01:00:00Z"));
    let send = decision.sends().next().expect("one send").clone();
    renderer.render(&send, super::Links { unsubscribe: None, activation: Some("https://shop.example.com/account/activate?token=T") }).unwrap()
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
    assert!(email.text.starts_with("[Aftercare Coffee Roasters]"), "logo alt text first, no preheader: {}", email.text);
    assert!(email.html.contains("ご注文内容と合計 ¥12,800 をご確認ください。"), "the preheader is in the HTML");
}

/// Every template in every locale, rendered with the sample data; the text part is compared
/// with `snapshots/<locale>/<template>.txt` (UPDATE_SNAPSHOTS=1 rewrites them).
#[test]
fn every_template_renders_in_every_locale_and_matches_its_snapshot() {
    let flows = repo_flows();
    let renderer = Renderer::new(&flows).unwrap();
    let now = at("2026-11-20T01:15:00Z");
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/render/snapshots");
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok();
    let mut problems = Vec::new();
    let names = super::sample::template_names(&flows);
    assert_eq!(names.len(), 20, "{names:?}");
    for locale in ["ja", "en"] {
        for name in &names {
            let send = super::sample::sample_send(&flows, name, locale, now).unwrap_or_else(|| panic!("no flow sends {name}"));
            let unsubscribe = super::sample::is_marketing(&flows, name).then_some("https://api.example.com/u/TOKEN");
            let links = super::Links { unsubscribe, activation: Some("https://shop.example.com/account/activate?token=SIGNED") };
            let email = renderer.render(&send, links).unwrap_or_else(|e| panic!("{locale}/{name}: {e}"));
            assert_eq!(email.locale, locale, "{name}");
            assert!(!email.subject.is_empty() && !email.subject.contains("{{"), "{locale}/{name}: subject {:?}", email.subject);
            assert!(!email.html.contains("{{") && !email.text.contains("{{"), "{locale}/{name}: unrendered variable");
            if unsubscribe.is_some() {
                assert!(email.html.contains("https://api.example.com/u/TOKEN"), "{locale}/{name}: marketing needs the opt-out link");
            }
            let path = dir.join(locale).join(format!("{name}.txt"));
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &email.text).unwrap();
            } else {
                match std::fs::read_to_string(&path) {
                    Ok(expected) if expected == email.text => {}
                    Ok(expected) => problems.push(format!("{locale}/{name}: text part changed\n--- snapshot\n{expected}\n--- now\n{}", email.text)),
                    Err(_) => problems.push(format!("{locale}/{name}: no snapshot at {} (run with UPDATE_SNAPSHOTS=1)", path.display())),
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What the Lambdas use: the same emails, byte for byte, with templates compiled on first use.
#[test]
fn compiling_on_first_use_renders_every_email_exactly_as_compiling_at_start() {
    let flows = repo_flows();
    let checked = Renderer::new(&flows).unwrap();
    let on_first_use = Renderer::compiling_on_first_use(&flows).unwrap();
    let now = at("2026-11-20T01:15:00Z");
    for locale in ["ja", "en"] {
        for name in super::sample::template_names(&flows) {
            let send = super::sample::sample_send(&flows, &name, locale, now).unwrap();
            let links = super::Links { unsubscribe: Some("https://api.example.com/u/TOKEN"), activation: None };
            assert_eq!(on_first_use.render(&send, links).unwrap(), checked.render(&send, links).unwrap(), "{locale}/{name}");
            assert_eq!(on_first_use.render_subject(&send).unwrap(), checked.render_subject(&send).unwrap(), "{locale}/{name}");
        }
    }
}

/// The Lambdas' renderer makes its minijinja environment at the first render, once; the one
/// `aftercare validate` and `dev` use has it, every template compiled, from the start.
#[test]
fn a_renderer_compiling_on_first_use_makes_its_environment_at_the_first_render_only() {
    let flows = repo_flows();
    let lazy = Renderer::compiling_on_first_use(&flows).unwrap();
    assert!(lazy.env.get().is_none(), "no environment before a render");
    let send = super::sample::sample_send(&flows, "order_confirmation", "ja", at("2026-11-20T01:15:00Z")).unwrap();
    lazy.render_subject(&send).unwrap();
    let made = lazy.env.get().map(|env| env as *const _).expect("made by the first render");
    lazy.render(&send, super::Links::default()).unwrap();
    assert_eq!(lazy.env.get().map(|env| env as *const _), Some(made), "and kept");
    assert!(Renderer::new(&flows).unwrap().env.get().is_some());
}

/// A template that does not compile: refused at start by `new`, and named (not "unknown")
/// when compiled on first use.
#[test]
fn a_broken_template_is_named_whether_compiled_at_start_or_on_first_use() {
    let files = |body: &str| {
        vec![
            ("store.yaml".to_owned(), std::fs::read_to_string(crate::testing::flows_dir().join("store.yaml")).unwrap()),
            ("hello.yaml".to_owned(), "id: hello\ncategory: transactional\ntrigger: {event: order_placed}\nkey: order\nsteps:\n  - {id: hi, send: hello}\n".to_owned()),
            ("templates/ja/hello.mjml".to_owned(), format!("---\nsubject: こんにちは\n---\n<mjml><mj-body>{body}</mj-body></mjml>")),
        ]
    };
    let broken = crate::flow::FlowSet::from_files(files("{% if %}")).unwrap();
    let at_start = Renderer::new(&broken).err().expect("refused at start").to_string();
    assert!(at_start.contains("hello") && at_start.contains("ja"), "{at_start}");

    let lazy = Renderer::compiling_on_first_use(&broken).expect("nothing is compiled yet");
    let event = Event::parse(&order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00")).unwrap();
    let decision = decide(&broken, None, Input::Event(&event), at("2026-11-20T01:00:00Z"));
    let send = decision.sends().next().expect("one send").clone();
    let error = lazy.render(&send, super::Links::default()).unwrap_err();
    assert!(matches!(error, super::RenderError::Template { ref template, ref locale, .. } if template == "hello" && locale == "ja"), "{error}");
    assert!(error.to_string().contains("mjml"), "names the part: {error}");
}

/// The simulator's subject-only render builds only the variables a subject reads; it must give
/// the subject the full render gives, for every template and for a subject that reads them all.
#[test]
fn a_subject_rendered_alone_is_the_subject_of_the_whole_email() {
    let flows = repo_flows();
    let renderer = Renderer::new(&flows).unwrap();
    let now = at("2026-11-20T01:15:00Z");
    let links = super::Links { unsubscribe: Some("https://api.example.com/u/TOKEN"), activation: Some("https://shop.example.com/a?t=T") };
    for locale in ["ja", "en"] {
        for name in super::sample::template_names(&flows) {
            let send = super::sample::sample_send(&flows, &name, locale, now).unwrap();
            assert_eq!(renderer.render_subject(&send).unwrap().subject, renderer.render(&send, links).unwrap().subject, "{locale}/{name}");
        }
    }

    let everything = "{{ order.number }} {{ shipment.carrier }} {{ checkout.id }} {{ review is defined }} {{ properties is defined }} \
                      {{ event.type }} {{ recommendations | map(attribute='sku') | join(',') }} {{ item.sku }} {{ customer.first_name }} \
                      {{ customer.orders_count }} {{ variant }} {{ locale }} {{ store.name }} {{ flow }} {{ step }} {{ category }} {{ preheader }}";
    let mut files: Vec<(String, String)> = ["store.yaml", "catalog.yaml"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read_to_string(crate::testing::flows_dir().join(f)).unwrap()))
        .collect();
    files.push(("hello.yaml".into(), "id: hello\ncategory: transactional\ntrigger: {event: order_placed}\nkey: order\nsteps:\n  - {id: hi, send: hello}\n".into()));
    files.push(("templates/ja/hello.mjml".into(), format!("---\nsubject: \"{everything}\"\n---\n<mjml><mj-body></mj-body></mjml>")));
    files.push(("hello2.yaml".into(), "id: hello2\ncategory: transactional\ntrigger: {event: order_placed}\nkey: order\nsteps:\n  - {id: hi, send: hello2}\n".into()));
    files.push(("templates/ja/hello2.mjml".into(), "---\nsubject: \"{% include 'ja/_name.mjml' %}さん\"\n---\n<mjml><mj-body></mj-body></mjml>".into()));
    files.push(("templates/ja/_name.mjml".into(), "{{ customer.first_name }}".into()));
    // No template syntax, over lines: the subject-only render takes it as its own text.
    files.push(("hello3.yaml".into(), "id: hello3\ncategory: transactional\ntrigger: {event: order_placed}\nkey: order\nsteps:\n  - {id: hi, send: hello3}\n".into()));
    files.push(("templates/ja/hello3.mjml".into(), "---\nsubject: |\n  Thank you,\n    dear reader  \n\n---\n<mjml><mj-body></mj-body></mjml>".into()));
    let flows = crate::flow::FlowSet::from_files(files).unwrap();
    let renderer = Renderer::new(&flows).unwrap();
    // A subject that includes another template reads what that one reads.
    let send = super::sample::sample_send(&flows, "hello2", "ja", now).unwrap();
    assert_eq!(renderer.render_subject(&send).unwrap().subject, "花子さん");
    let plain = super::sample::sample_send(&flows, "hello3", "ja", now).unwrap();
    assert_eq!(renderer.render_subject(&plain).unwrap().subject, "Thank you, dear reader");
    assert_eq!(renderer.render(&plain, links).unwrap().subject, "Thank you, dear reader");
    let mut send = super::sample::sample_send(&flows, "hello", "ja", now).unwrap();
    send.enrollment.variant = Some("b".into());
    let alone = renderer.render_subject(&send).unwrap().subject;
    assert_eq!(alone, renderer.render(&send, links).unwrap().subject);
    assert_eq!(alone, "#1001 ヤマト運輸 CK-1 True False order_placed GRINDER-HAND,KETTLE-GOOSENECK,MUG-STONE BEANS-ETHIOPIA-200 花子 5 b ja Aftercare Coffee Roasters hello hi transactional");
}

/// A template that does not read `event` gets each part serialized alone: the same values as
/// the parts of the serialized event, and undefined where the event has none.
#[test]
fn event_parts_alone_equal_the_parts_of_the_whole_event() {
    let flows = repo_flows();
    let renderer = Renderer::new(&flows).unwrap();
    let parts = ["order", "shipment", "checkout", "review", "properties"];
    let mut shipped = order_shipped("e2", "c1", "A1", "2026-11-21T10:00:00+09:00");
    shipped["properties"] = json!({"gift": true, "note": "はい"});
    for value in [order_placed("e1", "c1", "A1", "2026-11-20T10:15:00+09:00"), shipped] {
        let event = Event::parse(&value).unwrap();
        let mut state = CustomerState::new(crate::domain::CustomerId::parse("c1").unwrap(), at("2026-11-20T00:00:00Z"));
        state.profile_mut().email = Some(crate::domain::EmailAddress::parse("c1@example.jp").unwrap());
        let decision = decide(&flows, Some(state), Input::Event(&event), at("2026-11-22T01:00:00Z"));
        let send = decision.sends().next().expect("one send");
        let alone = renderer.context(send, "ja", super::Links::default(), "", &crate::flow::Reads::everything(), |name| parts.contains(&name));
        let whole = renderer.context(send, "ja", super::Links::default(), "", &crate::flow::Reads::everything(), |name| name == "event");
        let event_value = whole.get_attr("event").unwrap();
        for part in parts {
            let (got, want) = (alone.get_attr(part).unwrap(), event_value.get_attr(part).unwrap());
            assert_eq!(got, want, "{part} of {}", event.event_type.as_str());
            assert_eq!(got.is_undefined(), want.is_undefined(), "{part} of {}", event.event_type.as_str());
        }
        assert!(!alone.get_attr("order").unwrap().is_undefined());
        assert_eq!(alone.get_attr("shipment").unwrap().is_undefined(), event.shipment.is_none());
        assert_eq!(alone.get_attr("properties").unwrap().is_undefined(), event.properties.is_empty());
    }
}

proptest::proptest! {
    /// The one-line fast path gives what splitting, trimming and joining gives.
    #[test]
    fn one_line_joins_the_trimmed_non_empty_lines(text in "[ a\\t\\r\\nあ]{0,12}") {
        let slow = text.split(['\r', '\n']).map(str::trim).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ");
        proptest::prop_assert_eq!(super::one_line(text), slow);
    }
}

/// Every default subject with template syntax is in the native evaluator's subset, so the
/// subject-only render (the simulator's, the ingest bench's) runs no minijinja for it; and it
/// renders what minijinja renders for the whole email (the test above).
#[test]
fn every_default_subject_with_expressions_renders_natively() {
    let flows = repo_flows();
    let renderer = Renderer::new(&flows).unwrap();
    let now = at("2026-11-20T01:15:00Z");
    let mut native = 0;
    for locale in ["ja", "en"] {
        for name in super::sample::template_names(&flows) {
            let template = renderer.template(&name, locale, "subject").unwrap();
            if !template.source().contains('{') {
                continue;
            }
            let reads = renderer.subject_reads(&template).expect("a default subject is self-contained");
            let compiled = reads.native.as_ref().unwrap_or_else(|| panic!("{locale}/{name}: {:?} is not native", template.source()));
            let send = super::sample::sample_send(&flows, &name, locale, now).unwrap();
            let variables = super::SubjectVariables { renderer: &renderer, send: &send, locale };
            let subject = compiled.render(&variables, &reads.reads).unwrap_or_else(|| panic!("{locale}/{name} left to minijinja"));
            assert!(!subject.contains("{{"), "{subject}");
            native += 1;
        }
    }
    assert!(native >= 8, "only {native} subjects with expressions");
}

/// A send of `template` whose order number, item name or first name may be missing.
fn varied_send(flows: &crate::flow::FlowSet, template: &str, number: bool, item_name: bool, first_name: bool) -> crate::engine::SendIntent {
    let mut send = super::sample::sample_send(flows, template, "ja", at("2026-11-20T01:15:00Z")).unwrap();
    let trigger = std::sync::Arc::make_mut(&mut send.enrollment.trigger);
    if let (false, Some(order)) = (number, trigger.order.as_mut()) {
        order.number = None;
    }
    if let (false, Some(item)) = (item_name, send.enrollment.item.as_mut()) {
        std::sync::Arc::make_mut(item).as_object_mut().unwrap().remove("name");
    }
    if !first_name {
        std::sync::Arc::make_mut(&mut send.profile).first_name = None;
    }
    send
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// A subject the native evaluator renders is what minijinja renders from the full context,
    /// character for character; what it leaves (a map, a list, an error) minijinja still renders.
    #[test]
    fn a_native_subject_renders_as_minijinja_renders_it(
        pieces in proptest::collection::vec((0usize..6, 0usize..26), 1..4),
        template in 0usize..4,
        number: bool, item_name: bool, first_name: bool,
    ) {
        const TEXT: [&str; 6] = ["", "ご注文 ", "(", " } ", "{ x ", "Thanks "];
        const PRINT: [&str; 26] = [
            "order.number or order.id", "order.number", "order.id", "order.total", "order.missing", "item.name or item.sku",
            "item.name", "item.quantity", "customer.first_name | default('お客', true)", "customer.first_name | default('x')",
            "customer.orders_count", "customer.has_account", "customer.last_name", "shipment.carrier", "shipment.tracking_number",
            "none", "1 + 2", "'文字'", "order.items | length", "customer.email", "review.rating", "properties.gift", "event.type",
            "order", "order.items", "item.missing.deeper",
        ];
        let source: String = pieces.iter().map(|&(text, print)| format!("{}{{{{ {} }}}}", TEXT[text], PRINT[print])).collect();
        let flows = repo_flows();
        let renderer = Renderer::new(&flows).unwrap();
        let name = ["order_confirmation", "shipping_confirmation", "replenishment_reminder", "review_request"][template];
        let send = varied_send(&flows, name, number, item_name, first_name);
        let env = super::environment();
        let compiled = env.template_from_str(&source).unwrap();
        let context = renderer.context(&send, "ja", super::Links::default(), "", &crate::flow::Reads::everything(), |_| true);
        let by_minijinja = compiled.render(context).map_err(|e| e.to_string());
        let native = crate::flow::NativeTemplate::compile(&source).expect("text and subset expressions compile");
        let reads = crate::flow::Reads::of_paths(&compiled.undeclared_variables(true));
        let variables = super::SubjectVariables { renderer: &renderer, send: &send, locale: "ja" };
        if let Some(rendered) = native.render(&variables, &reads) {
            proptest::prop_assert_eq!(Ok(rendered), by_minijinja, "{}", source);
        }
    }
}

/// `customer` as templates see it, field by field as the native subjects read it, is the map
/// the templates were written against.
#[test]
fn customer_for_templates_has_its_six_fields() {
    let mut profile = crate::domain::Profile::new(crate::domain::CustomerId::parse("c1").unwrap(), at("2026-11-20T00:00:00Z"));
    let bare = minijinja::context! { id => "c1", email => None::<&str>, first_name => None::<&str>, last_name => None::<&str>, has_account => false, orders_count => 0 };
    assert_eq!(super::customer_value(&profile), bare);
    profile.email = Some(crate::domain::EmailAddress::parse("c1@example.jp").unwrap());
    profile.first_name = Some("花子".into());
    profile.last_name = Some("山田".into());
    profile.has_account = Some(true);
    profile.orders_count = 3;
    let full = minijinja::context! { id => "c1", email => "c1@example.jp", first_name => "花子", last_name => "山田", has_account => true, orders_count => 3 };
    assert_eq!(super::customer_value(&profile), full);
    for name in ["id", "email", "first_name", "last_name", "has_account", "orders_count", "birthday"] {
        assert_eq!(super::customer_field(&profile, name), full.get_attr(name).unwrap(), "{name}");
    }
}
