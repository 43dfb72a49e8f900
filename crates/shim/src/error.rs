//! The shim's error type: what went wrong, with the object it concerns. Start-up
//! errors are reported to berthd on the readiness pipe as their Display text.

use berth_runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("container {id:?}: {message}")]
    Container { id: String, message: String },
}

impl ShimError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ShimError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn sys(context: impl Into<String>, errno: nix::errno::Errno) -> Self {
        ShimError::io(context, std::io::Error::from(errno))
    }
}
