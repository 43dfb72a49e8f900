//! Spec mounts: the option-string table, root propagation, and mounting each
//! `mounts[]` entry at its destination resolved inside the rootfs (bind with its
//! read-only remount, cgroup on v1 and v2 hosts, propagation after the mount).

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

use super::safe_path::Create;
use super::syscall::{Kind, Syscall, Target};
use super::{RootfsError, RootfsOptions};

/// What one option string means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOption {
    /// Set these flags.
    Set(MsFlags),
    /// Clear these flags (`rw`, `suid`, `exec` …).
    Clear(MsFlags),
    /// A propagation change applied with its own mount(2) after the mount.
    Propagation(MsFlags),
}

/// The option table (runc's). A `match` compiles to a lookup built once by the compiler;
/// anything not here is filesystem data (`mode=755`, `size=64m` …).
pub fn lookup_option(option: &str) -> Option<MountOption> {
    use MountOption::{Clear, Propagation, Set};
    let rec = MsFlags::MS_REC;
    Some(match option {
        "defaults" => Set(MsFlags::empty()),
        "rw" => Clear(MsFlags::MS_RDONLY),
        "ro" => Set(MsFlags::MS_RDONLY),
        "suid" => Clear(MsFlags::MS_NOSUID),
        "nosuid" => Set(MsFlags::MS_NOSUID),
        "dev" => Clear(MsFlags::MS_NODEV),
        "nodev" => Set(MsFlags::MS_NODEV),
        "exec" => Clear(MsFlags::MS_NOEXEC),
        "noexec" => Set(MsFlags::MS_NOEXEC),
        "sync" => Set(MsFlags::MS_SYNCHRONOUS),
        "async" => Clear(MsFlags::MS_SYNCHRONOUS),
        "dirsync" => Set(MsFlags::MS_DIRSYNC),
        "remount" => Set(MsFlags::MS_REMOUNT),
        "mand" => Set(MsFlags::MS_MANDLOCK),
        "nomand" => Clear(MsFlags::MS_MANDLOCK),
        "atime" => Clear(MsFlags::MS_NOATIME),
        "noatime" => Set(MsFlags::MS_NOATIME),
        "diratime" => Clear(MsFlags::MS_NODIRATIME),
        "nodiratime" => Set(MsFlags::MS_NODIRATIME),
        "relatime" => Set(MsFlags::MS_RELATIME),
        "norelatime" => Clear(MsFlags::MS_RELATIME),
        "strictatime" => Set(MsFlags::MS_STRICTATIME),
        "nostrictatime" => Clear(MsFlags::MS_STRICTATIME),
        "iversion" => Set(MsFlags::MS_I_VERSION),
        "noiversion" => Clear(MsFlags::MS_I_VERSION),
        "lazytime" => Set(MsFlags::MS_LAZYTIME),
        "nolazytime" => Clear(MsFlags::MS_LAZYTIME),
        "silent" => Set(MsFlags::MS_SILENT),
        "loud" => Clear(MsFlags::MS_SILENT),
        "nosymfollow" => Set(MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
        "symfollow" => Clear(MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
        "bind" => Set(MsFlags::MS_BIND),
        "rbind" => Set(MsFlags::MS_BIND | rec),
        "shared" => Propagation(MsFlags::MS_SHARED),
        "rshared" => Propagation(MsFlags::MS_SHARED | rec),
        "slave" => Propagation(MsFlags::MS_SLAVE),
        "rslave" => Propagation(MsFlags::MS_SLAVE | rec),
        "private" => Propagation(MsFlags::MS_PRIVATE),
        "rprivate" => Propagation(MsFlags::MS_PRIVATE | rec),
        "unbindable" => Propagation(MsFlags::MS_UNBINDABLE),
        "runbindable" => Propagation(MsFlags::MS_UNBINDABLE | rec),
        _ => return None,
    })
}

const ATIME_OPTIONS: &[&str] = &[
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
];

/// runc's recursive variants of the flag options.
const RECURSIVE_OPTIONS: &[&str] = &[
    "rro",
    "rrw",
    "rsuid",
    "rnosuid",
    "rdev",
    "rnodev",
    "rexec",
    "rnoexec",
    "ratime",
    "rnoatime",
    "rdiratime",
    "rnodiratime",
    "rrelatime",
    "rnorelatime",
    "rstrictatime",
    "rnostrictatime",
    "rsymfollow",
    "rnosymfollow",
];

/// A mount's `options` split into flags, propagation changes and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
    /// Some atime option was given: do not carry the source mount's atime flags over.
    pub atime_given: bool,
}

impl MountOptions {
    pub fn parse(options: &[String]) -> MountOptions {
        let mut out = MountOptions {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            atime_given: false,
        };
        for option in options {
            if ATIME_OPTIONS.contains(&option.as_str()) {
                out.atime_given = true;
            }
            match lookup_option(option) {
                Some(MountOption::Set(f)) => out.flags |= f,
                Some(MountOption::Clear(f)) => out.flags &= !f,
                Some(MountOption::Propagation(f)) => out.propagation.push(f),
                None => out.data.push(option.clone()),
            }
        }
        out
    }

    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn data(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// Flags a bind mount must be remounted with (the first bind ignores them).
    fn remount_flags(&self) -> MsFlags {
        self.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
    }
}

/// The propagation of `/` named by `linux.rootfsPropagation`.
pub fn parse_propagation(value: &str) -> Result<MsFlags, RootfsError> {
    match lookup_option(value) {
        Some(MountOption::Propagation(f)) => Ok(f),
        _ => Err(RootfsError::Invalid {
            destination: PathBuf::from("/"),
            reason: format!("unknown rootfsPropagation {value:?}"),
        }),
    }
}

/// One line of /proc/self/mountinfo, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub optional: Vec<String>,
    pub fstype: String,
    pub super_options: String,
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let after: Vec<&str> = after.split(' ').collect();
            if fields.len() < 6 || after.len() < 3 {
                return None;
            }
            Some(MountInfo {
                root: PathBuf::from(unescape(fields[3])),
                mount_point: PathBuf::from(unescape(fields[4])),
                optional: fields[6..].iter().map(|s| s.to_string()).collect(),
                fstype: after[0].to_string(),
                super_options: after[2].to_string(),
            })
        })
        .collect()
}

/// The mount that holds `path`: the last-mounted one with the longest prefix.
pub fn mount_holding<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    mounts
        .iter()
        .rev()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
}

fn read(sys: &dyn Syscall, path: &str) -> Result<String, RootfsError> {
    sys.read_to_string(Path::new(path))
        .map_err(|source| RootfsError::Read {
            path: PathBuf::from(path),
            source,
        })
}

/// Propagation of `/`, then the rootfs's parent mount made private if shared
/// (pivot_root refuses a shared parent), then the rootfs bound onto itself so it is
/// a mount point.
pub fn prepare_root(
    sys: &dyn Syscall,
    rootfs: &Path,
    propagation: Option<MsFlags>,
) -> Result<(), RootfsError> {
    let flags = propagation.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    sys.mount(None, Path::new("/"), None, flags, None)
        .map_err(|source| RootfsError::Sys {
            what: "set propagation of /".into(),
            path: PathBuf::from("/"),
            source,
        })?;
    let mounts = parse_mountinfo(&read(sys, "/proc/self/mountinfo")?);
    if let Some(parent) = mount_holding(&mounts, rootfs) {
        if parent.optional.iter().any(|o| o.starts_with("shared:")) {
            sys.mount(None, &parent.mount_point, None, MsFlags::MS_PRIVATE, None)
                .map_err(|source| RootfsError::Sys {
                    what: "make the rootfs's parent mount private".into(),
                    path: parent.mount_point.clone(),
                    source,
                })?;
        }
    }
    sys.mount(
        Some(rootfs),
        rootfs,
        Some("bind"),
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|source| RootfsError::Sys {
        what: "bind the rootfs onto itself".into(),
        path: rootfs.to_path_buf(),
        source,
    })
}

/// /proc files that may be mounted over (lxcfs and friends), as runc allows.
const PROC_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Refuse mounts over /proc (other than proc itself and the allowed files): a bind
/// over /proc/self/... could hand the container host objects.
fn check_proc_destination(
    inner: &Path,
    fstype: &str,
    destination: &Path,
) -> Result<(), RootfsError> {
    if inner == Path::new("/proc") {
        if fstype == "proc" {
            return Ok(());
        }
    } else if !inner.starts_with("/proc") || PROC_ALLOWED.iter().any(|p| inner == Path::new(p)) {
        return Ok(());
    }
    Err(RootfsError::Invalid {
        destination: destination.to_path_buf(),
        reason: format!("resolves to {inner:?}, inside /proc: refused"),
    })
}

/// Mounts one spec entry. `mount.destination` is how errors name the mount.
struct MountCtx<'a> {
    sys: &'a dyn Syscall,
    rootfs: &'a Path,
    destination: &'a Path,
}

impl MountCtx<'_> {
    fn resolve(&self, path: &Path, create: Create) -> Result<Target, RootfsError> {
        self.sys
            .resolve(self.rootfs, path, create)
            .map_err(|source| RootfsError::Destination {
                destination: self.destination.to_path_buf(),
                source,
            })
    }

    fn mount(
        &self,
        what: &str,
        source: Option<&Path>,
        target: &Target,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), RootfsError> {
        self.sys
            .mount(source, &target.mount_path(), fstype, flags, data)
            .map_err(|source| self.error(what, source))
    }

    fn error(&self, what: &str, source: Errno) -> RootfsError {
        RootfsError::Mount {
            destination: self.destination.to_path_buf(),
            what: what.to_string(),
            source,
        }
    }

    /// Bind `source` at `inner`, then remount with `flags` when there are any,
    /// keeping the flags the kernel locks (nosuid, nodev, noexec, atime) so the
    /// remount does not fail with EPERM in a user namespace.
    fn bind(
        &self,
        source: &Path,
        inner: &Path,
        recursive: bool,
        flags: MsFlags,
        keep_atime: bool,
    ) -> Result<Target, RootfsError> {
        let kind = self
            .sys
            .kind(source)
            .map_err(|e| self.error(&format!("stat bind source {source:?}"), e))?
            .ok_or_else(|| self.error(&format!("bind source {source:?}"), Errno::ENOENT))?;
        let create = if kind == Kind::File {
            Create::File
        } else {
            Create::Dir
        };
        let target = self.resolve(inner, create)?;
        check_proc_destination(&target.inner, "bind", self.destination)?;
        let rec = if recursive {
            MsFlags::MS_REC
        } else {
            MsFlags::empty()
        };
        self.mount(
            &format!("bind {source:?}"),
            Some(source),
            &target,
            None,
            MsFlags::MS_BIND | rec,
            None,
        )?;
        if flags.is_empty() {
            return Ok(target);
        }
        // Resolve again: the descriptor from before the mount names the covered
        // directory, and a remount must name the new mount's root.
        let target = self.resolve(inner, Create::Nothing)?;
        let mut locked = self
            .sys
            .mount_flags(&target.mount_path())
            .map_err(|e| self.error("statvfs", e))?;
        locked &= MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | atime_flags();
        if !keep_atime {
            locked &= !atime_flags();
        }
        self.mount(
            "remount",
            None,
            &target,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | rec | flags | locked,
            None,
        )?;
        Ok(target)
    }

    fn propagate(&self, inner: &Path, changes: &[MsFlags]) -> Result<(), RootfsError> {
        if changes.is_empty() {
            return Ok(());
        }
        let target = self.resolve(inner, Create::Nothing)?;
        for change in changes {
            self.mount("set propagation", None, &target, None, *change, None)?;
        }
        Ok(())
    }
}

fn atime_flags() -> MsFlags {
    MsFlags::MS_NOATIME | MsFlags::MS_NODIRATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME
}

/// Mount one `mounts[]` entry inside the rootfs.
pub fn mount_to_rootfs(
    sys: &dyn Syscall,
    mount: &Mount,
    opts: &RootfsOptions,
) -> Result<(), RootfsError> {
    let destination = mount.destination();
    let ctx = MountCtx {
        sys,
        rootfs: opts.rootfs,
        destination,
    };
    let options = MountOptions::parse(mount.options().as_deref().unwrap_or(&[]));
    let fstype = mount.typ().as_deref().unwrap_or("");
    let data = options.data();

    // Recursive attributes (rro, rnosuid …) need mount_setattr(2), which we do not
    // use yet; passed on as data they would be ignored and leave submounts writable.
    if let Some(recursive) = options
        .data
        .iter()
        .find(|d| RECURSIVE_OPTIONS.contains(&d.as_str()))
    {
        return Err(RootfsError::Invalid {
            destination: destination.to_path_buf(),
            reason: format!("recursive mount option {recursive:?} is not supported"),
        });
    }
    if options.is_bind() || fstype == "bind" {
        let source = mount
            .source()
            .as_deref()
            .ok_or_else(|| RootfsError::Invalid {
                destination: destination.to_path_buf(),
                reason: "bind mount without a source".into(),
            })?;
        let source = if source.is_absolute() {
            source.to_path_buf()
        } else {
            opts.bundle.join(source)
        };
        let recursive = options.flags.contains(MsFlags::MS_REC);
        let target = ctx.bind(
            &source,
            destination,
            recursive,
            options.remount_flags(),
            !options.atime_given,
        )?;
        return ctx.propagate(&target.inner, &options.propagation);
    }

    match fstype {
        "cgroup" => mount_cgroup(&ctx, &options, opts)?,
        _ => {
            let target = ctx.resolve(destination, Create::Dir)?;
            check_proc_destination(&target.inner, fstype, destination)?;
            let source = mount
                .source()
                .clone()
                .unwrap_or_else(|| PathBuf::from(fstype));
            let result = sys.mount(
                Some(&source),
                &target.mount_path(),
                Some(fstype),
                options.flags,
                data.as_deref(),
            );
            match (fstype, result) {
                (_, Ok(())) => {}
                // Without its own IPC (or network) namespace owned by the container's
                // user namespace the kernel refuses these; the host's are the
                // next best thing, as runc does.
                ("mqueue", Err(Errno::EPERM | Errno::EBUSY)) => {
                    ctx.bind(
                        Path::new("/dev/mqueue"),
                        &target.inner,
                        false,
                        options.flags,
                        true,
                    )?;
                }
                ("sysfs", Err(Errno::EPERM)) => {
                    ctx.bind(Path::new("/sys"), &target.inner, true, options.flags, true)?;
                }
                (_, Err(e)) => return Err(ctx.error(&format!("mount {fstype}"), e)),
            }
            ctx.propagate(&target.inner, &options.propagation)?;
        }
    }
    Ok(())
}

/// One v1 hierarchy of the host, with the container's cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where the host mounts it, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// The controllers as /proc/self/cgroup names them, e.g. `cpu,cpuacct`.
    pub controllers: String,
    /// The container's cgroup on the host side, below `mount_point`.
    pub source: PathBuf,
}

/// Pair the v1 cgroup mounts of mountinfo with the lines of /proc/self/cgroup.
pub fn v1_hierarchies(mountinfo: &str, self_cgroup: &str) -> Vec<V1Hierarchy> {
    let mut out: Vec<V1Hierarchy> = Vec::new();
    for mount in parse_mountinfo(mountinfo)
        .iter()
        .filter(|m| m.fstype == "cgroup")
    {
        if out.iter().any(|h| h.mount_point == mount.mount_point) {
            continue;
        }
        let super_options: Vec<&str> = mount.super_options.split(',').collect();
        let line = self_cgroup.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            (!controllers.is_empty() && controllers.split(',').all(|c| super_options.contains(&c)))
                .then(|| (controllers.to_string(), path.to_string()))
        });
        let Some((controllers, path)) = line else {
            continue;
        };
        let relative = Path::new(&path)
            .strip_prefix(&mount.root)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        out.push(V1Hierarchy {
            mount_point: mount.mount_point.clone(),
            controllers,
            source: mount.mount_point.join(relative),
        });
    }
    out
}

/// A `cgroup` mount: cgroup2 on a v2 host; on a v1 host a tmpfs with each
/// hierarchy inside, showing the container's own cgroup as its root.
fn mount_cgroup(
    ctx: &MountCtx,
    options: &MountOptions,
    opts: &RootfsOptions,
) -> Result<(), RootfsError> {
    let sys = ctx.sys;
    let destination = ctx.destination;
    let flags = options.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if sys.is_cgroup2_host() {
        if opts.in_cgroup_ns {
            let target = ctx.resolve(destination, Create::Dir)?;
            ctx.mount(
                "mount cgroup2",
                Some(Path::new("cgroup2")),
                &target,
                Some("cgroup2"),
                flags,
                None,
            )?;
        } else {
            // Without a cgroup namespace a fresh cgroup2 mount shows the host's
            // whole tree: bind the container's own cgroup instead.
            let own = read(sys, "/proc/self/cgroup")?
                .lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
                .unwrap_or_else(|| "/".into());
            let source = Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/'));
            ctx.bind(&source, destination, false, flags, true)?;
        }
        return ctx.propagate(destination, &options.propagation);
    }

    let target = ctx.resolve(destination, Create::Dir)?;
    let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    ctx.mount(
        "mount tmpfs for cgroup hierarchies",
        Some(Path::new("tmpfs")),
        &target,
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )?;
    let hierarchies = v1_hierarchies(
        &read(sys, "/proc/self/mountinfo")?,
        &read(sys, "/proc/self/cgroup")?,
    );
    for hierarchy in &hierarchies {
        let Some(name) = hierarchy.mount_point.file_name() else {
            continue;
        };
        let inner = target.inner.join(name);
        if opts.in_cgroup_ns {
            let sub = ctx.resolve(&inner, Create::Dir)?;
            ctx.mount(
                &format!("mount cgroup {}", hierarchy.controllers),
                Some(Path::new("cgroup")),
                &sub,
                Some("cgroup"),
                flags | tmpfs_flags,
                Some(&hierarchy.controllers),
            )?;
        } else {
            ctx.bind(&hierarchy.source, &inner, true, flags | tmpfs_flags, true)?;
        }
        // Co-mounted controllers (cpu,cpuacct) are also reachable by each name.
        let name = name.to_string_lossy();
        if name.contains(',') {
            for part in name.split(',') {
                sys.symlink(
                    opts.rootfs,
                    &target.inner.join(part),
                    Path::new(name.as_ref()),
                )
                .map_err(|source| RootfsError::Destination {
                    destination: destination.to_path_buf(),
                    source,
                })?;
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let target = ctx.resolve(destination, Create::Nothing)?;
        ctx.mount(
            "remount cgroup tmpfs read-only",
            None,
            &target,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | tmpfs_flags,
            None,
        )?;
    }
    ctx.propagate(destination, &options.propagation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        MountOptions::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn option_table() {
        let o = opts(&["nosuid", "noexec", "nodev", "ro", "mode=755", "size=65536k"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_RDONLY
        );
        assert_eq!(o.data().as_deref(), Some("mode=755,size=65536k"));
        assert!(!o.atime_given);

        let o = opts(&[
            "ro",
            "rw",
            "nosuid",
            "suid",
            "strictatime",
            "rbind",
            "rprivate",
            "slave",
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_STRICTATIME | MsFlags::MS_BIND | MsFlags::MS_REC
        );
        assert_eq!(
            o.propagation,
            vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC, MsFlags::MS_SLAVE]
        );
        assert!(o.atime_given && o.is_bind() && o.data().is_none());

        for (name, expect) in [
            ("defaults", MountOption::Set(MsFlags::empty())),
            ("dev", MountOption::Clear(MsFlags::MS_NODEV)),
            ("exec", MountOption::Clear(MsFlags::MS_NOEXEC)),
            ("sync", MountOption::Set(MsFlags::MS_SYNCHRONOUS)),
            ("async", MountOption::Clear(MsFlags::MS_SYNCHRONOUS)),
            ("dirsync", MountOption::Set(MsFlags::MS_DIRSYNC)),
            ("remount", MountOption::Set(MsFlags::MS_REMOUNT)),
            ("mand", MountOption::Set(MsFlags::MS_MANDLOCK)),
            ("nomand", MountOption::Clear(MsFlags::MS_MANDLOCK)),
            ("atime", MountOption::Clear(MsFlags::MS_NOATIME)),
            ("noatime", MountOption::Set(MsFlags::MS_NOATIME)),
            ("diratime", MountOption::Clear(MsFlags::MS_NODIRATIME)),
            ("nodiratime", MountOption::Set(MsFlags::MS_NODIRATIME)),
            ("relatime", MountOption::Set(MsFlags::MS_RELATIME)),
            ("norelatime", MountOption::Clear(MsFlags::MS_RELATIME)),
            ("nostrictatime", MountOption::Clear(MsFlags::MS_STRICTATIME)),
            ("bind", MountOption::Set(MsFlags::MS_BIND)),
            ("shared", MountOption::Propagation(MsFlags::MS_SHARED)),
            (
                "rshared",
                MountOption::Propagation(MsFlags::MS_SHARED | MsFlags::MS_REC),
            ),
            (
                "rslave",
                MountOption::Propagation(MsFlags::MS_SLAVE | MsFlags::MS_REC),
            ),
            ("private", MountOption::Propagation(MsFlags::MS_PRIVATE)),
            (
                "unbindable",
                MountOption::Propagation(MsFlags::MS_UNBINDABLE),
            ),
            (
                "runbindable",
                MountOption::Propagation(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            ),
        ] {
            assert_eq!(lookup_option(name), Some(expect), "{name}");
        }
        assert_eq!(lookup_option("newinstance"), None);
        assert_eq!(
            parse_propagation("rslave").unwrap(),
            MsFlags::MS_SLAVE | MsFlags::MS_REC
        );
        assert!(parse_propagation("ro").is_err());
    }

    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 27 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_parsing() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 7);
        assert_eq!(mounts[0].optional, vec!["shared:1".to_string()]);
        assert_eq!(mounts[6].mount_point, Path::new("/mnt/with space"));
        let holder = mount_holding(&mounts, Path::new("/var/lib/x")).unwrap();
        assert_eq!(holder.mount_point, Path::new("/"));
        let holder = mount_holding(&mounts, Path::new("/sys/fs/cgroup/memory/a")).unwrap();
        assert_eq!(holder.fstype, "cgroup");
    }

    #[test]
    fn v1_hierarchies_point_at_own_cgroup() {
        let cgroup =
            "9:name=systemd:/user.slice\n4:memory:/ctr/abc\n2:cpu,cpuacct:/ctr/abc\n0::/\n";
        let h = v1_hierarchies(MOUNTINFO, cgroup);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].source, Path::new("/sys/fs/cgroup/cpu,cpuacct/ctr/abc"));
        assert_eq!(h[0].controllers, "cpu,cpuacct");
        assert_eq!(h[1].source, Path::new("/sys/fs/cgroup/memory/ctr/abc"));
        assert_eq!(h[2].controllers, "name=systemd");
        assert_eq!(h[2].source, Path::new("/sys/fs/cgroup/systemd/user.slice"));
    }

    #[test]
    fn proc_destinations() {
        let d = Path::new("/x");
        assert!(check_proc_destination(Path::new("/proc"), "proc", d).is_ok());
        assert!(check_proc_destination(Path::new("/proc"), "bind", d).is_err());
        assert!(check_proc_destination(Path::new("/proc/self/exe"), "bind", d).is_err());
        assert!(check_proc_destination(Path::new("/proc/meminfo"), "bind", d).is_ok());
        assert!(check_proc_destination(Path::new("/procfoo"), "bind", d).is_ok());
    }
}
