//! The container process's identity and limits: user, capabilities, rlimits, seccomp,
//! and finding the executable.

pub mod capabilities;
pub mod rlimits;
pub mod seccomp;
pub mod seccomp_cache;
pub mod user;

#[cfg(test)]
mod test_support;
