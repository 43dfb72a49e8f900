//! Order of the rootfs syscalls, checked against the recording kernel (no root).
//! The root tests that run the real sequence live in `tests_root.rs`.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Spec;

use super::syscall::recorder::Recorder;
use super::*;

pub(super) fn spec(json: serde_json::Value) -> Spec {
    let mut base = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
        "mounts": [],
        "linux": {"namespaces": [{"type": "mount"}], "maskedPaths": [], "readonlyPaths": []}
    });
    merge(&mut base, json);
    serde_json::from_value(base).expect("test spec")
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";
const CGROUP: &str = "4:memory:/ctr\n2:cpu,cpuacct:/ctr\n0::/\n";

fn recorder() -> Recorder {
    Recorder {
        mountinfo: MOUNTINFO.into(),
        cgroup: CGROUP.into(),
        locked: MsFlags::MS_NODEV | MsFlags::MS_RELATIME,
        files: [PathBuf::from("/b/hostfile")].into_iter().collect(),
        ..Recorder::default()
    }
}

fn options<'a>(user_ns: bool) -> RootfsOptions<'a> {
    RootfsOptions {
        rootfs: Path::new("/r"),
        bundle: Path::new("/b"),
        in_user_ns: user_ns,
        in_cgroup_ns: false,
    }
}

const DEV_SYMLINKS: &[&str] = &[
    "symlink /dev/fd -> /proc/self/fd",
    "symlink /dev/stdin -> /proc/self/fd/0",
    "symlink /dev/stdout -> /proc/self/fd/1",
    "symlink /dev/stderr -> /proc/self/fd/2",
];

#[test]
fn prepare_mounts_in_order() {
    let spec = spec(serde_json::json!({
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666"]},
            {"destination": "/data", "type": "bind", "source": "data",
             "options": ["rbind", "ro", "nosuid"]},
            {"destination": "/etc/../etc/hostfile", "source": "/b/hostfile",
             "options": ["bind", "rshared"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid"]}
        ],
        "linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                "fileMode": 384, "uid": 1, "gid": 2}]}
    }));
    let sys = recorder();
    prepare_rootfs_with(&sys, &spec, &options(false)).unwrap();
    let mut expected = vec![
        "mount - / - SLAVE|REC",
        "mount - / - PRIVATE",
        "mount /r /r bind BIND|REC",
        "mount proc /r/proc proc 0",
        "mount tmpfs /r/dev tmpfs NOSUID|STRICTATIME mode=755,size=65536k",
        "mount devpts /r/dev/pts devpts NOSUID|NOEXEC newinstance,ptmxmode=0666",
        "mount /b/data /r/data - BIND|REC",
        "mount - /r/data - RDONLY|NOSUID|NODEV|REMOUNT|BIND|REC|RELATIME",
        "mount /b/hostfile /r/etc/hostfile - BIND",
        "mount - /r/etc/hostfile - SHARED|REC",
        "mount tmpfs /r/sys/fs/cgroup tmpfs NOSUID|NODEV|NOEXEC mode=755",
        "mount /sys/fs/cgroup/cpu,cpuacct/ctr /r/sys/fs/cgroup/cpu,cpuacct - BIND|REC",
        "mount - /r/sys/fs/cgroup/cpu,cpuacct - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND|REC|RELATIME",
        "symlink /sys/fs/cgroup/cpu -> cpu,cpuacct",
        "symlink /sys/fs/cgroup/cpuacct -> cpu,cpuacct",
        "mount /sys/fs/cgroup/memory/ctr /r/sys/fs/cgroup/memory - BIND|REC",
        "mount - /r/sys/fs/cgroup/memory - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND|REC|RELATIME",
        "mount - /r/sys/fs/cgroup - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT",
        "mknod /dev/null c 1:3 666 0:0",
        "mknod /dev/zero c 1:5 666 0:0",
        "mknod /dev/full c 1:7 666 0:0",
        "mknod /dev/random c 1:8 666 0:0",
        "mknod /dev/urandom c 1:9 666 0:0",
        "mknod /dev/tty c 5:0 666 0:0",
        "mknod /dev/fuse c 10:229 600 1:2",
    ];
    expected.extend(DEV_SYMLINKS);
    expected.extend([
        "symlink /dev/core -> /proc/kcore",
        "remove /dev/ptmx",
        "symlink /dev/ptmx -> pts/ptmx",
    ]);
    assert_eq!(sys.calls(), expected);
}

#[test]
fn user_namespace_binds_devices_and_root_propagation_is_honoured() {
    let spec = spec(serde_json::json!({
        "linux": {"rootfsPropagation": "rshared"}
    }));
    let sys = Recorder {
        mountinfo: "27 1 254:0 / / rw - ext4 /dev/vda rw\n".into(),
        ..Recorder::default()
    };
    prepare_rootfs_with(&sys, &spec, &options(true)).unwrap();
    let calls = sys.calls();
    assert_eq!(calls[0], "mount - / - SHARED|REC");
    // Parent of the rootfs is not shared: no private remount.
    assert_eq!(calls[1], "mount /r /r bind BIND|REC");
    assert_eq!(calls[2], "mount /dev/null /r/dev/null bind BIND");
    assert_eq!(calls[7], "mount /dev/tty /r/dev/tty bind BIND");
    assert_eq!(&calls[8..], DEV_SYMLINKS);
}

#[test]
fn dev_bind_mount_means_no_device_creation() {
    let spec = spec(serde_json::json!({
        "mounts": [{"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}]
    }));
    let sys = Recorder::default();
    prepare_rootfs_with(&sys, &spec, &options(false)).unwrap();
    let calls = sys.calls();
    assert_eq!(calls.last().unwrap(), "mount /dev /r/dev - BIND|REC");
    assert!(!calls
        .iter()
        .any(|c| c.starts_with("mknod") || c.starts_with("symlink")));
}

#[test]
fn cgroup_v2_host_binds_own_cgroup_or_mounts_in_cgroupns() {
    let spec = spec(serde_json::json!({
        "mounts": [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                    "options": ["ro"]}]
    }));
    let sys = Recorder {
        cgroup2: true,
        cgroup: "0::/berth/abc\n".into(),
        ..Recorder::default()
    };
    let mut opts = options(false);
    mount::mount_to_rootfs(&sys, &spec.mounts().as_ref().unwrap()[0], &opts).unwrap();
    assert_eq!(
        sys.calls(),
        [
            "mount /sys/fs/cgroup/berth/abc /r/sys/fs/cgroup - BIND",
            "mount - /r/sys/fs/cgroup - RDONLY|REMOUNT|BIND",
        ]
    );
    sys.calls.borrow_mut().clear();
    opts.in_cgroup_ns = true;
    mount::mount_to_rootfs(&sys, &spec.mounts().as_ref().unwrap()[0], &opts).unwrap();
    assert_eq!(
        sys.calls(),
        ["mount cgroup2 /r/sys/fs/cgroup cgroup2 RDONLY"]
    );
}

#[test]
fn mounts_over_proc_are_refused_naming_the_mount() {
    let spec = spec(serde_json::json!({
        "mounts": [{"destination": "/x/../proc/self", "type": "bind", "source": "/tmp",
                    "options": ["bind"]}]
    }));
    let sys = Recorder::default();
    let err = prepare_rootfs_with(&sys, &spec, &options(false)).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("/x/../proc/self"), "{message}");
    assert!(message.contains("inside /proc"), "{message}");
    assert!(!sys.calls().iter().any(|c| c.contains("/tmp")));
}

#[test]
fn missing_bind_source_names_the_mount() {
    let spec = spec(serde_json::json!({
        "mounts": [{"destination": "/data", "type": "bind", "source": "/nope"}]
    }));
    let sys = Recorder {
        missing: [PathBuf::from("/nope")].into_iter().collect(),
        ..Recorder::default()
    };
    let err = prepare_rootfs_with(&sys, &spec, &options(false)).unwrap_err();
    assert!(err.to_string().contains("\"/data\""), "{err}");
}

#[test]
fn pivot_root_sequence() {
    let sys = Recorder::default();
    pivot::enter_rootfs_with(&sys, Path::new("/r"), false).unwrap();
    assert_eq!(
        sys.calls(),
        [
            "open /",
            "open /r",
            "fchdir",
            "pivot_root . .",
            "fchdir",
            "mount - . - SLAVE|REC",
            "umount2 .",
            "chdir /",
        ]
    );
}

#[test]
fn move_root_when_asked_or_on_ramfs() {
    let expected = ["chdir /r", "mount /r / - MOVE", "chroot .", "chdir /"];
    let sys = Recorder::default();
    pivot::enter_rootfs_with(&sys, Path::new("/r"), true).unwrap();
    assert_eq!(sys.calls(), expected);
    let sys = Recorder {
        ramfs: true,
        ..Recorder::default()
    };
    pivot::enter_rootfs_with(&sys, Path::new("/r"), false).unwrap();
    assert_eq!(sys.calls(), expected);
}

#[test]
fn finalize_sequence() {
    let spec = spec(serde_json::json!({
        "root": {"path": "rootfs", "readonly": true},
        "linux": {
            "maskedPaths": ["/proc/kcore", "/proc/acpi", "/proc/nope"],
            "readonlyPaths": ["/proc/sys"],
            "rootfsPropagation": "rslave"
        }
    }));
    let sys = Recorder {
        files: [PathBuf::from("/proc/kcore")].into_iter().collect(),
        missing: [PathBuf::from("/proc/nope")].into_iter().collect(),
        locked: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        ..Recorder::default()
    };
    masked::finalize_rootfs_with(&sys, &spec).unwrap();
    assert_eq!(
        sys.calls(),
        [
            "mount /dev/null /proc/kcore - BIND",
            "mount tmpfs /proc/acpi tmpfs RDONLY|NOSUID|NODEV|NOEXEC size=0k,nr_inodes=1",
            "mount /proc/sys /proc/sys - BIND|REC",
            "mount - /proc/sys - RDONLY|NOSUID|NOEXEC|REMOUNT|BIND|REC",
            "mount - / - RDONLY|NOSUID|NOEXEC|REMOUNT|BIND",
            "mount - / - SLAVE|REC",
        ]
    );
}

#[test]
fn console_bind() {
    let sys = Recorder::default();
    device::bind_console_with(&sys, Path::new("/r"), Path::new("/dev/pts/7")).unwrap();
    assert_eq!(sys.calls(), ["mount /dev/pts/7 /r/dev/console bind BIND"]);
}

#[test]
fn recursive_options_are_refused_not_ignored() {
    let spec = spec(serde_json::json!({
        "mounts": [{"destination": "/data", "type": "bind", "source": "/b/data",
                    "options": ["rbind", "rro"]}]
    }));
    let sys = Recorder::default();
    let err = prepare_rootfs_with(&sys, &spec, &options(false)).unwrap_err();
    assert!(err.to_string().contains("\"rro\""), "{err}");
}
