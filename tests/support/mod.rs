//! Shared test fixtures.

pub mod nshost;
