//! Integration tests: real HTTP over loopback against the Nimbus server on
//! port 0, with real components compiled from `functions/`.

mod cache;
mod golden;
mod guests;
mod limits;
mod routing;
mod sandbox;
mod shutdown;
