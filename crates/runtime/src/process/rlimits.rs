//! POSIX rlimits of the container process (`process.rlimits`).
//!
//! Owns only the setrlimit calls; the order relative to the other identity steps is
//! the container init's business.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::error::{Result, RuntimeError};

/// Set every rlimit of the spec on the calling process, in spec order.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<()> {
    for limit in rlimits {
        set(limit)?;
    }
    Ok(())
}

fn set(limit: &PosixRlimit) -> Result<()> {
    let typ = limit.typ();
    let value = libc::rlimit {
        rlim_cur: limit.soft(),
        rlim_max: limit.hard(),
    };
    // SAFETY: `value` is a valid rlimit that outlives the call; the resource is one of
    // the kernel's RLIMIT_* constants.
    if unsafe { libc::setrlimit(resource(typ), &value) } != 0 {
        return Err(RuntimeError::sys(
            format!(
                "setrlimit {} (soft {}, hard {})",
                name(typ),
                limit.soft(),
                limit.hard()
            ),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// The libc type of the resource argument differs between glibc and musl.
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn resource(typ: PosixRlimitType) -> Resource {
    match typ {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// The spec's spelling, for error messages.
fn name(typ: PosixRlimitType) -> &'static str {
    match typ {
        PosixRlimitType::RlimitCpu => "RLIMIT_CPU",
        PosixRlimitType::RlimitFsize => "RLIMIT_FSIZE",
        PosixRlimitType::RlimitData => "RLIMIT_DATA",
        PosixRlimitType::RlimitStack => "RLIMIT_STACK",
        PosixRlimitType::RlimitCore => "RLIMIT_CORE",
        PosixRlimitType::RlimitRss => "RLIMIT_RSS",
        PosixRlimitType::RlimitNproc => "RLIMIT_NPROC",
        PosixRlimitType::RlimitNofile => "RLIMIT_NOFILE",
        PosixRlimitType::RlimitMemlock => "RLIMIT_MEMLOCK",
        PosixRlimitType::RlimitAs => "RLIMIT_AS",
        PosixRlimitType::RlimitLocks => "RLIMIT_LOCKS",
        PosixRlimitType::RlimitSigpending => "RLIMIT_SIGPENDING",
        PosixRlimitType::RlimitMsgqueue => "RLIMIT_MSGQUEUE",
        PosixRlimitType::RlimitNice => "RLIMIT_NICE",
        PosixRlimitType::RlimitRtprio => "RLIMIT_RTPRIO",
        PosixRlimitType::RlimitRttime => "RLIMIT_RTTIME",
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::PosixRlimitBuilder;

    use super::*;
    use crate::process::test_support::in_child;

    fn limit(typ: PosixRlimitType, soft: u64, hard: u64) -> PosixRlimit {
        PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .unwrap()
    }

    #[test]
    fn sets_soft_and_hard_limits() {
        let code = in_child(|| {
            apply(&[
                limit(PosixRlimitType::RlimitNofile, 123, 456),
                limit(PosixRlimitType::RlimitCore, 0, 0),
            ])
            .map_err(|e| e.to_string())?;
            let mut got = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `got` is a valid out-pointer.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut got) };
            if (got.rlim_cur, got.rlim_max) != (123, 456) {
                return Err(format!("nofile {} {}", got.rlim_cur, got.rlim_max));
            }
            Ok(())
        });
        assert_eq!(code, Ok(()));
    }

    #[test]
    fn error_names_the_rlimit() {
        let code = in_child(
            || match apply(&[limit(PosixRlimitType::RlimitNofile, 10, 5)]) {
                Err(e) if e.to_string().contains("RLIMIT_NOFILE") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        assert_eq!(code, Ok(()));
    }
}
