//! End-to-end tests (tests/aws.rs), the cold-start benchmark (benches/cold_start.rs) and its floor binary (src/bin/coldstart_baseline.rs).
