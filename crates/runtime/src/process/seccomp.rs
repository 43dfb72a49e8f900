//! Seccomp: compile the spec's filter to classic BPF once, load it as late as possible.
//!
//! Design: libseccomp (what runc and crun use) turns `linux.seccomp` into a BPF program
//! in the runtime *before* it forks the container init; the program is exported
//! (`seccomp_export_bpf`, through a memfd since Debian's libseccomp 2.5 has no
//! in-memory export) into a plain `Vec<sock_filter>`. The child then needs no library
//! state, no allocation and no parsing: loading is one `seccomp(SECCOMP_SET_MODE_FILTER)`
//! syscall. Compiling a large multi-arch profile costs milliseconds, so callers that
//! start containers one process at a time should go through
//! [`super::seccomp_cache::compile_cached`], and a long-lived one may keep the
//! [`SeccompFilter`] (or its [`SeccompFilter::to_bytes`]).
//!
//! Semantics follow runc: syscall names unknown to libseccomp are skipped, rules whose
//! action equals the default action are skipped (libseccomp rejects them), and a rule
//! whose arguments repeat an index is split into one rule per argument. Not owned here:
//! `no_new_privs`, and when to load (the container init decides).

use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::error::{Result, RuntimeError};

/// The kernel refuses longer programs (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

/// Arguments a syscall can have, and so the highest index a rule may test plus one.
const MAX_SYSCALL_ARGS: usize = 6;

/// Size of one `struct sock_filter` as exported: u16 code, u8 jt, u8 jf, u32 k.
const INSTRUCTION_SIZE: usize = 8;

// The flags are kept as u64 and passed as seccomp(2)'s unsigned long.
const _: () = assert!(std::mem::size_of::<libc::c_ulong>() == 8);

/// A compiled filter, ready to load in the container process. A plain value: it
/// survives fork and needs nothing from libseccomp to be loaded.
#[derive(Clone)]
pub struct SeccompFilter {
    program: Vec<libc::sock_filter>,
    /// SECCOMP_FILTER_FLAG_* bits passed to seccomp(2) (an unsigned long there).
    flags: u64,
}

impl std::fmt::Debug for SeccompFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeccompFilter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .finish()
    }
}

fn seccomp_error(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Seccomp(message.into())
}

/// Compile the spec's filter into a BPF program (done once, in the runtime).
pub fn compile(seccomp: &LinuxSeccomp) -> Result<SeccompFilter> {
    let default_action = action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "defaultAction",
    )?;
    let mut context = ScmpFilterContext::new(default_action)
        .map_err(|e| seccomp_error(format!("seccomp: create filter: {e}")))?;
    // A binary tree of syscall numbers instead of a linear chain: with a few hundred
    // rules (Docker's default profile) every syscall in the container pays log(n)
    // comparisons instead of n. Older libseccomp lacks it; the filter is then linear.
    let _ = context.set_ctl_optimize(2);
    for arch in seccomp.architectures().iter().flatten() {
        context
            .add_arch(scmp_arch(*arch))
            .map_err(|e| seccomp_error(format!("seccomp: add architecture {arch}: {e}")))?;
    }
    for rule in seccomp.syscalls().iter().flatten() {
        add_rule(&mut context, rule, default_action)?;
    }
    let program = export(&context)?;
    let flags = seccomp
        .flags()
        .iter()
        .flatten()
        .map(|flag| filter_flag(*flag))
        .fold(0, |all, bit| all | bit);
    Ok(SeccompFilter { program, flags })
}

fn add_rule(
    context: &mut ScmpFilterContext,
    rule: &LinuxSyscall,
    default_action: ScmpAction,
) -> Result<()> {
    let names = rule.names();
    let what = names.first().map(String::as_str).unwrap_or("<no name>");
    let rule_action = action(rule.action(), rule.errno_ret(), what)?;
    if rule_action == default_action {
        return Ok(());
    }
    let args = rule.args().as_deref().unwrap_or(&[]);
    let mut conditions = Vec::with_capacity(args.len());
    let mut seen = [false; MAX_SYSCALL_ARGS];
    let mut repeated_index = false;
    for arg in args {
        conditions.push(condition(arg, what)?);
        repeated_index |= std::mem::replace(&mut seen[arg.index()], true);
    }
    for name in names {
        // As runc: a name this libseccomp does not know is a syscall the kernel cannot
        // have either (or a profile for another arch); nothing to filter.
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            continue;
        };
        let added = if conditions.is_empty() {
            context.add_rule(rule_action, syscall).map(|_| ())
        } else if repeated_index {
            // libseccomp rejects two comparisons on one argument in a rule; runc then
            // adds each comparison as its own rule, so they match as alternatives.
            conditions.iter().try_for_each(|c| {
                context
                    .add_rule_conditional(rule_action, syscall, std::slice::from_ref(c))
                    .map(|_| ())
            })
        } else {
            context
                .add_rule_conditional(rule_action, syscall, &conditions)
                .map(|_| ())
        };
        added.map_err(|e| seccomp_error(format!("seccomp: add rule for syscall {name}: {e}")))?;
    }
    Ok(())
}

fn condition(arg: &LinuxSeccompArg, syscall: &str) -> Result<ScmpArgCompare> {
    if arg.index() >= MAX_SYSCALL_ARGS {
        return Err(seccomp_error(format!(
            "seccomp: syscall {syscall}: argument index {} is out of range (0-5)",
            arg.index()
        )));
    }
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // The spec puts the mask in `value` and the expected result in `valueTwo`.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let datum = arg.value_two().unwrap_or(0);
            return Ok(ScmpArgCompare::new(
                arg.index() as u32,
                ScmpCompareOp::MaskedEqual(arg.value()),
                datum,
            ));
        }
    };
    Ok(ScmpArgCompare::new(arg.index() as u32, op, arg.value()))
}

fn action(action: LinuxSeccompAction, errno_ret: Option<u32>, what: &str) -> Result<ScmpAction> {
    let data = |kind: &str| -> Result<u16> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(value) => u16::try_from(value).map_err(|_| {
                seccomp_error(format!(
                    "seccomp: {what}: {kind} value {value} does not fit in 16 bits"
                ))
            }),
        }
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(data("errnoRet")?)),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(data("trace")?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(seccomp_error(format!(
                "seccomp: {what}: SCMP_ACT_NOTIFY is not supported (no seccomp listener)"
            )))
        }
    })
}

fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn filter_flag(flag: LinuxSeccompFilterFlag) -> u64 {
    match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        // Only meaningful with a notify listener, which we never create; the kernel
        // would refuse it without one.
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
    }
}

/// Export the context's BPF through a memfd and decode it into instructions.
fn export(context: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    // SAFETY: the name is a NUL-terminated literal; the returned fd is checked.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(RuntimeError::sys(
            "seccomp: memfd_create",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    context
        .export_bpf(&file)
        .map_err(|e| seccomp_error(format!("seccomp: export BPF: {e}")))?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(|e| RuntimeError::io("seccomp: read exported BPF", e))?;
    decode(&bytes)
}

fn decode(bytes: &[u8]) -> Result<Vec<libc::sock_filter>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(INSTRUCTION_SIZE) {
        return Err(seccomp_error(format!(
            "seccomp: BPF program of {} bytes is not a whole number of instructions",
            bytes.len()
        )));
    }
    let count = bytes.len() / INSTRUCTION_SIZE;
    if count > MAX_INSTRUCTIONS {
        return Err(seccomp_error(format!(
            "seccomp: filter has {count} BPF instructions, the kernel allows {MAX_INSTRUCTIONS}"
        )));
    }
    Ok(bytes
        .chunks_exact(INSTRUCTION_SIZE)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect())
}

impl SeccompFilter {
    /// Rebuild a filter from [`SeccompFilter::to_bytes`] output (for callers that cache
    /// compiled profiles).
    pub fn from_bytes(bytes: &[u8], flags: u64) -> Result<Self> {
        Ok(SeccompFilter {
            program: decode(bytes)?,
            flags,
        })
    }

    /// The program as the kernel's `struct sock_filter` array, in native byte order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.program.len() * INSTRUCTION_SIZE);
        for insn in &self.program {
            bytes.extend_from_slice(&insn.code.to_ne_bytes());
            bytes.push(insn.jt);
            bytes.push(insn.jf);
            bytes.extend_from_slice(&insn.k.to_ne_bytes());
        }
        bytes
    }

    /// SECCOMP_FILTER_FLAG_* bits used when loading.
    pub fn flags(&self) -> u64 {
        self.flags
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// Install the filter on the calling thread (and, with TSYNC, the process). Needs
    /// either no_new_privs or CAP_SYS_ADMIN; does not allocate.
    pub fn load(&self) -> Result<()> {
        let program = libc::sock_fprog {
            // `decode` capped the length at MAX_INSTRUCTIONS.
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `program` points at `self.program`, which outlives the call; the
        // kernel copies the instructions and does not write through the pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &program as *const libc::sock_fprog,
            )
        };
        match rc {
            0 => Ok(()),
            rc if rc > 0 => Err(seccomp_error(format!(
                "seccomp: load filter: thread {rc} cannot be synchronized (TSYNC)"
            ))),
            _ => Err(RuntimeError::sys(
                "seccomp: load filter",
                nix::errno::Errno::last(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    use super::*;
    use crate::process::test_support::in_child;

    fn rule(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>) -> LinuxSyscall {
        let mut builder = LinuxSyscallBuilder::default()
            .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .action(action);
        if let Some(errno) = errno {
            builder = builder.errno_ret(errno);
        }
        builder.build().unwrap()
    }

    fn arg(
        index: usize,
        op: LinuxSeccompOperator,
        value: u64,
        two: Option<u64>,
    ) -> LinuxSeccompArg {
        let mut builder = LinuxSeccompArgBuilder::default()
            .index(index)
            .op(op)
            .value(value);
        if let Some(two) = two {
            builder = builder.value_two(two);
        }
        builder.build().unwrap()
    }

    fn allow_by_default(rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .architectures(vec![
                Arch::ScmpArchX86_64,
                Arch::ScmpArchX86,
                Arch::ScmpArchX32,
            ])
            .syscalls(rules)
            .build()
            .unwrap()
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    fn no_new_privs() -> std::result::Result<(), String> {
        // SAFETY: prctl with integer arguments.
        match unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } {
            0 => Ok(()),
            _ => Err("PR_SET_NO_NEW_PRIVS failed".into()),
        }
    }

    #[test]
    fn compiles_to_bpf_and_round_trips() {
        let spec = allow_by_default(vec![
            rule(
                &["getcwd", "no_such_syscall_xyz"],
                LinuxSeccompAction::ScmpActErrno,
                Some(42),
            ),
            rule(&["uname"], LinuxSeccompAction::ScmpActAllow, None),
        ]);
        let filter = compile(&spec).unwrap();
        assert!(filter.len() > 4, "program too short: {filter:?}");
        let again = SeccompFilter::from_bytes(&filter.to_bytes(), filter.flags()).unwrap();
        assert_eq!(again.to_bytes(), filter.to_bytes());
    }

    #[test]
    fn maps_flags() {
        let spec = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .flags(vec![
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
            ])
            .build()
            .unwrap();
        let filter = compile(&spec).unwrap();
        assert_eq!(filter.flags(), 1 | 4);
    }

    #[test]
    fn notify_is_rejected_with_the_syscall_name() {
        let spec = allow_by_default(vec![rule(
            &["mkdir"],
            LinuxSeccompAction::ScmpActNotify,
            None,
        )]);
        let err = compile(&spec).unwrap_err().to_string();
        assert!(err.contains("mkdir") && err.contains("NOTIFY"), "{err}");
    }

    #[test]
    fn bad_argument_index_names_the_syscall() {
        let mut bad = rule(&["personality"], LinuxSeccompAction::ScmpActErrno, None);
        bad.set_args(Some(vec![arg(6, LinuxSeccompOperator::ScmpCmpEq, 1, None)]));
        let err = compile(&allow_by_default(vec![bad]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("personality"), "{err}");
    }

    #[test]
    fn errno_rule_returns_the_given_errno() {
        let spec = allow_by_default(vec![rule(
            &["getcwd"],
            LinuxSeccompAction::ScmpActErrno,
            Some(42),
        )]);
        let filter = compile(&spec).unwrap();
        let outcome = in_child(|| {
            no_new_privs()?;
            filter.load().map_err(|e| e.to_string())?;
            let mut buf = [0u8; 256];
            // SAFETY: `buf` is a valid buffer of the given length.
            let ret = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
            if !ret.is_null() || errno() != 42 {
                return Err(format!("getcwd: null={} errno={}", ret.is_null(), errno()));
            }
            Ok(())
        });
        assert_eq!(outcome, Ok(()));
    }

    #[test]
    fn default_errno_applies_and_allowed_syscalls_run() {
        // Deny everything by default with errnoRet 38 (ENOSYS), allow what the child
        // needs to report and exit.
        let spec = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .default_errno_ret(38u32)
            .syscalls(vec![rule(
                &[
                    "write",
                    "exit",
                    "exit_group",
                    "rt_sigreturn",
                    "munmap",
                    "brk",
                ],
                LinuxSeccompAction::ScmpActAllow,
                None,
            )])
            .build()
            .unwrap();
        let filter = compile(&spec).unwrap();
        let outcome = in_child(|| {
            no_new_privs()?;
            filter.load().map_err(|e| e.to_string())?;
            // SAFETY: getppid has no arguments; under the filter it fails with ENOSYS.
            let ret = unsafe { libc::syscall(libc::SYS_getppid) };
            if ret != -1 || errno() != 38 {
                return Err(format!("getppid returned {ret}, errno {}", errno()));
            }
            Ok(())
        });
        assert_eq!(outcome, Ok(()));
    }

    #[test]
    fn argument_filters_match_only_their_values() {
        const PER_LINUX32: u64 = 0x0008;
        const QUERY: u64 = 0xffff_ffff;
        let mut deny = rule(&["personality"], LinuxSeccompAction::ScmpActErrno, Some(42));
        deny.set_args(Some(vec![arg(
            0,
            LinuxSeccompOperator::ScmpCmpEq,
            PER_LINUX32,
            None,
        )]));
        // Masked: deny flock only when the LOCK_NB bit (4) is set in arg1.
        let mut masked = rule(&["flock"], LinuxSeccompAction::ScmpActErrno, Some(43));
        masked.set_args(Some(vec![arg(
            1,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            libc::LOCK_NB as u64,
            Some(libc::LOCK_NB as u64),
        )]));
        // Two comparisons on one index: split into alternatives, as runc does.
        let mut either = rule(&["dup"], LinuxSeccompAction::ScmpActErrno, Some(44));
        either.set_args(Some(vec![
            arg(0, LinuxSeccompOperator::ScmpCmpEq, 1000, None),
            arg(0, LinuxSeccompOperator::ScmpCmpEq, 1001, None),
        ]));
        let filter = compile(&allow_by_default(vec![deny, masked, either])).unwrap();
        let outcome = in_child(|| {
            no_new_privs()?;
            filter.load().map_err(|e| e.to_string())?;
            // SAFETY: raw syscalls with integer arguments only.
            let (query, denied) = unsafe {
                (
                    libc::syscall(libc::SYS_personality, QUERY),
                    libc::syscall(libc::SYS_personality, PER_LINUX32),
                )
            };
            if query == -1 {
                return Err(format!("personality query denied, errno {}", errno()));
            }
            if denied != -1 || errno() != 42 {
                return Err(format!(
                    "personality(PER_LINUX32) = {denied}, errno {}",
                    errno()
                ));
            }
            let file = std::fs::File::open("/proc/self/status").map_err(|e| e.to_string())?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            // SAFETY: flock on an fd we own; unlocking is harmless.
            let (blocking, non_blocking) = unsafe {
                (
                    libc::flock(fd, libc::LOCK_UN),
                    libc::flock(fd, libc::LOCK_UN | libc::LOCK_NB),
                )
            };
            if blocking != 0 {
                return Err(format!("flock(LOCK_UN) denied, errno {}", errno()));
            }
            if non_blocking != -1 || errno() != 43 {
                return Err(format!(
                    "flock(LOCK_NB) = {non_blocking}, errno {}",
                    errno()
                ));
            }
            for fd in [1000, 1001] {
                // SAFETY: dup of a number; the filter answers before the kernel looks.
                let ret = unsafe { libc::dup(fd) };
                if ret != -1 || errno() != 44 {
                    return Err(format!("dup({fd}) = {ret}, errno {}", errno()));
                }
            }
            // SAFETY: dup of a closed fd number: EBADF from the kernel, not the filter.
            let ret = unsafe { libc::dup(1002) };
            if ret != -1 || errno() != libc::EBADF {
                return Err(format!("dup(1002) = {ret}, errno {}", errno()));
            }
            Ok(())
        });
        assert_eq!(outcome, Ok(()));
    }
}
