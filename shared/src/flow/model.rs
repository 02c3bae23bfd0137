//! The flow model and its YAML form (documented in flows/README.md).

use std::collections::BTreeSet;

use chrono::Duration;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::duration::parse_duration;
use super::FlowError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentKey {
    /// One per customer.
    Customer,
    /// One per order (`order.id`).
    Order,
    /// Every trigger event starts its own.
    Event,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub event: String,
    /// A minijinja expression over `event`, `customer`, `order`; the flow starts only when true.
    pub filter: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExitRule {
    pub event: String,
    /// Only when the event's order is the enrollment's order.
    pub same_order: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Wait { duration: Duration },
    Send { template: String, when: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub id: String,
    /// Content hash of the file: an enrollment remembers which version it started on.
    pub version: String,
    pub file: String,
    pub description: String,
    pub category: Category,
    pub promotional: bool,
    pub trigger: Trigger,
    pub key: EnrollmentKey,
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
    exit_on: Vec<RawExit>,
    steps: Vec<RawStep>,
}

fn default_key() -> String {
    "customer".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    event: String,
    #[serde(default)]
    filter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExit {
    event: String,
    #[serde(default)]
    same_order: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: String,
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    send: Option<String>,
    #[serde(default)]
    when: Option<String>,
}

pub(crate) fn yaml_error(file: &str, e: &serde_yaml::Error) -> FlowError {
    FlowError { file: file.to_owned(), line: e.location().map(|l| l.line()), message: e.to_string() }
}

fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Flow {
    pub fn parse(file: &str, text: &str) -> Result<Flow, FlowError> {
        let raw: RawFlow = serde_yaml::from_str(text).map_err(|e| yaml_error(file, &e))?;
        let err = |m: String| FlowError { file: file.to_owned(), line: None, message: m };
        if !is_identifier(&raw.id) {
            return Err(err(format!("id {:?} must match [a-z][a-z0-9_]{{0,63}}", raw.id)));
        }
        let category = match raw.category.as_str() {
            "transactional" => Category::Transactional,
            "marketing" => Category::Marketing,
            other => return Err(err(format!("category {other:?} must be transactional or marketing"))),
        };
        if category == Category::Transactional && raw.promotional {
            return Err(err("a transactional flow cannot be promotional".into()));
        }
        let key = match raw.key.as_str() {
            "customer" => EnrollmentKey::Customer,
            "order" => EnrollmentKey::Order,
            "event" => EnrollmentKey::Event,
            other => return Err(err(format!("key {other:?} must be customer, order or event"))),
        };
        if !is_identifier(&raw.trigger.event) {
            return Err(err(format!("trigger.event {:?} is not an event type", raw.trigger.event)));
        }
        if let Some(filter) = &raw.trigger.filter {
            check_expression(filter).map_err(|e| err(format!("trigger.filter: {e}")))?;
        }
        if raw.steps.is_empty() {
            return Err(err("steps: a flow needs at least one step".into()));
        }
        let mut ids = BTreeSet::new();
        let mut steps = Vec::new();
        for (i, step) in raw.steps.into_iter().enumerate() {
            let at = format!("steps[{i}]");
            if !is_identifier(&step.id) {
                return Err(err(format!("{at}.id {:?} must match [a-z][a-z0-9_]{{0,63}}", step.id)));
            }
            if !ids.insert(step.id.clone()) {
                return Err(err(format!("{at}.id {:?} is used twice", step.id)));
            }
            let kind = match (step.wait, step.send) {
                (Some(wait), None) => {
                    if step.when.is_some() {
                        return Err(err(format!("{at}: `when` applies to send steps only")));
                    }
                    StepKind::Wait { duration: parse_duration(&wait).map_err(|e| err(format!("{at}.wait: {e}")))? }
                }
                (None, Some(template)) => {
                    if let Some(when) = &step.when {
                        check_expression(when).map_err(|e| err(format!("{at}.when: {e}")))?;
                    }
                    StepKind::Send { template, when: step.when }
                }
                _ => return Err(err(format!("{at} ({}): give exactly one of wait or send", step.id))),
            };
            steps.push(super::Step { id: step.id, kind });
        }
        let version = hex::encode(&Sha256::digest(text.as_bytes())[..6]);
        Ok(Flow {
            id: raw.id,
            version,
            file: file.to_owned(),
            description: raw.description,
            category,
            promotional: raw.promotional,
            trigger: Trigger { event: raw.trigger.event, filter: raw.trigger.filter },
            key,
            exit_on: raw.exit_on.into_iter().map(|e| ExitRule { event: e.event, same_order: e.same_order }).collect(),
            steps,
        })
    }
}

fn check_expression(source: &str) -> Result<(), String> {
    let env = minijinja::Environment::new();
    env.compile_expression(source).map(|_| ()).map_err(|e| format!("{source:?} is not a valid expression: {e}"))
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

    #[test]
    fn errors_name_the_file_line_and_problem() {
        let e = Flow::parse("x.yaml", "id: x\ncategory: marketing\ntrigger: {event: a}\nsteps:\n  - id: s\n    wait: soon\n").unwrap_err();
        assert!(e.message.contains("steps[0].wait"), "{e}");
        let e = Flow::parse("x.yaml", "id: x\ncategory: marketing\ntrigger: {event: a}\nsteps: []\nbogus: 1\n").unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Flow::parse("x.yaml", "id: x\ncategory: marketing\ntrigger: {event: a, filter: 'order.total >'}\nsteps: [{id: s, send: t}]\n").unwrap_err();
        assert!(e.message.contains("trigger.filter"), "{e}");
        let e = Flow::parse("x.yaml", "id: x\ncategory: transactional\npromotional: true\ntrigger: {event: a}\nsteps: [{id: s, send: t}]\n").unwrap_err();
        assert!(e.message.contains("promotional"), "{e}");
    }
}
