//! Triggers: what makes a function run. One module per kind.

pub mod http;
pub mod queue;
