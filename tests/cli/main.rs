//! The `nimbus` executable as an operator uses it: real processes, real
//! signals, real HTTP over loopback, one module per area. The tests that
//! run the library in process are in `tests/all`.
//!
//! This test binary belongs to the `nimbus` package (see `host/Cargo.toml`)
//! because only that package's tests get `CARGO_BIN_EXE_nimbus`.

mod cluster;
mod commands;
mod crash;
mod dashboard;
mod deploy_commands;
mod new;
mod otlp;
mod queue_commands;
mod readme;
mod sql_command;
mod support;
mod top;
mod watch;
