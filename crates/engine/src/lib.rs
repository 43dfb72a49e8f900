//! The engine: containers and their lifecycle, exec, logs, events, restart policies
//! and health checks, on top of crates/runtime (through berth-shim) and crates/image.
//! It knows nothing of HTTP: crates/api turns requests into calls here.
//!
//! - [`types`]: the Engine API's container configuration, named as Docker names it.
//! - [`spec`]: a container's configuration and its image's, rendered once into the OCI
//!   runtime spec (config.json) that the shim hands to the runtime.

pub mod changes;
pub mod container;
pub mod engine;
pub mod events;
pub mod exec;
pub mod health;
pub mod images;
pub mod local_images;
pub mod mounts;
pub mod names;
pub mod net;
pub mod ops;
pub mod restart;
pub mod shim_client;
pub mod spec;
pub mod store;
pub mod types;
pub mod user;
pub mod volumes;
