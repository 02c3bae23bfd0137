// The Lambdas compile flows/ in (feature `bundled-flows`). This script loads the folder with the
// crate's own flow code (its source compiled into the script, below), as `aftercare validate`
// does: a flow it refuses stops the build — `sam build` included — with the same messages,
// rather than every cold start of the deployed Lambdas. It then writes the validated model
// (`flow::BundledModel`, postcard), which a cold start reads back without parsing YAML or
// JSON, checking the flows or compiling their expressions again (BENCHMARKS.md, cold start),
// and embeds the templates as text. A test compares what the Lambdas load with flows/ on disk.
// A build script reports a problem by stopping the build with its message.
#![allow(clippy::expect_used)]
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

// The flow model and the two value types it uses, as the crate compiles them. These files may
// use only `super::`, `crate::domain::{EmailAddress, TimeZone}` and the crates listed under
// [build-dependencies]; the script's build fails otherwise.
#[allow(dead_code, unused_imports, clippy::all)]
#[path = "src/domain/values.rs"]
mod values;
mod domain {
    pub use super::values::{EmailAddress, TimeZone};
}
#[allow(dead_code, unused_imports, unexpected_cfgs, clippy::all)]
#[path = "src/flow/mod.rs"]
mod flow;

fn main() {
    println!("cargo:rerun-if-changed=../flows");
    println!("cargo:rustc-check-cfg=cfg(bundled_flows)");
    if std::env::var_os("CARGO_FEATURE_BUNDLED_FLOWS").is_none() {
        return;
    }
    println!("cargo:rustc-cfg=bundled_flows");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../flows");
    let set = flow::FlowSet::load_dir(&root).unwrap_or_else(|errors| {
        let listed: Vec<String> = errors.iter().map(|e| format!("  flows/{e}")).collect();
        panic!("the bundled flows do not load (`aftercare validate` lists the same):\n{}", listed.join("\n"));
    });
    let model = flow::BundledModel { flows: set.flows(), store: &set.store };
    std::fs::write(out.join("bundled_model.postcard"), postcard::to_allocvec(&model).expect("the flow model serializes")).expect("OUT_DIR is writable");
    // The catalog is read back on first use, where an error could only panic: read it back here.
    let catalog = postcard::to_allocvec(&*set.catalog).expect("the catalog serializes");
    let read_back: flow::Catalog = postcard::from_bytes(&catalog).expect("the catalog reads back from postcard");
    assert!(read_back == *set.catalog, "the catalog reads back from postcard changed");
    std::fs::write(out.join("bundled_catalog.postcard"), catalog).expect("OUT_DIR is writable");
    // The templates stay text in the binary, borrowed where they are (`include_str!`).
    let mut code = String::from("&[\n");
    for (locale, names) in set.templates.iter() {
        for name in names.keys() {
            let path = root.join("templates").join(locale).join(format!("{name}.mjml")).canonicalize().expect("a template load_dir read exists");
            writeln!(code, "    ({locale:?}, {name:?}, include_str!({path:?})),").expect("a String takes any text");
        }
    }
    code.push_str("]\n");
    std::fs::write(out.join("bundled_templates.rs"), code).expect("OUT_DIR is writable");
}
