// The Lambdas compile flows/ in (feature `bundled-flows`). Its files are embedded with
// `include_str!` (checked as UTF-8 by the compiler, read in place at cold start), and each YAML
// file is prepared here, once per build: its data as JSON, which the Lambdas read several times
// faster than YAML, and its version, the hash `Flow::parse` would compute from the text
// (BENCHMARKS.md, cold start). A test compares what they load with flows/ read from disk.
// A build script reports a problem by stopping the build with its message.
#![allow(clippy::expect_used)]
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() {
    println!("cargo:rerun-if-changed=../flows");
    if std::env::var_os("CARGO_FEATURE_BUNDLED_FLOWS").is_none() {
        return;
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bundled_flows.rs");
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../flows");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
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
            format!("Some(Prepared {{ json: {json:?}, version: Some({version:?}) }})")
        } else {
            "None".to_owned()
        };
        let absolute = path.canonicalize().expect("the file exists");
        writeln!(code, "    BundledFile {{ path: {relative:?}, text: include_str!({absolute:?}), prepared: {prepared} }},").expect("a String takes any text");
    }
    code.push_str("]\n");
    std::fs::write(out, code).expect("OUT_DIR is writable");
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
