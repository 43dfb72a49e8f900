//! The runtime's error type. Each variant carries the object it concerns so that the
//! engine above can turn it into a precise message and status.

use std::path::PathBuf;

use crate::cgroups::CgroupError;

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("container with id {0:?} already exists")]
    ContainerExists(String),
    #[error("container {0:?} does not exist")]
    ContainerNotFound(String),
    #[error("container {id:?} is {status}: {what}")]
    BadStatus {
        id: String,
        status: String,
        what: &'static str,
    },
    #[error("bundle path {0:?} must be absolute")]
    RelativeBundle(PathBuf),
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config.json: field `{field}`: {message}")]
    InvalidConfig { field: String, message: String },
    #[error("rootfs {0:?} does not exist or is not a directory")]
    MissingRootfs(PathBuf),
    #[error("{context}: {source}")]
    Sys { context: String, source: nix::Error },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("rootfs: {0}")]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error("cgroups: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("{0}")]
    Seccomp(String),
    #[error("{0}")]
    Capabilities(String),
    #[error("hook {path:?} ({phase}): {message}")]
    Hook {
        phase: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("container init failed: {0}")]
    Init(String),
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// A syscall error with what we were doing when it happened.
    pub fn sys(context: impl Into<String>, source: nix::Error) -> Self {
        RuntimeError::Sys {
            context: context.into(),
            source,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        RuntimeError::InvalidConfig {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Attach a context string to syscall and io results.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| RuntimeError::sys(what(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| RuntimeError::io(what(), e))
    }
}
