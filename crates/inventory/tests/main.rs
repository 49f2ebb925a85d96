//! The inventory crate's integration tests, one binary (autotests = false).

mod ansible;
mod load;
