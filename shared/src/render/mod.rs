//! Templates to email: minijinja fills the MJML (HTML auto-escaped), mrml renders it to HTML,
//! html2text derives the text part. The subject and preheader come from the template's front matter.

mod filters;
pub mod sample;

pub use filters::format_money;

use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::domain::{Name, Profile};
use crate::engine::SendIntent;
use crate::flow::{FlowSet, TemplateSources};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {template} ({locale}): {message}")]
    Template { template: Name, locale: Name, message: String },
    #[error("template {0:?} does not exist in any locale")]
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenderedEmail {
    pub locale: Name,
    pub subject: String,
    pub preheader: String,
    pub html: String,
    pub text: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    subject: String,
    #[serde(default)]
    preheader: String,
}

/// Signed links a message may carry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Links<'a> {
    pub unsubscribe: Option<&'a str>,
    pub activation: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compile {
    Now,
    OnFirstUse,
}

pub struct Renderer {
    /// Made when first needed for a renderer compiling on first use: most feedback and many
    /// ingest invocations render nothing, and making it (minijinja's builtins, ours, the
    /// loader) was a sixth of a cold start's instructions (BENCHMARKS.md, item 56).
    env: OnceLock<minijinja::Environment<'static>>,
    /// The flow set's templates, shared: which exist in which locale, and what an environment
    /// made on first use loads them from.
    templates: Arc<TemplateSources>,
    default_locale: Name,
    store: minijinja::Value,
    catalog: crate::flow::SharedCatalog,
    /// The top-level variables each subject reads, by template name (`None`: all of them, for a
    /// subject that includes or imports another template): found once per template, because
    /// `undeclared_variables` parses the source again.
    subject_reads: std::sync::Mutex<rustc_hash::FxHashMap<String, Option<Arc<SubjectReads>>>>,
}

/// What a subject reads: its top-level names (a few, so a list searched in order: a hashed set
/// cost more than the search, a dozen lookups per subject), and which fields of `order`.
struct SubjectReads {
    names: Vec<String>,
    reads: crate::flow::Reads,
    /// The subject for the native evaluator, when it is in its subset.
    native: Option<crate::flow::NativeTemplate>,
}

fn split_front_matter(source: &str) -> Option<(&str, &str)> {
    let rest = source.strip_prefix("---\n").or_else(|| source.strip_prefix("---\r\n"))?;
    let end = rest.find("\n---")?;
    let body = rest[end + 4..].trim_start_matches(['\r', '\n']);
    Some((&rest[..end], body))
}

/// A template file's MJML body and, for an email (not a layout or block, `_name`), its front
/// matter, which every email must have.
fn read_template<'a>(name: &str, source: &'a str) -> Result<(&'a str, Option<FrontMatter>), String> {
    let (front, body) = match split_front_matter(source) {
        Some((front, body)) => (Some(front), body),
        None => (None, source),
    };
    if name.starts_with('_') {
        return Ok((body, None));
    }
    let front = front.ok_or_else(|| "needs front matter with a subject (---\nsubject: …\n---)".to_owned())?;
    let front: FrontMatter = serde_yaml::from_str(front).map_err(|e| format!("front matter: {e}"))?;
    Ok((body, Some(front)))
}

/// The template parts minijinja knows a file by: `mjml`, and an email's `subject` and `preheader`.
fn template_parts(name: &str, source: &str) -> Result<Vec<(&'static str, String)>, String> {
    let (body, front) = read_template(name, source)?;
    let mut parts = vec![("mjml", body.to_owned())];
    if let Some(front) = front {
        parts.push(("subject", front.subject));
        parts.push(("preheader", front.preheader));
    }
    Ok(parts)
}

/// Headers must be one line: no CR/LF from customer data can reach them.
fn one_line(text: String) -> String {
    // Most subjects are one line already: kept as they are, without a copy.
    // Bytes, not chars: subjects are mostly multi-byte text, and `\r`/`\n` are single bytes.
    if !text.bytes().any(|b| b == b'\r' || b == b'\n') {
        let trimmed = text.trim();
        return if trimmed.len() == text.len() { text } else { trimmed.to_owned() };
    }
    text.split(['\r', '\n']).map(str::trim).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The text part, from the same HTML: layout tables flattened (no borders), links as footnotes,
/// trailing spaces and runs of blank lines removed. Lines are not wrapped: a wrapped link
/// (the unsubscribe link above all) would break, and mail clients wrap text themselves.
fn text_part(html: &str) -> Result<String, html2text::Error> {
    let raw = html2text::config::plain().raw_mode(true).link_footnotes(true).string_from_read(html.as_bytes(), 4000)?;
    let mut text = String::with_capacity(raw.len());
    let mut blank_run = 0;
    for line in raw.lines().map(str::trim_end) {
        blank_run = if line.is_empty() { blank_run + 1 } else { 0 };
        if blank_run <= 1 {
            text.push_str(line);
            text.push('\n');
        }
    }
    Ok(text.trim().to_owned() + "\n")
}

/// minijinja set up for emails: HTML escaping for MJML parts, our formatter and filters.
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".mjml") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    // Escape what HTML needs (& < > " '), but leave `/` alone so links stay readable.
    env.set_formatter(|out, state, value| {
        if state.auto_escape() == minijinja::AutoEscape::Html && value.as_str().is_some() && !value.is_safe() {
            let text = value.as_str().unwrap_or_default();
            let mut escaped = String::with_capacity(text.len());
            for c in text.chars() {
                match c {
                    '&' => escaped.push_str("&amp;"),
                    '<' => escaped.push_str("&lt;"),
                    '>' => escaped.push_str("&gt;"),
                    '"' => escaped.push_str("&quot;"),
                    '\'' => escaped.push_str("&#x27;"),
                    c => escaped.push(c),
                }
            }
            out.write_str(&escaped).map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    filters::register(&mut env);
    env
}

/// Each part of a template read when first asked for (`ja/order_confirmation.subject`): the
/// front matter with the part, not all at start, as serde_yaml over every template was most
/// of making a renderer (BENCHMARKS.md).
fn loader(templates: Arc<TemplateSources>) -> impl Fn(&str) -> Result<Option<String>, minijinja::Error> + Send + Sync + 'static {
    move |full_name| {
        let Some((locale, file)) = full_name.split_once('/') else { return Ok(None) };
        let Some((name, part)) = file.rsplit_once('.') else { return Ok(None) };
        let Some(source) = templates.get(locale).and_then(|t| t.get(name)) else { return Ok(None) };
        let parts = template_parts(name, source).map_err(|message| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))?;
        Ok(parts.into_iter().find(|(p, _)| *p == part).map(|(_, text)| text))
    }
}

impl Renderer {
    /// Compiles every template of every locale; any syntax error is reported here, at start.
    pub fn new(flows: &FlowSet) -> Result<Renderer, RenderError> {
        Renderer::build(flows, Compile::Now)
    }

    /// Compiles each template the first time it is used (then keeps it). For the Lambdas: their
    /// flows are compiled into the binary and checked whole by the tests, and a step renders
    /// one email of the dozens there are, so compiling all at cold start (≈ 1 ms) is waste.
    pub fn compiling_on_first_use(flows: &FlowSet) -> Result<Renderer, RenderError> {
        Renderer::build(flows, Compile::OnFirstUse)
    }

    fn build(flows: &FlowSet, compile: Compile) -> Result<Renderer, RenderError> {
        let env = match compile {
            Compile::Now => {
                let mut env = environment();
                for (locale, templates) in flows.templates.iter() {
                    for (name, source) in templates {
                        let err = |message: String| RenderError::Template { template: Name::new(name), locale: Name::new(locale), message };
                        for (part, text) in template_parts(name, source).map_err(err)? {
                            env.add_template_owned(format!("{locale}/{name}.{part}"), text).map_err(|e| {
                                err(match part {
                                    "mjml" => e.to_string(),
                                    part => format!("{part}: {e}"),
                                })
                            })?;
                        }
                    }
                }
                OnceLock::from(env)
            }
            Compile::OnFirstUse => OnceLock::new(),
        };
        let store = &flows.store;
        Ok(Renderer {
            catalog: flows.catalog.clone(),
            subject_reads: Default::default(),
            env,
            templates: flows.templates.clone(),
            default_locale: Name::new(&store.default_locale),
            store: minijinja::context! {
                name => store.name, base_url => store.base_url, support_email => store.support_email,
                postal_address => store.postal_address, sender_name => store.sender.name,
                logo_url => store.logo_url, brand_color => store.brand_color,
            },
        })
    }

    /// The customer's language if the store has this template in it, else the store default.
    pub fn choose_locale(&self, template: &str, profile: &Profile) -> Name {
        let wanted = profile.locale.as_ref().map(|l| l.language());
        match wanted {
            // Names starting with `_` are layouts and blocks, not emails.
            Some(lang) if !template.starts_with('_') && self.templates.get(lang.as_str()).is_some_and(|names| names.contains_key(template)) => lang,
            _ => self.default_locale.clone(),
        }
    }

    /// `links.unsubscribe` is given for marketing email: the footer's opt-out link;
    /// `links.activation` for guests: the account-activation magic link.
    pub fn render(&self, send: &SendIntent, links: Links<'_>) -> Result<RenderedEmail, RenderError> {
        let locale = self.choose_locale(&send.template, &send.profile);
        let err = |message: String| RenderError::Template { template: send.template.clone(), locale: locale.clone(), message };
        let context = self.context(send, &locale, links, "", &crate::flow::Reads::everything(), |_| true);
        let render = |suffix: &str| -> Result<String, RenderError> {
            self.template(&send.template, &locale, suffix)?.render(&context).map_err(|e| err(format!("{suffix}: {e:#}")))
        };
        let subject = one_line(render("subject")?);
        let preheader = one_line(render("preheader")?);
        let context = self.context(send, &locale, links, &preheader, &crate::flow::Reads::everything(), |_| true);
        let render = |suffix: &str| -> Result<String, RenderError> {
            self.template(&send.template, &locale, suffix)?.render(&context).map_err(|e| err(format!("{suffix}: {e:#}")))
        };
        let mjml = render("mjml")?;
        let parsed = mrml::parse(&mjml).map_err(|e| err(format!("MJML: {e}")))?;
        let html = parsed.element.render(&mrml::prelude::render::RenderOptions::default()).map_err(|e| err(format!("MJML: {e}")))?;
        let text = text_part(&html).map_err(|e| err(format!("text part: {e}")))?;
        // The preheader is a hidden div in the HTML; it has no place in the text part.
        let text = match text.strip_prefix(preheader.as_str()) {
            Some(rest) if !preheader.is_empty() => rest.trim_start().to_owned(),
            _ => text,
        };
        Ok(RenderedEmail { locale, subject, preheader, html, text })
    }

    /// Subject only, in the locale `render` would choose: what the simulator prints, at a
    /// fraction of the cost of MJML, HTML and the text part.
    pub fn render_subject(&self, send: &SendIntent) -> Result<RenderedEmail, RenderError> {
        let locale = self.choose_locale(&send.template, &send.profile);
        let template = self.template(&send.template, &locale, "subject")?;
        // Without a `{` there is no tag, expression or comment: the subject is its own text
        // (most default subjects), so no context is built and nothing runs.
        if !template.source().contains('{') {
            return Ok(RenderedEmail { locale, subject: one_line(template.source().to_owned()), preheader: String::new(), html: String::new(), text: String::new() });
        }
        let reads = self.subject_reads(&template);
        if let Some(reads) = &reads {
            let variables = SubjectVariables { renderer: self, send, locale: &locale };
            if let Some(subject) = reads.native.as_ref().and_then(|native| native.render(&variables, &reads.reads)) {
                return Ok(RenderedEmail { locale, subject: one_line(subject), preheader: String::new(), html: String::new(), text: String::new() });
            }
        }
        let everything = crate::flow::Reads::everything();
        let order_reads = reads.as_ref().map_or(&everything, |r| &r.reads);
        let context = self.context(send, &locale, Links::default(), "", order_reads, |name| reads.as_ref().is_none_or(|reads| reads.names.iter().any(|r| r == name)));
        let subject = template
            .render(&context)
            .map_err(|e| RenderError::Template { template: send.template.clone(), locale: locale.clone(), message: format!("subject: {e:#}") })?;
        Ok(RenderedEmail { locale, subject: one_line(subject), preheader: String::new(), html: String::new(), text: String::new() })
    }

    fn subject_reads(&self, template: &minijinja::Template<'_, '_>) -> Option<Arc<SubjectReads>> {
        let mut known = self.subject_reads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reads) = known.get(template.name()) {
            return reads.clone();
        }
        // What another template reads is not among this one's undeclared variables.
        let source = template.source();
        let self_contained = !source.contains("{%") || !["include", "import", "extends", "from"].iter().any(|tag| source.contains(tag));
        let reads = self_contained.then(|| {
            let paths = template.undeclared_variables(true);
            let mut names: Vec<String> = paths.iter().map(|p| p.split('.').next().unwrap_or(p).to_owned()).collect();
            names.sort_unstable();
            names.dedup();
            Arc::new(SubjectReads { names, reads: crate::flow::Reads::of_paths(&paths), native: crate::flow::NativeTemplate::compile(source) })
        });
        known.insert(template.name().to_owned(), reads.clone());
        reads
    }

    /// One part (`mjml`, `subject`, `preheader`) of a template, compiled now if it was not yet.
    fn template(&self, template: &str, locale: &str, part: &str) -> Result<minijinja::Template<'_, '_>, RenderError> {
        let env = self.env.get_or_init(|| {
            // Only a renderer compiling on first use gets here: the other's is made full.
            let mut env = environment();
            env.set_loader(loader(self.templates.clone()));
            env
        });
        // Joined by hand: `format!` cost a send more than a subject without template syntax.
        let mut key = String::with_capacity(locale.len() + template.len() + part.len() + 2);
        for piece in [locale, "/", template, ".", part] {
            key.push_str(piece);
        }
        env.get_template(&key).map_err(|e| match e.kind() {
            minijinja::ErrorKind::TemplateNotFound => RenderError::Unknown(template.to_owned()),
            _ => RenderError::Template { template: Name::new(template), locale: Name::new(locale), message: format!("{part}: {e:#}") },
        })
    }

    /// The template variables, built as minijinja values directly (the event is serialized
    /// once and its parts shared), and only the top-level ones `wanted` says the template reads.
    fn context(&self, send: &SendIntent, locale: &str, links: Links<'_>, preheader: &str, order_reads: &crate::flow::Reads, wanted: impl Fn(&str) -> bool) -> minijinja::Value {
        use minijinja::Value as V;
        const FROM_EVENT: [&str; 6] = ["order", "shipment", "checkout", "review", "properties", "event"];
        let mut vars: Vec<(&'static str, V)> = Vec::with_capacity(20);
        if FROM_EVENT.iter().any(|name| wanted(name)) {
            let trigger = send.trigger();
            // The whole event only when the template reads `event`; else only the parts it
            // reads (a subject's `order.number` need not serialize the customer and items
            // twice over). Absent parts are undefined, as on the serialized event.
            let event = wanted("event").then(|| V::from_serialize(trigger));
            for name in FROM_EVENT.into_iter().filter(|name| wanted(name)) {
                let value = match &event {
                    Some(event) if name == "event" => event.clone(),
                    Some(event) => event.get_attr(name).unwrap_or(V::UNDEFINED),
                    None => event_part(trigger, name, order_reads),
                };
                vars.push((name, value));
            }
        }
        if wanted("recommendations") {
            let recommendations: Vec<V> = send
                .recommendations
                .iter()
                .filter_map(|sku| self.catalog.get(sku))
                .map(|product| {
                    let name = product.name.get(locale).or_else(|| product.name.get(self.default_locale.as_str())).or_else(|| product.name.values().next());
                    minijinja::context! { sku => product.sku, name => name, price => product.price.to_string(), currency => product.currency,
                                          category => product.category, url => product.url, image_url => product.image_url }
                })
                .collect();
            vars.push(("recommendations", V::from(recommendations)));
        }
        if wanted("item") {
            vars.push(("item", item_value(send)));
        }
        if wanted("customer") {
            vars.push(("customer", customer_value(&send.profile)));
        }
        let simple: [(&'static str, V); 9] = [
            ("variant", send.enrollment.variant.as_deref().into()),
            ("locale", locale.into()),
            ("store", self.store.clone()),
            ("flow", send.flow.as_str().into()),
            ("step", send.step_id.as_str().into()),
            ("category", send.category.as_str().into()),
            ("unsubscribe_url", links.unsubscribe.into()),
            ("activation_url", links.activation.into()),
            ("preheader", preheader.into()),
        ];
        vars.extend(simple.into_iter().filter(|(name, _)| wanted(name)));
        V::from_iter(vars)
    }
}

/// A part of the triggering event as a template sees it, built alone (`order` with only the
/// fields `order_reads` names); absent parts are undefined, as on the serialized event.
fn event_part(trigger: &crate::domain::Event, name: &str, order_reads: &crate::flow::Reads) -> minijinja::Value {
    use minijinja::Value as V;
    match name {
        "order" => crate::engine::order_value(trigger.order.as_ref(), order_reads),
        "shipment" => trigger.shipment.as_ref().map_or(V::UNDEFINED, V::from_serialize),
        "checkout" => trigger.checkout.as_ref().map_or(V::UNDEFINED, V::from_serialize),
        "review" => trigger.review.as_ref().map_or(V::UNDEFINED, V::from_serialize),
        "properties" if !trigger.properties.is_empty() => V::from_serialize(&trigger.properties),
        _ => V::UNDEFINED,
    }
}

/// `item`: the enrollment's order line, for a per-item flow.
fn item_value(send: &SendIntent) -> minijinja::Value {
    send.enrollment.item.as_deref().map(minijinja::Value::from_serialize).into()
}

/// The fields of `customer` as templates see it (fewer than flow expressions do).
const CUSTOMER_FIELDS: [&str; 6] = ["id", "email", "first_name", "last_name", "has_account", "orders_count"];

/// `customer` as templates see it.
fn customer_value(p: &crate::domain::Profile) -> minijinja::Value {
    CUSTOMER_FIELDS.iter().map(|&name| (name, customer_field(p, name))).collect()
}

/// One field of `customer`, built alone (a subject's `customer.first_name`); undefined for
/// a name that is not one of them.
fn customer_field(p: &crate::domain::Profile, name: &str) -> minijinja::Value {
    use minijinja::Value as V;
    match name {
        "id" => V::from(p.id.as_str()),
        "email" => p.email.as_ref().map(|e| e.as_str()).into(),
        "first_name" => p.first_name.as_deref().into(),
        "last_name" => p.last_name.as_deref().into(),
        "has_account" => V::from(p.has_account.unwrap_or(false)),
        "orders_count" => V::from(p.orders_count),
        _ => V::UNDEFINED,
    }
}

/// A subject's variables one at a time, each as `Renderer::context` builds it, for the native
/// evaluator: no context is built for a subject it renders.
struct SubjectVariables<'a> {
    renderer: &'a Renderer,
    send: &'a SendIntent,
    locale: &'a str,
}

impl crate::flow::Variables for SubjectVariables<'_> {
    fn context(&self, reads: &crate::flow::Reads) -> minijinja::Value {
        self.renderer.context(self.send, self.locale, Links::default(), "", reads, |name| crate::flow::Var::ALL.iter().any(|v| v.name() == name && reads.var(*v)))
    }

    fn var(&self, var: crate::flow::Var, reads: &crate::flow::Reads) -> Option<minijinja::Value> {
        use crate::flow::Var;
        Some(match var {
            Var::Order | Var::Shipment | Var::Checkout | Var::Review | Var::Properties => event_part(self.send.trigger(), var.name(), reads),
            Var::Event => minijinja::Value::from_serialize(self.send.trigger()),
            Var::Item => item_value(self.send),
            Var::Customer => customer_value(&self.send.profile),
            // Flow expressions' variables that a template's context does not have.
            Var::Email | Var::OrderTotal | Var::VipThreshold | Var::Enrollment => minijinja::Value::UNDEFINED,
        })
    }

    fn attr(&self, var: crate::flow::Var, name: &str, reads: &crate::flow::Reads) -> Option<minijinja::Value> {
        match var {
            crate::flow::Var::Customer => Some(customer_field(&self.send.profile, name)),
            _ => self.var(var, reads).and_then(|value| crate::flow::attr_of(value, name)),
        }
    }
}

#[cfg(test)]
mod tests;
