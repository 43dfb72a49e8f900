//! berthd: configuration from flags and daemon.json, listeners, start-up recovery.
//! The engine itself (containers, images) lives in crates/engine; the Engine API in
//! crates/api. This crate puts them together into the daemon process.

pub mod config;
pub mod daemon;
