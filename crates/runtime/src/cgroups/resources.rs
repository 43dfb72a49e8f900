//! Conversions between the spec's (v1-shaped) resource values and what the
//! kernel files take, shared by both drivers.

use super::CgroupError;

/// `pids.max`: a positive limit, or `max` for 0 and negative ("no limit").
pub fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    }
}

/// v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000), the mapping runc and
/// crun use so that the default 1024 lands near the default weight 100.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v1 blkio weight (10..1000) to v2 `io.weight` (1..10000).
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + ((weight - 10) * 9999) / 990
}

/// A byte limit for v2 files: negative is `max`.
pub fn v2_limit(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

/// The spec's `memory.swap` is memory+swap (v1 `memsw`); v2's `memory.swap.max`
/// is swap alone. `None` leaves the file alone; `Some(-1)` is `max`.
pub fn v2_swap(swap: Option<i64>, memory: Option<i64>) -> Result<Option<i64>, CgroupError> {
    let invalid = |reason: &str| CgroupError::InvalidValue {
        what: "linux.resources.memory.swap",
        reason: reason.to_string(),
    };
    match (swap, memory) {
        // Unlimited memory with swap unset means both unlimited, as on v1.
        (None, Some(-1)) => Ok(Some(-1)),
        (None, _) | (Some(0), _) => Ok(None),
        (Some(-1), _) => Ok(Some(-1)),
        (Some(_), None) | (Some(_), Some(-1)) | (Some(_), Some(0)) => {
            Err(invalid("a swap limit needs a memory limit"))
        }
        (Some(swap), Some(memory)) if memory < 0 || swap < memory => {
            Err(invalid("memory+swap must be at least the memory limit"))
        }
        (Some(swap), Some(memory)) => Ok(Some(swap - memory)),
    }
}

/// Hugepage sizes come from the spec and end up in file names.
pub fn check_page_size(size: &str) -> Result<(), CgroupError> {
    let ok = !size.is_empty() && size.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidValue {
            what: "linux.resources.hugepageLimits[].pageSize",
            reason: format!("{size:?} is not a page size like 2MB"),
        })
    }
}
