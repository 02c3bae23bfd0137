//! Tests only: see tests/aws.rs.
