//! The Docker Engine API over HTTP/1.1: paths, version negotiation, JSON errors.
//! Handlers call a [`Backend`] (the engine); this crate knows HTTP, not containers.

pub mod container_ops;
pub mod containers;
pub mod distribution;
pub mod error;
pub mod exec;
pub mod images;
pub mod networks;
pub mod server;
pub mod system;
pub mod timestamp;
pub mod version;
pub mod volumes;

pub use error::ApiError;
pub use server::{serve_unix, Backend, Request, Response};
