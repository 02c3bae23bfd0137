//! Flow definitions: YAML files in `flows/` turned into a validated model.
//! Adding or editing a flow is a file change, never a code change.

mod catalog;
mod duration;
mod expression;
mod model;
mod native;
mod store_policy;

pub use catalog::{Catalog, Product, SharedCatalog};
pub use duration::parse_duration;
pub use expression::{attr_of, CustomerAttr, Expression, OrderAttr, Reads, Var, Variables};
pub use native::NativeTemplate;
pub use model::{
    Category, CustomerDate, EnrollmentKey, ExitRule, Flow, Recommend, RecommendationSource, Route, Step, StepKind, TemplateChoice, Trigger, Variant,
    WaitLength,
};
pub use store_policy::{QuietHours, Sender, StorePolicy};

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

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

/// Everything in a `flows/` folder.
#[derive(Debug, Clone)]
pub struct FlowSet {
    /// Sorted by id (`flow` looks them up by binary search).
    flows: Vec<Flow>,
    pub store: StorePolicy,
    /// Shared: the Lambdas' renderer loads from it on first use, without a copy at start.
    pub templates: Arc<TemplateSources>,
    pub catalog: SharedCatalog,
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
        let mut errors = Vec::new();
        let mut store = None;
        let mut flows = Vec::new();
        let mut templates = TemplateSources::new();
        let mut catalog = Catalog::default();
        // Each flow's text, for the lines of errors found after it parsed.
        let mut flow_texts: BTreeMap<String, String> = BTreeMap::new();
        for (path, text) in files {
            let path = path.replace('\\', "/");
            if path == "store.yaml" {
                match StorePolicy::parse(&text) {
                    Ok(policy) => store = Some(policy),
                    Err(e) => errors.push(e),
                }
            } else if let Some(rest) = path.strip_prefix("templates/") {
                if let Some((locale, name)) = rest.split_once('/').and_then(|(l, f)| Some((l, f.strip_suffix(".mjml")?))) {
                    templates.entry(locale.to_owned()).or_default().insert(name.to_owned(), Cow::Owned(text));
                }
            } else if path == "catalog.yaml" {
                match Catalog::parse(&text) {
                    Ok(c) => catalog = c,
                    Err(e) => errors.push(e),
                }
            } else if path.ends_with(".yaml") && !path.contains('/') {
                match Flow::parse(&path, &text) {
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
                        if default.is_none_or(|t| !t.contains_key(template.as_str())) {
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
            Ok(FlowSet::from_valid_parts(flows, store, templates, SharedCatalog::new(catalog)))
        } else {
            Err(errors)
        }
    }

    /// From parts [`FlowSet::from_files`] validated (the bundled flows: in `build.rs`).
    fn from_valid_parts(flows: Vec<Flow>, store: StorePolicy, templates: TemplateSources, catalog: SharedCatalog) -> FlowSet {
        let (listeners, other_events) = Listeners::of(&flows);
        FlowSet { flows, store, templates: Arc::new(templates), catalog, listeners, other_events }
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

/// The bundled flows' validated model, as `build.rs` writes it for the crate to embed: the flows
/// by id and the store policy, in postcard (the catalog is embedded on its own, to be read on
/// first use, and the templates as text). An internal form between one build's script and its
/// crate, not a file format.
#[derive(Serialize)]
pub struct BundledModel<'a> {
    pub flows: &'a [Flow],
    pub store: &'a StorePolicy,
}

// `bundled_flows` is set by build.rs for the crate once it has loaded the folder (feature
// `bundled-flows`); build.rs compiles this file too, and has nothing to embed.
#[cfg(bundled_flows)]
pub mod bundled {
    //! The repository's `flows/` folder, compiled in (the Lambdas ship no files beside the
    //! binary): `build.rs` loaded it with this crate's flow code, stopping the build on any
    //! error, and embedded the model it built, which a cold start reads back instead of
    //! parsing and validating the YAML again (BENCHMARKS.md, cold start).
    use std::borrow::Cow;

    use super::{Catalog, Flow, SharedCatalog, StorePolicy, TemplateSources};

    /// Each template of flows/templates/: its locale, name and text.
    static TEMPLATES: &[(&str, &str, &str)] = include!(concat!(env!("OUT_DIR"), "/bundled_templates.rs"));
    static MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bundled_model.postcard"));
    static CATALOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bundled_catalog.postcard"));

    /// `BundledModel`, owned: the same fields in the same order (postcard writes a struct as its
    /// fields in order, without names; the bundled test fails on a mismatch).
    #[derive(serde::Deserialize)]
    struct Model {
        flows: Vec<Flow>,
        store: StorePolicy,
    }

    /// The compiled-in flows, as validated when the binary was built.
    pub fn flow_set() -> anyhow::Result<super::FlowSet> {
        // Written by this build's own script from these types: failing here is a build bug.
        let model: Model = postcard::from_bytes(MODEL).map_err(|e| anyhow::anyhow!("the bundled flows' model does not read back: {e}"))?;
        let mut templates = TemplateSources::new();
        for (locale, name, text) in TEMPLATES {
            templates.entry((*locale).to_owned()).or_default().insert((*name).to_owned(), Cow::Borrowed(*text));
        }
        Ok(super::FlowSet::from_valid_parts(model.flows, model.store, templates, SharedCatalog::read_on_first_use(catalog)))
    }

    /// build.rs read these bytes back before embedding them (it stops the build otherwise), so
    /// they cannot fail here short of a corrupt binary.
    fn catalog() -> Catalog {
        postcard::from_bytes(CATALOG).unwrap_or_else(|e| panic!("the bundled catalog does not read back, though build.rs read it: {e}"))
    }
}

#[cfg(all(test, bundled_flows))]
mod bundled_tests {
    /// What the Lambdas ship is flows/ on disk, read back from the model `build.rs` embedded: the
    /// same flows (versions included), store, catalog and templates, and every template
    /// compiles. The Lambdas compile templates on first use and rely on this check.
    #[test]
    fn the_bundled_flows_are_the_ones_on_disk_and_every_template_compiles() {
        let bundled = super::bundled::flow_set().unwrap();
        let on_disk = super::FlowSet::load_dir(&crate::testing::flows_dir()).unwrap();
        assert!(bundled.flows().len() >= 10, "{}", bundled.flows().len());
        assert_eq!(bundled.flows(), on_disk.flows());
        assert_eq!(bundled.store, on_disk.store);
        assert_eq!(bundled.catalog, on_disk.catalog);
        assert_eq!(bundled.templates, on_disk.templates);
        assert_eq!((&bundled.listeners, &bundled.other_events), (&on_disk.listeners, &on_disk.other_events));
        crate::render::Renderer::new(&bundled).unwrap();
    }

    /// The Lambdas read their catalog when a send first recommends something, once for the
    /// engine and the renderer together: not at start, where most invocations never use it.
    #[test]
    fn the_bundled_catalog_is_read_on_first_use_once_for_all_its_holders() {
        let bundled = super::bundled::flow_set().unwrap();
        let _renderer = crate::render::Renderer::compiling_on_first_use(&bundled).unwrap();
        let held_elsewhere = bundled.catalog.clone();
        assert!(!bundled.catalog.is_read(), "the catalog was read at start");
        assert!(held_elsewhere.get("MUG-STONE").is_some(), "{held_elsewhere:?}");
        assert!(bundled.catalog.is_read(), "each holder reads its own catalog");
    }
}
