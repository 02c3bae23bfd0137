// The Lambdas compile flows/ in (feature `bundled-flows`). Its YAML files are also turned into
// JSON here, once per build: the Lambdas read that at cold start, several times faster than
// YAML (BENCHMARKS.md, cold start). The data is the same; a test compares the two.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=../flows");
    if std::env::var_os("CARGO_FEATURE_BUNDLED_FLOWS").is_none() {
        return;
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bundled-flows-json");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("OUT_DIR is writable");
    let flows = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../flows");
    let mut entries: Vec<_> = std::fs::read_dir(&flows).expect("flows/ is readable").filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let name = path.file_name().and_then(|n| n.to_str()).expect("flow file names are UTF-8");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("flows/{name}: cannot read: {e}"));
        // A broken file stops the build here, as it would stop every cold start;
        // `aftercare validate` says more.
        let value: serde_json::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("flows/{name} is not valid YAML: {e}"));
        let json = serde_json::to_string(&value).expect("a JSON value serializes");
        std::fs::write(out.join(format!("{name}.json")), json).expect("OUT_DIR is writable");
    }
}
