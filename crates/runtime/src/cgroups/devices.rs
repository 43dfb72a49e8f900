//! Device access rules: the spec's `linux.resources.devices` in a checked form, and
//! their v1 rendering as writes to `devices.allow` / `devices.deny`.
//!
//! The v1 kernel applies the writes in order; a rule for all devices with all
//! access (`a`) resets the list: `devices.deny a` empties the allow list and
//! denies by default, `devices.allow a` allows everything. The v2 program in
//! [`super::ebpf`] gives the same answers with "the last matching rule wins".

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

pub const ACCESS_MKNOD: u8 = 1;
pub const ACCESS_READ: u8 = 2;
pub const ACCESS_WRITE: u8 = 4;
pub const ACCESS_ALL: u8 = ACCESS_MKNOD | ACCESS_READ | ACCESS_WRITE;

/// Which devices a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    All,
    Block,
    Char,
}

/// One checked device rule. `None` major or minor means any (`*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// `ACCESS_*` bits.
    pub access: u8,
}

impl DeviceRule {
    /// `None` for rules the device controller never sees (FIFOs).
    pub fn from_spec(rule: &LinuxDeviceCgroup) -> Result<Option<Self>, CgroupError> {
        let kind = match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => DeviceKind::All,
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
            LinuxDeviceType::P => return Ok(None),
        };
        let number = |n: Option<i64>, what: &'static str| -> Result<Option<u32>, CgroupError> {
            match n {
                None | Some(-1) => Ok(None),
                Some(v) => u32::try_from(v)
                    .map(Some)
                    .map_err(|_| CgroupError::InvalidValue {
                        what,
                        reason: format!("{v} is not a device number"),
                    }),
            }
        };
        Ok(Some(DeviceRule {
            allow: rule.allow(),
            kind,
            major: number(rule.major(), "linux.resources.devices[].major")?,
            minor: number(rule.minor(), "linux.resources.devices[].minor")?,
            access: parse_access(rule.access().as_deref().unwrap_or(""))?,
        }))
    }

    pub fn is_everything(&self) -> bool {
        self.kind == DeviceKind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACCESS_ALL
    }

    /// The line the v1 controller expects: `c 1:3 rwm`, or `a` for everything.
    pub fn v1_line(&self) -> String {
        if self.is_everything() {
            return "a".to_string();
        }
        let kind = match self.kind {
            DeviceKind::All => 'a',
            DeviceKind::Block => 'b',
            DeviceKind::Char => 'c',
        };
        let number = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |v| v.to_string());
        let mut access = String::new();
        for (bit, c) in [(ACCESS_READ, 'r'), (ACCESS_WRITE, 'w'), (ACCESS_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        format!(
            "{kind} {}:{} {access}",
            number(self.major),
            number(self.minor)
        )
    }
}

/// `rwm` letters into bits; empty means all, as in the spec.
pub fn parse_access(text: &str) -> Result<u8, CgroupError> {
    if text.is_empty() {
        return Ok(ACCESS_ALL);
    }
    let mut bits = 0;
    for c in text.chars() {
        bits |= match c {
            'r' => ACCESS_READ,
            'w' => ACCESS_WRITE,
            'm' => ACCESS_MKNOD,
            _ => {
                return Err(CgroupError::InvalidValue {
                    what: "linux.resources.devices[].access",
                    reason: format!("{text:?} is not a combination of r, w and m"),
                })
            }
        };
    }
    Ok(bits)
}

/// The spec's rules, checked, in order.
pub fn rules_from_spec(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, CgroupError> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        if let Some(r) = DeviceRule::from_spec(rule)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The v1 writes, in order: `(file, line)`. A leading deny-all becomes
/// `devices.deny a`, which clears whatever the parent allowed before the rules.
pub fn v1_writes(rules: &[DeviceRule]) -> Vec<(&'static str, String)> {
    rules
        .iter()
        .map(|r| {
            let file = if r.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            (file, r.v1_line())
        })
        .collect()
}
