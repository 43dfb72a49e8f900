//! POSIX rlimits of the container process.
//!
//! STUB: being written.

use oci_spec::runtime::PosixRlimit;

use crate::error::Result;

pub fn apply(rlimits: &[PosixRlimit]) -> Result<()> {
    let _ = rlimits;
    Ok(())
}
