//! Aftercare's core: everything that is not an entry point.
//!
//! `domain`, `flow`, `engine` and `render` do no I/O. `service` reaches the world only
//! through `ports`; adapters (`memory`, `local`, `aws`) implement ports and nothing else.

pub mod cost;
pub mod domain;
pub mod engine;
pub mod flow;
pub mod memory;
pub mod ports;
pub mod render;
pub mod report;
pub mod service;
pub mod simulation;
pub mod stats;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "local")]
pub mod local;
#[cfg(any(test, feature = "testing"))]
pub mod store_contract;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
