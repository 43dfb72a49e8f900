//! The real sequence, as root: a forked child unshares its mount namespace, builds a
//! busybox container root, enters it and checks what it sees; the parent then checks
//! that nothing leaked onto the host.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use super::tests::spec;
use super::*;

/// A bundle with a busybox rootfs, and host-side things to bind into it.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-rootfs-test")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        for sub in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(sub)).unwrap();
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "cat", "ls", "test"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        // A planted symlink that would reach the host's /etc if followed naively.
        std::os::unix::fs::symlink("/etc", rootfs.join("evil")).unwrap();
        fs::create_dir_all(dir.path().join("data")).unwrap();
        fs::write(dir.path().join("data/hello"), b"hi").unwrap();
        fs::write(dir.path().join("hostfile"), b"from the host").unwrap();
        Bundle { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
}

/// Run `body` in a forked child in a new mount namespace; its error comes back
/// through a pipe. The child never returns into the test harness.
fn in_child(body: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only runs `body` (our own code, no locks held by other
    // harness threads are needed: glibc resets malloc locks in the child) and
    // leaves with _exit, never unwinding into the harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(read_end);
            let result = unshare(CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("unshare: {e}"))
                .and_then(|()| body());
            let code = match result {
                Ok(()) => 0,
                Err(message) => {
                    let _ = nix::unistd::write(&write_end, message.as_bytes());
                    1
                }
            };
            // SAFETY: _exit skips the parent's atexit handlers and destructors,
            // which must not run twice.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut message = String::new();
            fs::File::from(read_end)
                .read_to_string(&mut message)
                .unwrap();
            match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, 0) => Ok(()),
                status => Err(format!("child {status:?}: {message}")),
            }
        }
    }
}

fn check(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn expect_erofs(path: &str, create: bool) -> Result<(), String> {
    let result = fs::OpenOptions::new()
        .write(true)
        .create(create)
        .mode(0o644)
        .open(path);
    match result {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => Ok(()),
        other => Err(format!(
            "open {path} for writing: expected EROFS, got {other:?}"
        )),
    }
}

/// Mount points of the current mount namespace with their per-mount options.
fn mounts() -> Vec<(String, String, String)> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (_, after) = line.split_once(" - ")?;
            Some((
                fields[4].to_string(),
                fields[5].to_string(),
                after.split(' ').next()?.to_string(),
            ))
        })
        .collect()
}

fn mount_options(point: &str) -> Result<(String, String), String> {
    mounts()
        .into_iter()
        .rev()
        .find(|(p, _, _)| p == point)
        .map(|(_, opts, fstype)| (opts, fstype))
        .ok_or_else(|| format!("{point} is not a mount point: {:?}", mounts()))
}

fn assert_no_host_leftovers(bundle: &Bundle) {
    let dir = bundle.path().to_string_lossy().into_owned();
    let leftovers: Vec<_> = mounts()
        .into_iter()
        .filter(|(p, _, _)| p.starts_with(&dir))
        .collect();
    assert!(
        leftovers.is_empty(),
        "mounts left on the host: {leftovers:?}"
    );
}

#[test]
fn full_sequence_in_a_busybox_root() {
    let bundle = Bundle::new();
    let rootfs = bundle.rootfs();
    let unique = format!("berth-rootfs-escape-{}", std::process::id());
    let via_dotdot = format!("../../etc/{unique}-dotdot");
    let via_symlink = format!("/evil/{unique}-symlink");
    let spec = spec(serde_json::json!({
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/data", "type": "bind", "source": "data",
             "options": ["rbind", "ro"]},
            {"destination": "/etc/hostfile", "type": "bind",
             "source": bundle.path().join("hostfile"), "options": ["bind", "ro", "nosuid"]},
            {"destination": via_dotdot, "type": "bind", "source": "data",
             "options": ["bind"]},
            {"destination": via_symlink, "type": "bind", "source": "data",
             "options": ["bind", "rprivate"]}
        ],
        "linux": {
            "devices": [{"path": "/dev/berth-null", "type": "c", "major": 1, "minor": 3,
                         "fileMode": 384, "uid": 1000, "gid": 1000}],
            "maskedPaths": ["/proc/timer_list", "/proc/kcore", "/proc/acpi", "/sys/firmware", "/proc/no-such"],
            "readonlyPaths": ["/proc/sys", "/proc/bus", "/proc/no-such"]
        }
    }));
    let opts = RootfsOptions {
        rootfs: &rootfs,
        bundle: bundle.path(),
        in_user_ns: false,
        in_cgroup_ns: false,
    };
    let unique_in = unique.clone();
    let result = in_child(|| {
        prepare_rootfs(&spec, &opts).map_err(|e| format!("prepare: {e}"))?;
        enter_rootfs(&rootfs, false).map_err(|e| format!("enter: {e}"))?;
        finalize_rootfs(&spec).map_err(|e| format!("finalize: {e}"))?;

        let null = fs::metadata("/dev/null").map_err(|e| e.to_string())?;
        check(
            null.file_type().is_char_device(),
            "/dev/null is not a char device",
        )?;
        check(
            null.rdev() == nix::sys::stat::makedev(1, 3),
            "/dev/null is not 1:3",
        )?;
        check(null.permissions().mode() & 0o777 == 0o666, "/dev/null mode")?;
        let own = fs::metadata("/dev/berth-null").map_err(|e| e.to_string())?;
        check(
            own.permissions().mode() & 0o777 == 0o600,
            "spec device mode",
        )?;
        check(own.uid() == 1000 && own.gid() == 1000, "spec device owner")?;
        let link = |p: &str| fs::read_link(p).map_err(|e| format!("{p}: {e}"));
        check(link("/dev/fd")? == Path::new("/proc/self/fd"), "/dev/fd")?;
        check(
            link("/dev/stderr")? == Path::new("/proc/self/fd/2"),
            "/dev/stderr",
        )?;
        check(link("/dev/ptmx")? == Path::new("pts/ptmx"), "/dev/ptmx")?;
        check(link("/dev/core")? == Path::new("/proc/kcore"), "/dev/core")?;

        check(
            fs::read_to_string("/data/hello").map_err(|e| e.to_string())? == "hi",
            "/data/hello content",
        )?;
        expect_erofs("/data/new", true)?;
        expect_erofs("/etc/hostfile", false)?;
        let (opts, _) = mount_options("/etc/hostfile")?;
        check(
            opts.contains("ro") && opts.contains("nosuid"),
            format!("/etc/hostfile: {opts}"),
        )?;
        // Both escapes landed inside the container's /etc.
        for name in [
            format!("{unique_in}-dotdot"),
            format!("{unique_in}-symlink"),
        ] {
            let inside = format!("/etc/{name}");
            mount_options(&inside)?;
            check(
                Path::new(&inside).join("hello").exists(),
                format!("{inside}/hello"),
            )?;
        }

        let (opts, fstype) = mount_options("/sys")?;
        check(
            fstype == "sysfs" && opts.starts_with("ro"),
            format!("/sys {fstype} {opts}"),
        )?;
        let (opts, fstype) = mount_options("/sys/fs/cgroup")?;
        check(
            fstype == "tmpfs" && opts.starts_with("ro"),
            format!("/sys/fs/cgroup {opts}"),
        )?;
        let (opts, fstype) = mount_options("/sys/fs/cgroup/memory")?;
        check(
            fstype == "cgroup" && opts.starts_with("ro"),
            format!("memory cgroup {opts}"),
        )?;
        check(
            Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
            "memory files",
        )?;
        let (_, fstype) = mount_options("/dev/pts")?;
        check(fstype == "devpts", "/dev/pts")?;
        let (_, fstype) = mount_options("/dev/mqueue")?;
        check(fstype == "mqueue", "/dev/mqueue")?;

        // (/proc/kcore is masked too but this kernel may not have it.)
        let timers = fs::read("/proc/timer_list").map_err(|e| format!("/proc/timer_list: {e}"))?;
        check(timers.is_empty(), "/proc/timer_list is not masked")?;
        let firmware = fs::read_dir("/sys/firmware")
            .map_err(|e| e.to_string())?
            .count();
        check(firmware == 0, "/sys/firmware is not masked")?;
        expect_erofs("/proc/sys/kernel/domainname", false)?;
        let (opts, _) = mount_options("/proc/sys")?;
        check(
            opts.contains("nosuid") && opts.contains("noexec"),
            format!("/proc/sys {opts}"),
        )?;

        // The old root is gone: nothing of the host's / is visible.
        check(!Path::new("/usr").exists(), "the host's /usr is visible")?;
        let out = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "test -c /dev/null && ls /dev/pts >/dev/null && cat /etc/hostfile",
            ])
            .env_clear()
            .env("PATH", "/bin")
            .output()
            .map_err(|e| format!("busybox sh: {e}"))?;
        check(
            out.status.success() && out.stdout == b"from the host",
            format!("busybox: {out:?}"),
        )
    });
    // Checked on the host whatever the child said.
    for name in [format!("{unique}-dotdot"), format!("{unique}-symlink")] {
        assert!(
            !Path::new("/etc").join(&name).exists(),
            "/etc/{name} created on the host"
        );
        assert!(
            rootfs_has(&bundle, &format!("etc/{name}")),
            "{name} not in the rootfs"
        );
    }
    assert_no_host_leftovers(&bundle);
    result.unwrap();
}

fn rootfs_has(bundle: &Bundle, path: &str) -> bool {
    bundle.rootfs().join(path).exists()
}

#[test]
fn readonly_root_without_pivot_and_console() {
    let bundle = Bundle::new();
    let rootfs = bundle.rootfs();
    let spec = spec(serde_json::json!({
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nodev"]}
        ],
        "linux": {"rootfsPropagation": "rslave"}
    }));
    let opts = RootfsOptions {
        rootfs: &rootfs,
        bundle: bundle.path(),
        in_user_ns: false,
        in_cgroup_ns: false,
    };
    let result = in_child(|| {
        prepare_rootfs(&spec, &opts).map_err(|e| format!("prepare: {e}"))?;
        // Any host file stands in for a pty slave.
        bind_console(&rootfs, Path::new("/dev/null")).map_err(|e| format!("console: {e}"))?;
        enter_rootfs(&rootfs, true).map_err(|e| format!("enter: {e}"))?;
        finalize_rootfs(&spec).map_err(|e| format!("finalize: {e}"))?;
        expect_erofs("/etc/new-file", true)?;
        fs::write("/tmp/ok", b"tmpfs stays writable").map_err(|e| format!("/tmp: {e}"))?;
        let console = fs::metadata("/dev/console").map_err(|e| e.to_string())?;
        check(
            console.rdev() == nix::sys::stat::makedev(1, 3),
            "/dev/console bind",
        )?;
        let (_, fstype) = mount_options("/proc")?;
        check(fstype == "proc", "/proc")
    });
    assert_no_host_leftovers(&bundle);
    result.unwrap();
}

#[test]
fn bind_over_proc_is_refused_and_leaves_nothing() {
    let bundle = Bundle::new();
    let rootfs = bundle.rootfs();
    // /proc is reached through a symlink so only resolution can tell.
    std::os::unix::fs::symlink("/proc", rootfs.join("p")).unwrap();
    let spec = spec(serde_json::json!({
        "mounts": [{"destination": "/p/self/exe", "type": "bind", "source": "hostfile",
                    "options": ["bind"]}]
    }));
    let opts = RootfsOptions {
        rootfs: &rootfs,
        bundle: bundle.path(),
        in_user_ns: false,
        in_cgroup_ns: false,
    };
    let result = in_child(|| match prepare_rootfs(&spec, &opts) {
        Err(e) if e.to_string().contains("/p/self/exe") => Ok(()),
        other => Err(format!(
            "expected a refusal naming the mount, got {other:?}"
        )),
    });
    assert_no_host_leftovers(&bundle);
    result.unwrap();
}
