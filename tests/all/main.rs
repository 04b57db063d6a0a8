//! Integration tests: real HTTP over loopback against the Nimbus server on
//! port 0, started through the library in this process, with real
//! components compiled from `functions/`, and the backends against real
//! brokers. The tests that run the `nimbus` executable are in `tests/cli`.

mod cache;
mod cluster;
mod config;
mod deploy;
mod gateway;
mod golden;
mod guests;
mod kv;
mod kv_backends;
mod kv_draft;
mod layering;
mod limits;
mod logs;
mod nats;
mod outbound;
mod p3;
mod postgres;
mod queue;
mod reuse;
mod routing;
mod sandbox;
mod services;
mod shop;
mod shutdown;
mod spin;
mod sqlite;
