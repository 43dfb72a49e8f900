//! Seccomp: compile the spec's filter once, load it as late as possible.
//!
//! STUB: being written.

use oci_spec::runtime::LinuxSeccomp;

use crate::error::Result;

/// A compiled filter, ready to load in the container process.
pub struct SeccompFilter {
    _private: (),
}

pub fn compile(seccomp: &LinuxSeccomp) -> Result<SeccompFilter> {
    let _ = seccomp;
    Ok(SeccompFilter { _private: () })
}

impl SeccompFilter {
    /// Install the filter on the calling thread (and, with TSYNC, the process).
    pub fn load(&self) -> Result<()> {
        Ok(())
    }
}
