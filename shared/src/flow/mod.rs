//! Flow definitions: YAML files in `flows/` turned into a validated model.
//! Adding or editing a flow is a file change, never a code change.

mod catalog;
mod duration;
mod expression;
mod model;
mod store_policy;

pub use catalog::{Catalog, Product};
pub use duration::parse_duration;
pub use expression::{CustomerAttr, Expression, OrderAttr, Reads, Var};
pub use model::{
    Category, CustomerDate, EnrollmentKey, ExitRule, Flow, Recommend, RecommendationSource, Route, Step, StepKind, TemplateChoice, Trigger, Variant,
    WaitLength,
};
pub use store_policy::{QuietHours, Sender, StorePolicy};

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// A problem in one flow file, with the file and, when known, the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct FlowError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl FlowError {
    fn new(file: &str, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), line: None, message: message.into() }
    }
}

/// Template sources by locale, then name: `templates/ja/order_confirmation.mjml`. The bundled
/// flows' texts are borrowed from the binary; those read from disk are owned.
pub type TemplateSources = BTreeMap<String, BTreeMap<String, Cow<'static, str>>>;

/// A YAML file as `build.rs` prepared it for the bundled flows: its data converted to JSON and,
/// for a flow, its version (the hash of the YAML text, as [`Flow::parse`] computes it).
#[derive(Debug, Clone, Copy)]
pub struct Prepared<'a> {
    pub json: &'a str,
    pub version: Option<&'a str>,
    /// The build loaded the whole folder and every expression of this flow compiled, so
    /// loading it does not check them again (`build.rs`).
    pub expressions_checked: bool,
}

/// Everything in a `flows/` folder.
#[derive(Debug, Clone)]
pub struct FlowSet {
    /// Sorted by id (`flow` looks them up by binary search).
    flows: Vec<Flow>,
    pub store: StorePolicy,
    pub templates: TemplateSources,
    pub catalog: Catalog,
    /// By event type: the flows each one concerns, so the engine checks only those.
    listeners: HashMap<String, Listeners>,
    /// For an event type no flow names: the customer-date flows alone.
    other_events: Listeners,
}

/// What one event type can do to a customer's flows, worked out when the flows load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listeners {
    /// The flows it can start, in flow order, by index into `FlowSet::flows`: those it
    /// triggers and those that start on a customer date (checked on every event).
    pub starts: Vec<usize>,
    /// Some flow ends an enrollment on it (`exit_on`, `goals`).
    pub exits: bool,
    /// Some step waits for it (`wait_for`).
    pub resumes: bool,
}

impl Listeners {
    fn of(flows: &[Flow]) -> (HashMap<String, Listeners>, Listeners) {
        let dated: Vec<usize> = flows.iter().enumerate().filter(|(_, f)| matches!(f.trigger, Trigger::CustomerDate(_))).map(|(i, _)| i).collect();
        let mut named: BTreeSet<&str> = BTreeSet::new();
        for flow in flows {
            named.extend(flow.trigger.event());
            named.extend(flow.exit_on.iter().map(|rule| rule.event.as_str()));
            named.extend(flow.steps.iter().filter_map(|step| match &step.kind {
                StepKind::WaitFor { event, .. } => Some(event.as_str()),
                _ => None,
            }));
        }
        let listeners = named
            .into_iter()
            .map(|event_type| {
                let starts = flows.iter().enumerate().filter(|(i, f)| f.trigger.event() == Some(event_type) || dated.contains(i)).map(|(i, _)| i).collect();
                let exits = flows.iter().any(|f| f.exit_on.iter().any(|rule| rule.event == event_type));
                let resumes = flows.iter().flat_map(|f| &f.steps).any(|step| matches!(&step.kind, StepKind::WaitFor { event, .. } if event == event_type));
                (event_type.to_owned(), Listeners { starts, exits, resumes })
            })
            .collect();
        (listeners, Listeners { starts: dated, exits: false, resumes: false })
    }
}

impl FlowSet {
    /// Reads a folder from disk.
    pub fn load_dir(dir: &Path) -> Result<FlowSet, Vec<FlowError>> {
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files).map_err(|e| vec![FlowError::new(&dir.display().to_string(), format!("cannot read: {e}"))])?;
        FlowSet::from_files(files)
    }

    /// Builds from `(relative path, contents)` pairs; every problem is reported, not just the first.
    pub fn from_files(files: Vec<(String, String)>) -> Result<FlowSet, Vec<FlowError>> {
        FlowSet::from_files_prepared(files.into_iter().map(|(path, text)| (path, Cow::Owned(text))).collect(), |_| None)
    }

    /// As [`FlowSet::from_files`], a YAML file's data and version taken from what `prepared` has
    /// for its path, when it has something (the bundled flows: see `build.rs`).
    pub fn from_files_prepared<'a>(files: Vec<(String, Cow<'static, str>)>, prepared: impl Fn(&str) -> Option<Prepared<'a>>) -> Result<FlowSet, Vec<FlowError>> {
        let mut errors = Vec::new();
        let mut store = None;
        let mut flows = Vec::new();
        let mut templates = TemplateSources::new();
        let mut catalog = Catalog::default();
        // Each flow's text, for the lines of errors found after it parsed (borrowed when bundled).
        let mut flow_texts: BTreeMap<String, Cow<'static, str>> = BTreeMap::new();
        for (path, text) in files {
            let path = path.replace('\\', "/");
            if path == "store.yaml" {
                match StorePolicy::parse_prepared(&text, prepared(&path).map(|p| p.json)) {
                    Ok(policy) => store = Some(policy),
                    Err(e) => errors.push(e),
                }
            } else if let Some(rest) = path.strip_prefix("templates/") {
                if let Some((locale, name)) = rest.split_once('/').and_then(|(l, f)| Some((l, f.strip_suffix(".mjml")?))) {
                    templates.entry(locale.to_owned()).or_default().insert(name.to_owned(), text);
                }
            } else if path == "catalog.yaml" {
                match Catalog::parse_prepared(&text, prepared(&path).map(|p| p.json)) {
                    Ok(c) => catalog = c,
                    Err(e) => errors.push(e),
                }
            } else if path.ends_with(".yaml") && !path.contains('/') {
                match Flow::parse_prepared(&path, &text, prepared(&path)) {
                    Ok(flow) => flows.push(flow),
                    Err(e) => errors.push(e),
                }
                flow_texts.insert(path, text);
            }
        }
        let Some(store) = store else {
            errors.push(FlowError::new("store.yaml", "missing: every flows folder needs a store.yaml"));
            return Err(errors);
        };
        flows.sort_by(|a, b| a.id.cmp(&b.id));
        for pair in flows.windows(2) {
            if pair[0].id == pair[1].id {
                errors.push(FlowError::new(&pair[1].file, format!("flow id {:?} is also used by {}", pair[1].id, pair[0].file)));
            }
        }
        if !templates.contains_key(&store.default_locale) {
            errors.push(FlowError::new("store.yaml", format!("default_locale {:?} has no templates/{}/ folder", store.default_locale, store.default_locale)));
        }
        for locale in templates.keys() {
            if !store.locales.contains(locale) {
                errors.push(FlowError::new(
                    &format!("templates/{locale}"),
                    format!("locale {locale:?} is not in store.yaml locales {:?}", store.locales),
                ));
            }
        }
        for flow in &flows {
            for step in &flow.steps {
                if let StepKind::Send { choices, .. } = &step.kind {
                    for template in choices.iter().map(|c| &c.template) {
                        let default = templates.get(&store.default_locale);
                        if default.is_none_or(|t| !t.contains_key(template)) {
                            errors.push(FlowError {
                                line: flow_texts.get(&flow.file).and_then(|text| step.line_in(text)),
                                ..FlowError::new(
                                    &flow.file,
                                    format!("step {:?} sends template {template:?}, but templates/{}/{template}.mjml does not exist", step.id, store.default_locale),
                                )
                            });
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            let (listeners, other_events) = Listeners::of(&flows);
            Ok(FlowSet { flows, store, templates, catalog, listeners, other_events })
        } else {
            Err(errors)
        }
    }

    /// The flows, by id.
    pub fn flows(&self) -> &[Flow] {
        &self.flows
    }

    /// Looked up on every event for each enrollment; `flows` is sorted by id when built.
    pub fn flow(&self, id: &str) -> Option<&Flow> {
        self.flows.binary_search_by(|f| f.id.as_str().cmp(id)).ok().map(|i| &self.flows[i])
    }

    /// The flows an event of this type concerns.
    pub fn listeners(&self, event_type: &str) -> &Listeners {
        self.listeners.get(event_type).unwrap_or(&self.other_events)
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "mjml") {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            out.push((relative, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

// `bundled_flows` is set by build.rs for the crate once it has prepared the folder (feature
// `bundled-flows`); build.rs compiles this file too, and has nothing to embed.
#[cfg(bundled_flows)]
pub mod bundled {
    //! The repository's `flows/` folder, compiled in (the Lambdas ship no files beside the
    //! binary), each YAML file with the form `build.rs` prepared of it, which the Lambdas read.
    use super::Prepared;
    use std::borrow::Cow;

    /// One file of flows/, as `build.rs` embedded it.
    struct BundledFile {
        /// Its path in flows/, with `/` between folders.
        path: &'static str,
        text: &'static str,
        /// A YAML file's data as JSON and its version.
        prepared: Option<Prepared<'static>>,
    }

    static FILES: &[BundledFile] = include!(concat!(env!("OUT_DIR"), "/bundled_flows.rs"));

    /// The compiled-in flows, validated; a broken flows/ folder stops the cold start with every error.
    pub fn flow_set() -> anyhow::Result<super::FlowSet> {
        super::FlowSet::from_files_prepared(files(), prepared).map_err(|errors| {
            anyhow::anyhow!("bundled flows do not load:\n{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        })
    }

    /// Every YAML and MJML file of flows/, by its path there; the texts are borrowed, not copied.
    pub fn files() -> Vec<(String, Cow<'static, str>)> {
        FILES.iter().map(|file| (file.path.to_owned(), Cow::Borrowed(file.text))).collect()
    }

    /// The prepared form of a YAML file of flows/ (`store.yaml` → its data as JSON).
    pub fn prepared(path: &str) -> Option<Prepared<'static>> {
        FILES.iter().find(|file| file.path == path).and_then(|file| file.prepared)
    }
}

#[cfg(all(test, bundled_flows))]
mod bundled_tests {
    /// What the Lambdas ship is flows/ on disk, its data read from the JSON form: the same flows
    /// (versions included), store, catalog and templates, and every template
    /// compiles. The Lambdas compile templates on first use and rely on this check.
    #[test]
    fn the_bundled_flows_are_the_ones_on_disk_and_every_template_compiles() {
        let bundled = super::bundled::flow_set().unwrap();
        let on_disk = super::FlowSet::load_dir(&crate::testing::flows_dir()).unwrap();
        assert_eq!(bundled.flows().len(), on_disk.flows().len());
        assert_eq!(bundled.flows(), on_disk.flows());
        assert_eq!(bundled.store, on_disk.store);
        assert_eq!(bundled.catalog, on_disk.catalog);
        assert_eq!(bundled.templates, on_disk.templates);
        let yaml: Vec<String> = super::bundled::files().into_iter().map(|(p, _)| p).filter(|p| p.ends_with(".yaml") && !p.contains('/')).collect();
        assert!(
            yaml.len() >= 3 && yaml.iter().all(|p| super::bundled::prepared(p).is_some_and(|prepared| prepared.json.starts_with('{') && prepared.version.is_some() && prepared.expressions_checked)),
            "every YAML file has its JSON and version: {yaml:?}"
        );
        crate::render::Renderer::new(&bundled).unwrap();
    }
}
