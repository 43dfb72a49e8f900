//! berth's OCI runtime library: turns an OCI bundle (config.json + rootfs) into an
//! isolated, limited process, following the OCI runtime specification.
//!
//! The library is used in-process by `berth-shim` and by the runc-compatible
//! `berth-runtime` binary. It owns every syscall that builds a container; it knows
//! nothing about images, the engine or HTTP.

pub mod bundle;
pub mod cgroups;
pub mod console;
pub mod container;
pub mod error;
pub mod hooks;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod state;
pub mod sync;

pub use error::{Result, RuntimeError};
