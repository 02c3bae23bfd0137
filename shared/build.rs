// The Lambdas compile flows/ in (feature `bundled-flows`). Its files are embedded with
// `include_str!` (checked as UTF-8 by the compiler, read in place at cold start), and each YAML
// file is prepared here, once per build: its data as JSON, which the Lambdas read several times
// faster than YAML, and its version, the hash `Flow::parse` would compute from the text
// (BENCHMARKS.md, cold start). A test compares what they load with flows/ read from disk.
//
// The folder is loaded here first with the crate's own flow code (its source compiled into this
// script, below), so a flow that `aftercare validate` would refuse stops the build — `sam build`
// included — with the same messages, rather than every cold start of the deployed Lambdas. The
// Lambdas then skip what this run proved: that every expression compiles.
// A build script reports a problem by stopping the build with its message.
#![allow(clippy::expect_used)]
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bundled_flows.rs");
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../flows");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    check(&root, &files);
    let mut code = String::from("&[\n");
    for path in &files {
        let relative = path.strip_prefix(&root).expect("under flows/").to_str().expect("flow file names are UTF-8").replace('\\', "/");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("flows/{relative}: cannot read as UTF-8: {e}"));
        let prepared = if relative.ends_with(".yaml") {
            // A broken file stops the build here, as it would stop every cold start;
            // `aftercare validate` says more.
            let value: serde_json::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("flows/{relative} is not valid YAML: {e}"));
            let json = serde_json::to_string(&value).expect("a JSON value serializes");
            // As `flow::model::version_of`.
            let version = hex::encode(&Sha256::digest(text.as_bytes())[..6]);
            format!("Some(Prepared {{ json: {json:?}, version: Some({version:?}), expressions_checked: true }})")
        } else {
            "None".to_owned()
        };
        let absolute = path.canonicalize().expect("the file exists");
        writeln!(code, "    BundledFile {{ path: {relative:?}, text: include_str!({absolute:?}), prepared: {prepared} }},").expect("a String takes any text");
    }
    code.push_str("]\n");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

/// Loads the folder as `aftercare validate` does; any problem stops the build with all of them.
fn check(root: &Path, files: &[PathBuf]) {
    let texts = files
        .iter()
        .map(|path| {
            let relative = path.strip_prefix(root).expect("under flows/").to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("flows/{relative}: cannot read as UTF-8: {e}"));
            (relative, text)
        })
        .collect();
    if let Err(errors) = flow::FlowSet::from_files(texts) {
        let listed: Vec<String> = errors.iter().map(|e| format!("  flows/{e}")).collect();
        panic!("the bundled flows do not load (`aftercare validate` lists the same):\n{}", listed.join("\n"));
    }
}

/// What `FlowSet::load_dir` reads: the YAML and MJML files, in every folder.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{} is not readable: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "mjml") {
            out.push(path);
        }
    }
}
