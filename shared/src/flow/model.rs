//! The flow model and its YAML form (documented in flows/README.md).

use std::collections::BTreeSet;

use chrono::{Duration, NaiveTime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::duration::parse_duration;
use super::expression::Expression;
use super::FlowError;
use smol_str::SmolStr as Name;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Category {
    /// At-least-once; ignores consent and quiet hours; only a permanent bounce stops it.
    Transactional,
    /// At-most-once; needs consent and obeys suppression, quiet hours, smart sending.
    Marketing,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Transactional => "transactional",
            Category::Marketing => "marketing",
        }
    }
}

/// What makes two triggers the same enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollmentKey {
    /// One per customer.
    Customer,
    /// One per order (`order.id`).
    Order,
    /// One per order and item (`order.id` + `item.sku`), with `for_each` over the items.
    OrderItem,
    /// Every trigger event starts its own.
    Event,
}

/// A customer date that starts a yearly flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomerDate {
    Birthday,
    FirstOrder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Trigger {
    Event {
        event: String,
        /// A minijinja expression; the flow starts only when true.
        filter: Option<Expression>,
        /// An expression giving a list: one enrollment per element, seen as `item`.
        for_each: Option<Expression>,
    },
    /// Starts (and restarts when the date changes) as soon as the customer has the date.
    CustomerDate(CustomerDate),
}

impl Trigger {
    pub fn event(&self) -> Option<&str> {
        match self {
            Trigger::Event { event, .. } => Some(event),
            Trigger::CustomerDate(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRule {
    pub event: String,
    /// Only when the event's order is the enrollment's order.
    pub same_order: bool,
    /// Only when the event's order contains the enrollment's item SKU.
    pub same_sku: bool,
    /// A goal reached (a conversion) rather than a plain exit; both end the enrollment.
    pub goal: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WaitLength {
    Fixed(Duration),
    /// An expression giving a number of days (`item.replenish_after_days - 5`).
    Days(Expression),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateChoice {
    pub template: Name,
    pub when: Option<Expression>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecommendationSource {
    /// The order items' `related_skus` (and the catalog's for those SKUs).
    Related,
    /// Catalog bestsellers of the order items' categories.
    CategoryBestsellers,
    /// Catalog bestsellers overall.
    Bestsellers,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommend {
    pub from: Vec<RecommendationSource>,
    pub count: usize,
    /// Skip the send (`no_recommendations`) when nothing is left to recommend.
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub when: Option<Expression>,
    pub goto: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: Name,
    pub weight: u32,
    pub goto: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StepKind {
    Wait(WaitLength),
    /// A local time on a day relative to a date expression; `otherwise` from the anchor when
    /// that instant is past or the date is missing.
    WaitUntilDate { date: Expression, offset_days: i64, at: NaiveTime, otherwise: Duration },
    /// The next yearly occurrence of a date expression's month and day, at a local time;
    /// the first one no earlier than `from_years` after the date itself.
    WaitYearly { date: Expression, at: NaiveTime, from_years: i32 },
    /// Wait for an event (optionally of the same order) until a timeout; go on at `matched`
    /// or `timed_out` (default: the next step).
    WaitFor { event: String, same_order: bool, timeout: Duration, matched: Option<String>, timed_out: Option<String> },
    Send { choices: Vec<TemplateChoice>, when: Option<Expression>, recommend: Option<Recommend> },
    Branch(Vec<Route>),
    Split(Vec<Variant>),
    Goto(String),
    Exit(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: Name,
    pub kind: StepKind,
}

impl Step {
    /// Where the step is in its flow's YAML `text`, for errors found later (a missing
    /// template). Searched only then: every step's line at load was 7 % of a Lambda's cold start.
    pub fn line_in(&self, text: &str) -> Option<usize> {
        line_of(text, &step_needle(&self.id))
    }

    pub fn is_wait(&self) -> bool {
        matches!(self.kind, StepKind::Wait(_) | StepKind::WaitUntilDate { .. } | StepKind::WaitYearly { .. } | StepKind::WaitFor { .. })
    }
    /// The steps this one can jump to (not counting falling through to the next).
    pub fn targets(&self) -> Vec<&str> {
        match &self.kind {
            StepKind::WaitFor { matched, timed_out, .. } => matched.iter().chain(timed_out.iter()).map(String::as_str).collect(),
            StepKind::Branch(routes) => routes.iter().map(|r| r.goto.as_str()).collect(),
            StepKind::Split(variants) => variants.iter().map(|v| v.goto.as_str()).collect(),
            StepKind::Goto(target) => vec![target.as_str()],
            _ => Vec::new(),
        }
    }
    /// Whether control can reach the step after this one.
    pub fn falls_through(&self) -> bool {
        match &self.kind {
            StepKind::Goto(_) | StepKind::Exit(_) | StepKind::Split(_) => false,
            StepKind::Branch(routes) => routes.iter().all(|r| r.when.is_some()),
            StepKind::WaitFor { matched, timed_out, .. } => matched.is_none() || timed_out.is_none(),
            _ => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub id: Name,
    /// Content hash of the file: an enrollment remembers which version it started on.
    pub version: Name,
    pub file: String,
    pub description: String,
    pub category: Category,
    pub promotional: bool,
    pub trigger: Trigger,
    pub key: EnrollmentKey,
    /// A newer trigger ends the active enrollment and starts a fresh one.
    pub restart: bool,
    pub exit_on: Vec<ExitRule>,
    pub steps: Vec<Step>,
}

impl Flow {
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    id: String,
    #[serde(default)]
    description: String,
    category: String,
    #[serde(default)]
    promotional: bool,
    trigger: RawTrigger,
    #[serde(default = "default_key")]
    key: String,
    #[serde(default)]
    restart: bool,
    #[serde(default)]
    exit_on: Vec<RawExit>,
    #[serde(default)]
    goals: Vec<RawExit>,
    steps: Vec<RawStep>,
}

fn default_key() -> String {
    "customer".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    for_each: Option<String>,
    #[serde(default)]
    customer_date: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExit {
    event: String,
    #[serde(default)]
    same_order: bool,
    #[serde(default)]
    same_sku: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawWait {
    Duration(String),
    Days { days: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaitUntil {
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    yearly: Option<String>,
    #[serde(default)]
    offset_days: i64,
    at: String,
    #[serde(default)]
    otherwise: Option<String>,
    #[serde(default)]
    from_years: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaitFor {
    event: String,
    #[serde(default)]
    same_order: bool,
    timeout: String,
    #[serde(default)]
    matched: Option<String>,
    #[serde(default)]
    timed_out: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSend {
    One(String),
    Choices(Vec<RawChoice>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChoice {
    template: String,
    #[serde(default)]
    when: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecommend {
    from: Vec<String>,
    #[serde(default = "default_count")]
    count: usize,
    #[serde(default)]
    required: bool,
}

fn default_count() -> usize {
    3
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    when: Option<String>,
    goto: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    variant: String,
    weight: u32,
    goto: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: String,
    #[serde(default)]
    wait: Option<RawWait>,
    #[serde(default)]
    wait_until: Option<RawWaitUntil>,
    #[serde(default)]
    wait_for: Option<RawWaitFor>,
    #[serde(default)]
    send: Option<RawSend>,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    recommend: Option<RawRecommend>,
    #[serde(default)]
    branch: Option<Vec<RawRoute>>,
    #[serde(default)]
    split: Option<Vec<RawVariant>>,
    #[serde(default)]
    goto: Option<String>,
    #[serde(default)]
    exit: Option<String>,
}

/// Deserializes a flows file's raw form from its YAML; errors name the file and line.
pub(crate) fn read<T: serde::de::DeserializeOwned>(file: &str, yaml: &str) -> Result<T, FlowError> {
    serde_yaml::from_str(yaml).map_err(|e| yaml_error(file, &e))
}

/// A money amount as a flows file writes it: `1800`, `19.99` or `"19.99"`. (YAML hands a
/// bare scalar over as text, JSON as a number: both read the same.)
pub(crate) mod amount {
    use std::collections::BTreeMap;
    use std::str::FromStr;

    use rust_decimal::Decimal;
    use serde::de::{Deserializer, Error, Visitor};

    struct Amount;

    impl Visitor<'_> for Amount {
        type Value = Decimal;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an amount like 1800 or \"19.99\"")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Decimal, E> {
            Decimal::from_str(v.trim()).map_err(|e| E::custom(format!("{v:?} is not an amount: {e}")))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<Decimal, E> {
            // Display gives the shortest text that reads back as `v`: 19.99, not 19.989999….
            self.visit_str(&v.to_string())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        // The bundled model (postcard) does not say what type comes next; it has the text a
        // `Decimal` serializes to.
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(Amount)
        } else {
            deserializer.deserialize_str(Amount)
        }
    }

    pub fn by_key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, Decimal>, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wrapped(#[serde(deserialize_with = "deserialize")] Decimal);
        let map: BTreeMap<String, Wrapped> = serde::Deserialize::deserialize(deserializer)?;
        Ok(map.into_iter().map(|(k, Wrapped(v))| (k, v)).collect())
    }
}

pub(crate) fn yaml_error(file: &str, e: &serde_yaml::Error) -> FlowError {
    FlowError { file: file.to_owned(), line: e.location().map(|l| l.line()), message: e.to_string() }
}

fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// What a step's line is found by.
fn step_needle(id: &str) -> String {
    format!("id: {id}")
}

/// The first line (1-based) containing `needle` as a whole word, to point errors at the right place.
pub(crate) fn line_of(text: &str, needle: &str) -> Option<usize> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    // One search of the whole text: a search per line set up its searcher per line, which
    // was 1.5 % of a Lambda's cold start (every step's line is looked up).
    let (at, _) = text.match_indices(needle).find(|(at, _)| !text[at + needle.len()..].starts_with(word))?;
    Some(text[..at].bytes().filter(|&b| b == b'\n').count() + 1)
}


/// A flow's version: the start of its YAML text's SHA-256, in hex.
pub(crate) fn version_of(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

fn time_of_day(raw: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(raw, "%H:%M").map_err(|_| format!("{raw:?} is not a time of day (HH:MM)"))
}

impl Flow {
    pub fn parse(file: &str, text: &str) -> Result<Flow, FlowError> {
        let raw: RawFlow = read(file, text)?;
        let err = |needle: &str, m: String| FlowError { file: file.to_owned(), line: line_of(text, needle), message: m };
        if !is_identifier(&raw.id) {
            return Err(err("id:", format!("id {:?} must match [a-z][a-z0-9_]{{0,63}}", raw.id)));
        }
        let category = match raw.category.as_str() {
            "transactional" => Category::Transactional,
            "marketing" => Category::Marketing,
            other => return Err(err("category:", format!("category {other:?} must be transactional or marketing"))),
        };
        if category == Category::Transactional && raw.promotional {
            return Err(err("promotional:", "a transactional flow cannot be promotional".into()));
        }
        let key = match raw.key.as_str() {
            "customer" => EnrollmentKey::Customer,
            "order" => EnrollmentKey::Order,
            "order_item" => EnrollmentKey::OrderItem,
            "event" => EnrollmentKey::Event,
            other => return Err(err("key:", format!("key {other:?} must be customer, order, order_item or event"))),
        };
        let trigger = parse_trigger(raw.trigger).map_err(|m| err("trigger", m))?;
        if key == EnrollmentKey::OrderItem && !matches!(&trigger, Trigger::Event { for_each: Some(_), .. }) {
            return Err(err("key:", "key order_item needs trigger.for_each (one enrollment per item)".into()));
        }
        if raw.steps.is_empty() {
            return Err(err("steps:", "steps: a flow needs at least one step".into()));
        }
        let mut ids = BTreeSet::new();
        let mut steps = Vec::new();
        for (i, step) in raw.steps.into_iter().enumerate() {
            // Formatted only for an error: a flow that loads needs neither.
            let at = |id: &str| format!("steps[{i}] ({id})");
            if !is_identifier(&step.id) {
                return Err(err(&step_needle(&step.id), format!("steps[{i}].id {:?} must match [a-z][a-z0-9_]{{0,63}}", step.id)));
            }
            if !ids.insert(step.id.clone()) {
                return Err(err(&step_needle(&step.id), format!("{}: id {:?} is used twice", at(&step.id), step.id)));
            }
            let id = step.id.clone();
            let kind = parse_step(step).map_err(|m| err(&step_needle(&id), format!("{}: {m}", at(&id))))?;
            steps.push(Step { id: id.into(), kind });
        }
        let exit_rule = |e: RawExit, goal: bool| ExitRule { event: e.event, same_order: e.same_order, same_sku: e.same_sku, goal };
        let mut exit_on: Vec<ExitRule> = raw.exit_on.into_iter().map(|e| exit_rule(e, false)).collect();
        exit_on.extend(raw.goals.into_iter().map(|e| exit_rule(e, true)));
        for rule in &exit_on {
            if !is_identifier(&rule.event) {
                return Err(err(&rule.event, format!("exit_on/goals: {:?} is not an event type", rule.event)));
            }
        }
        let version = version_of(text);
        let flow = Flow {
            id: raw.id.into(),
            version: version.into(),
            file: file.to_owned(),
            description: raw.description,
            category,
            promotional: raw.promotional,
            trigger,
            key,
            restart: raw.restart,
            exit_on,
            steps,
        };
        check_graph(&flow).map_err(|(needle, m)| err(&needle, m))?;
        Ok(flow)
    }
}

fn parse_trigger(raw: RawTrigger) -> Result<Trigger, String> {
    match (raw.event, raw.customer_date) {
        (Some(event), None) => {
            if !is_identifier(&event) {
                return Err(format!("trigger.event {event:?} is not an event type"));
            }
            let compile = |name: &str, expr: Option<String>| expr.map(|e| Expression::parse(&e).map_err(|why| format!("trigger.{name}: {why}"))).transpose();
            Ok(Trigger::Event { event, filter: compile("filter", raw.filter)?, for_each: compile("for_each", raw.for_each)? })
        }
        (None, Some(date)) => {
            if raw.filter.is_some() || raw.for_each.is_some() {
                return Err("trigger.customer_date takes no filter or for_each".into());
            }
            match date.as_str() {
                "birthday" => Ok(Trigger::CustomerDate(CustomerDate::Birthday)),
                "first_order" => Ok(Trigger::CustomerDate(CustomerDate::FirstOrder)),
                other => Err(format!("trigger.customer_date {other:?} must be birthday or first_order")),
            }
        }
        _ => Err("trigger needs exactly one of event or customer_date".into()),
    }
}

fn parse_step(step: RawStep) -> Result<StepKind, String> {
    let given = [step.wait.is_some(), step.wait_until.is_some(), step.wait_for.is_some(), step.send.is_some(), step.branch.is_some(), step.split.is_some(), step.goto.is_some(), step.exit.is_some()]
        .iter()
        .filter(|g| **g)
        .count();
    if given != 1 {
        return Err("give exactly one of wait, wait_until, wait_for, send, branch, split, goto or exit".into());
    }
    if step.send.is_none() && (step.when.is_some() || step.recommend.is_some()) {
        return Err("`when` and `recommend` apply to send steps only".into());
    }
    if let Some(wait) = step.wait {
        return Ok(StepKind::Wait(match wait {
            RawWait::Duration(d) => WaitLength::Fixed(parse_duration(&d).map_err(|e| format!("wait: {e}"))?),
            RawWait::Days { days } => WaitLength::Days(Expression::parse(&days).map_err(|e| format!("wait.days: {e}"))?),
        }));
    }
    if let Some(until) = step.wait_until {
        let at = time_of_day(&until.at).map_err(|e| format!("wait_until.at: {e}"))?;
        return match (until.date, until.yearly) {
            (Some(date), None) => {
                let date = Expression::parse(&date).map_err(|e| format!("wait_until.date: {e}"))?;
                let otherwise = parse_duration(until.otherwise.as_deref().unwrap_or("0s")).map_err(|e| format!("wait_until.otherwise: {e}"))?;
                Ok(StepKind::WaitUntilDate { date, offset_days: until.offset_days, at, otherwise })
            }
            (None, Some(date)) => {
                let date = Expression::parse(&date).map_err(|e| format!("wait_until.yearly: {e}"))?;
                Ok(StepKind::WaitYearly { date, at, from_years: until.from_years })
            }
            _ => Err("wait_until needs exactly one of date or yearly".into()),
        };
    }
    if let Some(wait_for) = step.wait_for {
        if !is_identifier(&wait_for.event) {
            return Err(format!("wait_for.event {:?} is not an event type", wait_for.event));
        }
        return Ok(StepKind::WaitFor {
            event: wait_for.event,
            same_order: wait_for.same_order,
            timeout: parse_duration(&wait_for.timeout).map_err(|e| format!("wait_for.timeout: {e}"))?,
            matched: wait_for.matched,
            timed_out: wait_for.timed_out,
        });
    }
    if let Some(send) = step.send {
        let choices = match send {
            RawSend::One(template) => vec![TemplateChoice { template: template.into(), when: None }],
            RawSend::Choices(choices) => choices
                .into_iter()
                .map(|c| {
                    let when = c.when.map(|w| Expression::parse(&w).map_err(|e| format!("send {}: when: {e}", c.template))).transpose()?;
                    Ok(TemplateChoice { template: c.template.into(), when })
                })
                .collect::<Result<_, String>>()?,
        };
        if choices.is_empty() {
            return Err("send: list at least one template".into());
        }
        let when = step.when.map(|w| Expression::parse(&w).map_err(|e| format!("when: {e}"))).transpose()?;
        let recommend = step
            .recommend
            .map(|r| {
                let from = r
                    .from
                    .iter()
                    .map(|s| match s.as_str() {
                        "related" => Ok(RecommendationSource::Related),
                        "category_bestsellers" => Ok(RecommendationSource::CategoryBestsellers),
                        "bestsellers" => Ok(RecommendationSource::Bestsellers),
                        other => Err(format!("recommend.from {other:?} must be related, category_bestsellers or bestsellers")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if r.count == 0 || r.count > 12 {
                    return Err(format!("recommend.count must be 1–12, got {}", r.count));
                }
                Ok(Recommend { from, count: r.count, required: r.required })
            })
            .transpose()?;
        return Ok(StepKind::Send { choices, when, recommend });
    }
    if let Some(routes) = step.branch {
        if routes.is_empty() {
            return Err("branch: list at least one route".into());
        }
        let routes = routes
            .into_iter()
            .map(|r| Ok(Route { when: r.when.map(|w| Expression::parse(&w).map_err(|e| format!("branch: when: {e}"))).transpose()?, goto: r.goto }))
            .collect::<Result<_, String>>()?;
        return Ok(StepKind::Branch(routes));
    }
    if let Some(variants) = step.split {
        if variants.len() < 2 || variants.iter().all(|v| v.weight == 0) {
            return Err("split: list at least two variants with a positive total weight".into());
        }
        return Ok(StepKind::Split(variants.into_iter().map(|v| Variant { name: v.variant.into(), weight: v.weight, goto: v.goto }).collect()));
    }
    if let Some(target) = step.goto {
        return Ok(StepKind::Goto(target));
    }
    Ok(StepKind::Exit(step.exit.unwrap_or_default()))
}

/// Every jump lands on a step; every step can be reached; every loop passes a wait.
fn check_graph(flow: &Flow) -> Result<(), (String, String)> {
    for step in &flow.steps {
        for target in step.targets() {
            if flow.step_index(target).is_none() {
                return Err((format!("id: {}", step.id), format!("step {:?} jumps to {target:?}, which is not a step of this flow", step.id)));
            }
        }
    }
    let mut reached = vec![false; flow.steps.len()];
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut reached[i], true) {
            continue;
        }
        let step = &flow.steps[i];
        stack.extend(step.targets().into_iter().filter_map(|t| flow.step_index(t)));
        if step.falls_through() && i + 1 < flow.steps.len() {
            stack.push(i + 1);
        }
    }
    if let Some(i) = reached.iter().position(|r| !r) {
        let id = &flow.steps[i].id;
        return Err((format!("id: {id}"), format!("step {id:?} is unreachable: no step jumps to it and the step before it never falls through")));
    }
    // A jump backwards must cross a wait, or the flow could loop forever within one decision.
    for (i, step) in flow.steps.iter().enumerate() {
        for target in step.targets() {
            if let Some(j) = flow.step_index(target) {
                if j <= i && !flow.steps[j..=i].iter().any(Step::is_wait) {
                    return Err((format!("id: {}", step.id), format!("step {:?} loops back to {target:?} without a wait in between", step.id)));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_CONFIRMATION: &str = "
id: order_confirmation
category: transactional
trigger: { event: order_placed }
key: order
steps:
  - id: confirm
    send: order_confirmation
";

    #[test]
    fn parses_a_flow() {
        let flow = Flow::parse("order_confirmation.yaml", ORDER_CONFIRMATION).unwrap();
        assert_eq!(flow.category, Category::Transactional);
        assert_eq!(flow.key, EnrollmentKey::Order);
        assert_eq!(flow.steps.len(), 1);
        assert_eq!(flow.version.len(), 12);
    }

    fn error(text: &str) -> FlowError {
        Flow::parse("x.yaml", text).unwrap_err()
    }

    #[test]
    fn errors_name_the_file_line_and_problem() {
        let e = error("id: x\ncategory: marketing\ntrigger: {event: a}\nsteps:\n  - id: s\n    wait: soon\n");
        assert!(e.message.contains("steps[0] (s): wait"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");
        let e = error("id: x\ncategory: marketing\ntrigger: {event: a}\nsteps: []\nbogus: 1\n");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = error("id: x\ncategory: marketing\ntrigger: {event: a, filter: 'order.total >'}\nsteps: [{id: s, send: t}]\n");
        assert!(e.message.contains("trigger.filter"), "{e}");
        assert_eq!(e.line, Some(3));
        let e = error("id: x\ncategory: transactional\npromotional: true\ntrigger: {event: a}\nsteps: [{id: s, send: t}]\n");
        assert!(e.message.contains("promotional"), "{e}");
    }

    #[test]
    fn line_of_finds_the_first_whole_word_match() {
        let text = "id: ab\n  - id: a-b\n  - id: a\r\n  - id: a # x\n";
        assert_eq!(line_of(text, "id: a"), Some(3), "`id: ab` and `id: a-b` are other words");
        assert_eq!(line_of(text, "id: ab"), Some(1));
        assert_eq!(line_of("x\nid: a", "id: a"), Some(2), "a match at the end of the text");
        assert_eq!(line_of(text, "id: b"), None);
    }

    proptest::proptest! {
        /// The same answers as looking at each line in turn (how it was written before).
        #[test]
        fn line_of_agrees_with_a_search_line_by_line(text in "[ab: \n-]{0,40}", needle in "[ab: -]{1,3}") {
            let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            let by_line = text.lines()
                .position(|line| line.match_indices(needle.as_str()).any(|(at, _)| !line[at + needle.len()..].starts_with(word)))
                .map(|i| i + 1);
            proptest::prop_assert_eq!(line_of(&text, &needle), by_line);
        }
    }

    #[test]
    fn jumps_must_land_and_every_step_must_be_reachable() {
        let e = error("id: x\ncategory: marketing\ntrigger: {event: a}\nsteps:\n  - {id: a, goto: nowhere}\n");
        assert!(e.message.contains("\"nowhere\""), "{e}");
        let e = error("id: x\ncategory: marketing\ntrigger: {event: a}\nsteps:\n  - {id: a, send: t}\n  - {id: b, exit: done}\n  - {id: orphan, send: t}\n");
        assert!(e.message.contains("\"orphan\" is unreachable"), "{e}");
        assert_eq!(e.line, Some(7));
        let e = error("id: x\ncategory: marketing\ntrigger: {event: a}\nsteps:\n  - {id: a, send: t}\n  - {id: b, goto: a}\n");
        assert!(e.message.contains("without a wait"), "{e}");
        let ok = "id: x\ncategory: marketing\ntrigger: {customer_date: birthday}\nsteps:\n  - {id: day, wait_until: {yearly: customer.birthday, at: '09:00'}}\n  - {id: greet, send: t}\n  - {id: again, goto: day}\n";
        assert!(Flow::parse("x.yaml", ok).is_ok());
    }

    #[test]
    fn order_item_key_needs_for_each() {
        let e = error("id: x\ncategory: marketing\ntrigger: {event: order_placed}\nkey: order_item\nsteps: [{id: s, send: t}]\n");
        assert!(e.message.contains("for_each"), "{e}");
    }
}
