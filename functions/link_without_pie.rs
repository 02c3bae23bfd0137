//! Build script shared by the Lambda binaries (and the cold-start floor, so it is built the
//! same way): link them as position-dependent executables. A PIE bootstrap has ~85,000
//! relative relocations that the dynamic loader applies at every cold start, dirtying the
//! pages they touch; linked without PIE there are none (see BENCHMARKS.md, cold start).
//! The cost is that the executable's own code and data load at a fixed address (shared
//! libraries, stack and heap stay randomised). `AFTERCARE_PIE=1` at build time keeps PIE.

fn main() {
    println!("cargo:rerun-if-env-changed=AFTERCARE_PIE");
    if std::env::var_os("AFTERCARE_PIE").is_some_and(|v| v == "1") {
        return;
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
