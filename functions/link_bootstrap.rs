//! Build script shared by the Lambda binaries (and the cold-start floor, so it is built the
//! same way): how their bootstraps are linked, for a shorter cold start (BENCHMARKS.md).
//!
//! - Without PIE. A PIE bootstrap has ~85,000 relative relocations that the dynamic loader
//!   applies at every cold start, dirtying the pages they touch; linked without PIE there are
//!   none. The cost is that the executable's own code and data load at a fixed address
//!   (shared libraries, stack and heap stay randomised). `AFTERCARE_PIE=1` keeps PIE.
//! - Startup code first. A cold start runs about 1,400 functions (570 KB) scattered over 9 MB
//!   of code, and each 64 KB the kernel maps in is a page fault (several µs in a VM). The functions
//!   listed in `functions/startup-functions.txt` go first, together, through a linker script
//!   that only inserts one output section before `.text`: the rest of the layout is the
//!   linker's own. The list names functions without their hash, so it matches in any build
//!   (x86_64 and arm64, `cargo build` and `sam build`); a name that no longer exists matches
//!   nothing and costs nothing. `infra/startup-functions.py` makes the list anew.
//!   `AFTERCARE_STARTUP_ORDER=0` links in the linker's order.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The output section the startup functions are gathered in.
const SECTION: &str = ".text.aftercare_startup";

fn main() {
    println!("cargo:rerun-if-env-changed=AFTERCARE_PIE");
    println!("cargo:rerun-if-env-changed=AFTERCARE_STARTUP_ORDER");
    if std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default() != "linux" {
        return;
    }
    if std::env::var_os("AFTERCARE_PIE").is_none_or(|v| v != "1") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    if std::env::var_os("AFTERCARE_STARTUP_ORDER").is_some_and(|v| v == "0") {
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let Some(list) = manifest.ancestors().map(|dir| dir.join("functions/startup-functions.txt")).find(|path| path.is_file()) else {
        println!("cargo:warning=functions/startup-functions.txt not found: bootstraps linked in the linker's order");
        return;
    };
    println!("cargo:rerun-if-changed={}", list.display());
    // The list is part of the repository: a file that cannot be read, or a bad line in it, is a
    // mistake to fix there, and stops the build with its reason.
    let text = std::fs::read_to_string(&list).unwrap_or_else(|e| panic!("cannot read {}: {e}", list.display()));
    let script = linker_script(&text).unwrap_or_else(|message| panic!("{}: {message}", list.display()));
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("startup.ld");
    if let Err(e) = std::fs::write(&out, script) {
        panic!("cannot write {}: {e}", out.display());
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", path_arg(&out));
}

/// The linker script: one output section, before `.text`, of every function whose symbol
/// starts with a listed name, in the list's order.
fn linker_script(list: &str) -> Result<String, String> {
    let mut script = format!("/* From functions/startup-functions.txt, by functions/link_bootstrap.rs. */\nSECTIONS\n{{\n  {SECTION} :\n  {{\n");
    let mut names = 0;
    for (number, line) in list.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        // A symbol name, never a pattern or script syntax of its own.
        if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '.'))) {
            return Err(format!("line {}: {bad:?} cannot be in a symbol name: {name:?}", number + 1));
        }
        // Each function is in a section of its own, `.text.<symbol>`, or `.text.unlikely.<symbol>`
        // for a `#[cold]` one (a vector's growth, a hash table's rehash). The listed name ends
        // where the symbol's hash begins (`17h` in Rust's legacy mangling); the hash and an LTO
        // suffix (`.llvm.<n>`) follow it.
        let _ = writeln!(script, "    *(.text.{name}* .text.unlikely.{name}*)");
        names += 1;
    }
    if names == 0 {
        return Err("lists no function".into());
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    Ok(script)
}

/// The linker takes the path as one argument, split on commas by `-Wl,`.
fn path_arg(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(',') {
        panic!("the build directory's path {text:?} has a comma, which a linker argument cannot carry");
    }
    text
}
