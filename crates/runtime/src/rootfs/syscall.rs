//! The kernel as the rootfs code sees it: a small trait with the real implementation
//! and (in tests) a recording double, so that the order of mounts, device nodes and
//! the pivot is unit-tested without root.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use super::safe_path::{self, Create, SafePathError};

/// A mount point resolved inside the rootfs.
#[derive(Debug)]
pub struct Target {
    /// Path inside the rootfs (absolute), for messages.
    pub inner: PathBuf,
    /// Path on the host, for messages.
    pub host: PathBuf,
    /// When set, mounts go through `/proc/self/fd/N` so that they land on exactly
    /// the object resolved, not on whatever the name points to a moment later.
    fd: Option<OwnedFd>,
}

impl Target {
    /// The path to hand to mount(2).
    pub fn mount_path(&self) -> PathBuf {
        match &self.fd {
            Some(fd) => safe_path::proc_fd_path(fd),
            None => self.host.clone(),
        }
    }
}

/// What a host path is, for choosing how to create a bind destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Path inside the rootfs, e.g. `/dev/null`.
    pub path: PathBuf,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    fn chroot(&self, path: &Path) -> nix::Result<()>;
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    fn open_dir(&self, path: &Path) -> nix::Result<OwnedFd>;
    fn fchdir(&self, dir: &OwnedFd) -> nix::Result<()>;
    /// Resolve (and create) a destination inside `root`.
    fn resolve(&self, root: &Path, path: &Path, create: Create) -> Result<Target, SafePathError>;
    /// What a path is (following symlinks); `None` when it does not exist.
    fn kind(&self, path: &Path) -> nix::Result<Option<Kind>>;
    /// Mount flags of the mount holding `path` that a bind remount must keep.
    fn mount_flags(&self, path: &Path) -> nix::Result<MsFlags>;
    /// Whether `path` is on ramfs (where pivot_root cannot work).
    fn is_ramfs(&self, path: &Path) -> nix::Result<bool>;
    /// Whether the host's /sys/fs/cgroup is the unified (v2) hierarchy.
    fn is_cgroup2_host(&self) -> bool;
    fn read_to_string(&self, path: &Path) -> std::io::Result<String>;
    /// mknod inside `root`, then set mode and owner; an existing node is left alone.
    fn create_device(&self, root: &Path, node: &DeviceNode) -> Result<(), SafePathError>;
    /// Create symlink `link` (inside `root`) pointing to `target`; existing is fine.
    fn symlink(&self, root: &Path, link: &Path, target: &Path) -> Result<(), SafePathError>;
    /// Remove a non-directory inside `root`; a missing one is fine.
    fn remove(&self, root: &Path, path: &Path) -> Result<(), SafePathError>;
}

/// The real kernel.
pub struct Linux;

fn split_parent(path: &Path) -> (PathBuf, std::ffi::OsString) {
    let cleaned = safe_path::clean_inner(path);
    let name = cleaned
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let parent = cleaned
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| "/".into());
    (parent, name)
}

impl Syscall for Linux {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chroot(path)
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn open_dir(&self, path: &Path) -> nix::Result<OwnedFd> {
        nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    }

    fn fchdir(&self, dir: &OwnedFd) -> nix::Result<()> {
        nix::unistd::fchdir(dir)
    }

    fn resolve(&self, root: &Path, path: &Path, create: Create) -> Result<Target, SafePathError> {
        let r = safe_path::resolve_in_root(root, path, create)?;
        Ok(Target {
            inner: r.inner,
            host: r.host,
            fd: Some(r.fd),
        })
    }

    fn kind(&self, path: &Path) -> nix::Result<Option<Kind>> {
        match nix::sys::stat::stat(path) {
            Ok(st) => {
                let is_dir =
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
                Ok(Some(if is_dir { Kind::Dir } else { Kind::File }))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mount_flags(&self, path: &Path) -> nix::Result<MsFlags> {
        use nix::sys::statvfs::FsFlags;
        let flags = nix::sys::statvfs::statvfs(path)?.flags();
        let table = [
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ];
        Ok(table
            .iter()
            .filter(|(st, _)| flags.contains(*st))
            .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms))
    }

    fn is_ramfs(&self, path: &Path) -> nix::Result<bool> {
        // RAMFS_MAGIC from linux/magic.h; nix does not export it.
        const RAMFS_MAGIC: u64 = 0x8584_58f6;
        let fs = nix::sys::statfs::statfs(path)?;
        Ok(fs.filesystem_type().0 as u64 == RAMFS_MAGIC)
    }

    fn is_cgroup2_host(&self) -> bool {
        nix::sys::statfs::statfs("/sys/fs/cgroup")
            .map(|fs| fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false)
    }

    fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn create_device(&self, root: &Path, node: &DeviceNode) -> Result<(), SafePathError> {
        let (parent, name) = split_parent(&node.path);
        let dir = safe_path::resolve_in_root(root, &parent, Create::Dir)?;
        let err = |source| SafePathError::Component {
            path: node.path.clone(),
            source,
        };
        let dev = nix::sys::stat::makedev(node.major, node.minor);
        match nix::sys::stat::mknodat(&dir.fd, name.as_os_str(), node.kind, Mode::empty(), dev) {
            Ok(()) => {}
            Err(Errno::EEXIST) => return Ok(()),
            Err(e) => return Err(err(e)),
        }
        let fd = nix::fcntl::openat(
            &dir.fd,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        // fchmod does not take O_PATH descriptors; chmod through /proc follows
        // the descriptor to the node we just made (umask kept the mode from mknod).
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &safe_path::proc_fd_path(&fd),
            Mode::from_bits_truncate(node.mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(err)?;
        nix::unistd::fchownat(
            &fd,
            "",
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        )
        .map_err(err)?;
        Ok(())
    }

    fn symlink(&self, root: &Path, link: &Path, target: &Path) -> Result<(), SafePathError> {
        let (parent, name) = split_parent(link);
        let dir = safe_path::resolve_in_root(root, &parent, Create::Dir)?;
        match nix::unistd::symlinkat(target, &dir.fd, name.as_os_str()) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(source) => Err(SafePathError::Component {
                path: link.to_path_buf(),
                source,
            }),
        }
    }

    fn remove(&self, root: &Path, path: &Path) -> Result<(), SafePathError> {
        let (parent, name) = split_parent(path);
        let dir = match safe_path::resolve_in_root(root, &parent, Create::Nothing) {
            Ok(dir) => dir,
            Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        };
        match nix::unistd::unlinkat(
            &dir.fd,
            name.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(source) => Err(SafePathError::Component {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

#[cfg(test)]
pub mod recorder {
    //! A kernel that only writes down what it was asked to do.

    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;

    pub struct Recorder {
        pub calls: RefCell<Vec<String>>,
        /// Host paths that exist and are files (everything else exists as a directory).
        pub files: HashSet<PathBuf>,
        /// Host paths that do not exist.
        pub missing: HashSet<PathBuf>,
        pub mountinfo: String,
        pub cgroup: String,
        pub cgroup2: bool,
        pub ramfs: bool,
        /// Flags `mount_flags` reports for every path.
        pub locked: MsFlags,
    }

    impl Default for Recorder {
        fn default() -> Self {
            Recorder {
                calls: RefCell::default(),
                files: HashSet::new(),
                missing: HashSet::new(),
                mountinfo: String::new(),
                cgroup: String::new(),
                cgroup2: false,
                ramfs: false,
                locked: MsFlags::empty(),
            }
        }
    }

    impl Recorder {
        fn record(&self, call: String) {
            self.calls.borrow_mut().push(call);
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    fn flags_str(flags: MsFlags) -> String {
        let names = [
            (MsFlags::MS_RDONLY, "RDONLY"),
            (MsFlags::MS_NOSUID, "NOSUID"),
            (MsFlags::MS_NODEV, "NODEV"),
            (MsFlags::MS_NOEXEC, "NOEXEC"),
            (MsFlags::MS_REMOUNT, "REMOUNT"),
            (MsFlags::MS_BIND, "BIND"),
            (MsFlags::MS_MOVE, "MOVE"),
            (MsFlags::MS_PRIVATE, "PRIVATE"),
            (MsFlags::MS_SLAVE, "SLAVE"),
            (MsFlags::MS_SHARED, "SHARED"),
            (MsFlags::MS_UNBINDABLE, "UNBINDABLE"),
            (MsFlags::MS_REC, "REC"),
            (MsFlags::MS_RELATIME, "RELATIME"),
            (MsFlags::MS_STRICTATIME, "STRICTATIME"),
            (MsFlags::MS_NOATIME, "NOATIME"),
        ];
        let out: Vec<&str> = names
            .iter()
            .filter(|(f, _)| flags.contains(*f))
            .map(|(_, n)| *n)
            .collect();
        if out.is_empty() {
            "0".into()
        } else {
            out.join("|")
        }
    }

    impl Syscall for Recorder {
        fn mount(
            &self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> nix::Result<()> {
            self.record(format!(
                "mount {} {} {} {}{}",
                source
                    .map(|s| s.display().to_string())
                    .unwrap_or("-".into()),
                target.display(),
                fstype.unwrap_or("-"),
                flags_str(flags),
                data.map(|d| format!(" {d}")).unwrap_or_default(),
            ));
            Ok(())
        }
        fn umount2(&self, target: &Path, _flags: MntFlags) -> nix::Result<()> {
            self.record(format!("umount2 {}", target.display()));
            Ok(())
        }
        fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
            self.record(format!(
                "pivot_root {} {}",
                new_root.display(),
                put_old.display()
            ));
            Ok(())
        }
        fn chroot(&self, path: &Path) -> nix::Result<()> {
            self.record(format!("chroot {}", path.display()));
            Ok(())
        }
        fn chdir(&self, path: &Path) -> nix::Result<()> {
            self.record(format!("chdir {}", path.display()));
            Ok(())
        }
        fn open_dir(&self, path: &Path) -> nix::Result<OwnedFd> {
            self.record(format!("open {}", path.display()));
            nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        }
        fn fchdir(&self, _dir: &OwnedFd) -> nix::Result<()> {
            self.record("fchdir".into());
            Ok(())
        }
        fn resolve(
            &self,
            root: &Path,
            path: &Path,
            _create: Create,
        ) -> Result<Target, SafePathError> {
            let inner = safe_path::clean_inner(path);
            let host = root.join(inner.strip_prefix("/").unwrap_or(&inner));
            if self.missing.contains(&host) {
                return Err(SafePathError::Component {
                    path: inner,
                    source: Errno::ENOENT,
                });
            }
            Ok(Target {
                inner,
                host,
                fd: None,
            })
        }
        fn kind(&self, path: &Path) -> nix::Result<Option<Kind>> {
            Ok(if self.missing.contains(path) {
                None
            } else if self.files.contains(path) {
                Some(Kind::File)
            } else {
                Some(Kind::Dir)
            })
        }
        fn mount_flags(&self, _path: &Path) -> nix::Result<MsFlags> {
            Ok(self.locked)
        }
        fn is_ramfs(&self, _path: &Path) -> nix::Result<bool> {
            Ok(self.ramfs)
        }
        fn is_cgroup2_host(&self) -> bool {
            self.cgroup2
        }
        fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
            match path.to_str() {
                Some("/proc/self/mountinfo") => Ok(self.mountinfo.clone()),
                Some("/proc/self/cgroup") => Ok(self.cgroup.clone()),
                _ => Err(std::io::ErrorKind::NotFound.into()),
            }
        }
        fn create_device(&self, _root: &Path, node: &DeviceNode) -> Result<(), SafePathError> {
            let kind = match node.kind {
                SFlag::S_IFBLK => "b",
                SFlag::S_IFIFO => "p",
                _ => "c",
            };
            self.record(format!(
                "mknod {} {kind} {}:{} {:o} {}:{}",
                node.path.display(),
                node.major,
                node.minor,
                node.mode,
                node.uid,
                node.gid
            ));
            Ok(())
        }
        fn symlink(&self, _root: &Path, link: &Path, target: &Path) -> Result<(), SafePathError> {
            self.record(format!(
                "symlink {} -> {}",
                link.display(),
                target.display()
            ));
            Ok(())
        }
        fn remove(&self, _root: &Path, path: &Path) -> Result<(), SafePathError> {
            self.record(format!("remove {}", path.display()));
            Ok(())
        }
    }
}
