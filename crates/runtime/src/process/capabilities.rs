//! Capabilities: the five sets (bounding, effective, permitted, inheritable, ambient).
//!
//! Direct prctl/capset calls rather than the `caps` crate: the crate sets each set with
//! its own capget+capset pair and in an order that can fail (effective before
//! permitted), while one capset writes permitted, effective and inheritable together.
//! Capabilities the running kernel does not know are ignored, as runc does.
//! Not owned here: the uid change between the two steps (see [`super::user`]).

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::error::{Result, RuntimeError};

/// The kernel's capability number for a spec capability.
pub fn number(cap: Capability) -> u32 {
    match cap {
        Capability::Chown => 0,
        Capability::DacOverride => 1,
        Capability::DacReadSearch => 2,
        Capability::Fowner => 3,
        Capability::Fsetid => 4,
        Capability::Kill => 5,
        Capability::Setgid => 6,
        Capability::Setuid => 7,
        Capability::Setpcap => 8,
        Capability::LinuxImmutable => 9,
        Capability::NetBindService => 10,
        Capability::NetBroadcast => 11,
        Capability::NetAdmin => 12,
        Capability::NetRaw => 13,
        Capability::IpcLock => 14,
        Capability::IpcOwner => 15,
        Capability::SysModule => 16,
        Capability::SysRawio => 17,
        Capability::SysChroot => 18,
        Capability::SysPtrace => 19,
        Capability::SysPacct => 20,
        Capability::SysAdmin => 21,
        Capability::SysBoot => 22,
        Capability::SysNice => 23,
        Capability::SysResource => 24,
        Capability::SysTime => 25,
        Capability::SysTtyConfig => 26,
        Capability::Mknod => 27,
        Capability::Lease => 28,
        Capability::AuditWrite => 29,
        Capability::AuditControl => 30,
        Capability::Setfcap => 31,
        Capability::MacOverride => 32,
        Capability::MacAdmin => 33,
        Capability::Syslog => 34,
        Capability::WakeAlarm => 35,
        Capability::BlockSuspend => 36,
        Capability::AuditRead => 37,
        Capability::Perfmon => 38,
        Capability::Bpf => 39,
        Capability::CheckpointRestore => 40,
    }
}

/// A set as the kernel's 64-bit mask.
fn mask(set: Option<&Capabilities>) -> u64 {
    set.into_iter()
        .flatten()
        .fold(0, |bits, cap| bits | 1u64 << number(*cap))
}

/// Mask of the capabilities this kernel knows. Probed with PR_CAPBSET_READ (EINVAL past
/// the last one) so that no file is read on the start path.
fn known_mask() -> u64 {
    // SAFETY: prctl with integer arguments only.
    let known = |cap: u32| unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong) } >= 0;
    // Binary search for the first unknown number in 0..64.
    let (mut low, mut high) = (0u32, 64u32);
    while low < high {
        let middle = (low + high) / 2;
        if known(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    if low >= 64 {
        u64::MAX
    } else {
        (1u64 << low) - 1
    }
}

/// Drop every capability not in the bounding set (needs CAP_SETPCAP; call before
/// changing user). Without a `bounding` list the set is left as it is.
pub fn apply_bounding(caps: &LinuxCapabilities) -> Result<()> {
    let Some(bounding) = caps.bounding() else {
        return Ok(());
    };
    let keep = mask(Some(bounding));
    for cap in 0..64u32 {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            match nix::errno::Errno::last() {
                // Past the kernel's last capability: nothing more to drop.
                nix::errno::Errno::EINVAL => break,
                errno => {
                    return Err(RuntimeError::Capabilities(format!(
                        "drop capability {cap} from the bounding set: {errno}"
                    )))
                }
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Set effective, permitted, inheritable and ambient sets (call after changing user).
/// A set the spec leaves out is emptied, as runc does.
pub fn apply_process_sets(caps: &LinuxCapabilities) -> Result<()> {
    let known = known_mask();
    let permitted = mask(caps.permitted().as_ref()) & known;
    let effective = mask(caps.effective().as_ref()) & known;
    let inheritable = mask(caps.inheritable().as_ref()) & known;
    capset(permitted, effective, inheritable)?;
    set_ambient(mask(caps.ambient().as_ref()) & known)
}

fn capset(permitted: u64, effective: u64, inheritable: u64) -> Result<()> {
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |bits: u64| [bits as u32, (bits >> 32) as u32];
    let (p, e, i) = (split(permitted), split(effective), split(inheritable));
    let data = [0, 1].map(|word| CapUserData {
        effective: e[word],
        permitted: p[word],
        inheritable: i[word],
    });
    // SAFETY: header and two data words laid out as the kernel's v3 ABI expects; both
    // live across the call and the kernel only reads the data.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapUserHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(RuntimeError::Capabilities(format!(
            "capset (permitted {permitted:#x}, effective {effective:#x}, inheritable \
             {inheritable:#x}): {}",
            nix::errno::Errno::last()
        )));
    }
    Ok(())
}

fn set_ambient(ambient: u64) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if cleared != 0 {
        let errno = nix::errno::Errno::last();
        // Kernels before 4.3 have no ambient set; there is then nothing to clear.
        if errno == nix::errno::Errno::EINVAL && ambient == 0 {
            return Ok(());
        }
        return Err(RuntimeError::Capabilities(format!(
            "clear ambient capabilities: {errno}"
        )));
    }
    for cap in (0..64u32).filter(|cap| ambient & (1u64 << cap) != 0) {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        if rc != 0 {
            match nix::errno::Errno::last() {
                // EINVAL: unknown to this kernel. EPERM: not in the permitted and
                // inheritable sets — runc's default spec lists ambient caps without
                // inheritable ones, and runc carries on; so do we.
                nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM => {}
                errno => {
                    return Err(RuntimeError::Capabilities(format!(
                        "raise ambient capability {cap} (it must be permitted and \
                         inheritable): {errno}"
                    )))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxCapabilitiesBuilder, UserBuilder};

    use super::*;
    use crate::process::test_support::in_child;
    use crate::process::user;

    /// The capability masks of the calling process, from /proc/self/status.
    pub(crate) fn status_masks() -> std::result::Result<[u64; 5], String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        let field = |name: &str| -> std::result::Result<u64, String> {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .ok_or_else(|| format!("no {name} in status"))?;
            u64::from_str_radix(line.trim(), 16).map_err(|e| e.to_string())
        };
        Ok([
            field("CapInh:")?,
            field("CapPrm:")?,
            field("CapEff:")?,
            field("CapBnd:")?,
            field("CapAmb:")?,
        ])
    }

    fn set(caps: &[Capability]) -> Capabilities {
        caps.iter().copied().collect()
    }

    #[test]
    fn numbers_cover_every_capability() {
        assert_eq!(number(Capability::CheckpointRestore), 40);
        assert_eq!(
            mask(Some(&set(&[Capability::Chown, Capability::Kill]))),
            0b10_0001
        );
        // This kernel knows at least CAP_CHECKPOINT_RESTORE (5.9+).
        assert!(known_mask() & (1 << 40) != 0);
        assert_eq!(known_mask() & (1 << 63), 0);
    }

    #[test]
    fn root_process_gets_exactly_the_given_sets() {
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[
                Capability::Chown,
                Capability::Kill,
                Capability::NetBindService,
                Capability::SysAdmin,
            ]))
            .permitted(set(&[
                Capability::Chown,
                Capability::Kill,
                Capability::NetBindService,
            ]))
            .effective(set(&[Capability::Chown, Capability::Kill]))
            .inheritable(set(&[Capability::Kill, Capability::NetBindService]))
            .ambient(set(&[Capability::NetBindService]))
            .build()
            .unwrap();
        let outcome = in_child(|| {
            apply_bounding(&caps).map_err(|e| e.to_string())?;
            apply_process_sets(&caps).map_err(|e| e.to_string())?;
            let got = status_masks()?;
            let want = [
                1 << 5 | 1 << 10,
                1 | 1 << 5 | 1 << 10,
                1 | 1 << 5,
                1 | 1 << 5 | 1 << 10 | 1 << 21,
                1 << 10,
            ];
            if got != want {
                return Err(format!("inh/prm/eff/bnd/amb {got:x?}, want {want:x?}"));
            }
            Ok(())
        });
        assert_eq!(outcome, Ok(()));
    }

    #[test]
    fn capabilities_survive_the_change_to_another_user() {
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[Capability::NetBindService, Capability::Kill]))
            .permitted(set(&[Capability::NetBindService, Capability::Kill]))
            .effective(set(&[Capability::NetBindService, Capability::Kill]))
            .inheritable(set(&[Capability::NetBindService]))
            .ambient(set(&[Capability::NetBindService]))
            .build()
            .unwrap();
        let user = UserBuilder::default()
            .uid(1000u32)
            .gid(1000u32)
            .build()
            .unwrap();
        let outcome = in_child(|| {
            apply_bounding(&caps).map_err(|e| e.to_string())?;
            user::apply(&user).map_err(|e| e.to_string())?;
            apply_process_sets(&caps).map_err(|e| e.to_string())?;
            let got = status_masks()?;
            let both = 1 << 5 | 1 << 10;
            let want = [1 << 10, both, both, both, 1 << 10];
            if got != want {
                return Err(format!("inh/prm/eff/bnd/amb {got:x?}, want {want:x?}"));
            }
            Ok(())
        });
        assert_eq!(outcome, Ok(()));
    }

    #[test]
    fn ambient_outside_inheritable_is_skipped() {
        let caps = LinuxCapabilitiesBuilder::default()
            .permitted(set(&[Capability::Kill]))
            .effective(set(&[Capability::Kill]))
            .inheritable(set(&[]))
            .ambient(set(&[Capability::Kill]))
            .build()
            .unwrap();
        // As runc: the raise fails (EPERM) and is skipped; the ambient set stays empty.
        let outcome = in_child(|| {
            apply_process_sets(&caps).map_err(|e| e.to_string())?;
            let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
            match status.lines().find(|l| l.starts_with("CapAmb:")) {
                Some(l) if l.ends_with("0000000000000000") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        assert_eq!(outcome, Ok(()));
    }
}
