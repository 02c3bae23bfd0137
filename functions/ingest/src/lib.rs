//! Ingest Lambda: API Gateway HTTP API (payload v2) → the shared HTTP API.

pub mod handler;
