//! Integration tests: real HTTP over loopback against the Nimbus server on
//! port 0, with real components compiled from `functions/`.

mod cache;
mod config;
mod deploy;
mod gateway;
mod golden;
mod guests;
mod kv;
mod layering;
mod limits;
mod logs;
mod outbound;
mod queue;
mod reuse;
mod routing;
mod sandbox;
mod services;
mod shop;
mod shutdown;
