//! Real-kernel tests, as root: v1 controllers of this host, and the unified
//! hierarchy of a hybrid host for the v2 freezer and the eBPF device filter. Each
//! test works under its own `/berth-test-<pid>-<n>` parent and removes it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResourcesBuilder,
};

use super::setup::OwnCgroups;
use super::*;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_parent() -> String {
    format!(
        "/berth-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Kills the child and removes the test's parent cgroup, even when a check fails.
struct Cleanup {
    child: Option<Child>,
    parent: Option<Box<dyn CgroupManager>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(parent) = &self.parent {
            let _ = parent.freeze(false);
            let _ = parent.destroy();
        }
    }
}

fn read(path: impl Into<PathBuf>) -> String {
    let path = path.into();
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn v1_real_lifecycle() {
    let hierarchy = Hierarchy::detect().unwrap();
    assert!(matches!(hierarchy, Hierarchy::V1 { .. }), "{hierarchy:?}");
    let parent = unique_parent();
    let path = format!("{parent}/c1");
    let mut cleanup = Cleanup {
        child: Some(waiting_shell("exec sleep 100")),
        parent: Some(manager_in(&parent, hierarchy.clone()).unwrap()),
    };
    let pid = cleanup.child.as_ref().unwrap().id() as i32;
    let m = manager_in(&path, hierarchy).unwrap();
    m.apply(pid).unwrap();
    m.apply(pid).unwrap();
    // Memory is charged where it is allocated: let the exec happen inside.
    let stdin = cleanup.child.as_mut().unwrap().stdin.take();
    stdin.unwrap().write_all(b"go\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));

    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .swap(128i64 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(32).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(20_000i64)
                .period(100_000u64)
                .cpus("0")
                .build()
                .unwrap(),
        )
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1i64)
                .minor(3i64)
                .access("rwm")
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    m.set(&resources).unwrap();
    let root = PathBuf::from("/sys/fs/cgroup");
    let rel = path.trim_start_matches('/');
    let mem = root.join("memory").join(rel);
    assert_eq!(read(mem.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(mem.join("memory.memsw.limit_in_bytes")), "134217728");
    assert_eq!(read(root.join("pids").join(rel).join("pids.max")), "32");
    assert_eq!(read(root.join("cpu").join(rel).join("cpu.shares")), "512");
    assert_eq!(
        read(root.join("cpu").join(rel).join("cpu.cfs_quota_us")),
        "20000"
    );
    assert_eq!(read(root.join("cpuset").join(rel).join("cpuset.cpus")), "0");
    assert_eq!(
        read(root.join("devices").join(rel).join("devices.list")),
        "c 1:3 rwm"
    );
    let own = OwnCgroups::parse(&read(format!("/proc/{pid}/cgroup")));
    assert_eq!(own.of(&["memory".into()]), path);
    assert_eq!(own.of(&["pids".into()]), path);
    assert_eq!(
        own.unified(),
        path,
        "hybrid host: unified hierarchy entered too"
    );

    // Lower the memory limit under the current memsw: memory must go first.
    let lower = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(32i64 << 20)
                .swap(48i64 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.set(&lower).unwrap();
    assert_eq!(read(mem.join("memory.memsw.limit_in_bytes")), "50331648");

    assert_eq!(m.pids().unwrap(), [pid]);
    m.freeze(true).unwrap();
    assert!(m.is_frozen().unwrap());
    assert_eq!(
        read(root.join("freezer").join(rel).join("freezer.state")),
        "FROZEN"
    );
    let status = read(format!("/proc/{pid}/status"));
    assert!(!status.contains("State:\tR"), "{status}");
    m.freeze(false).unwrap();
    assert!(!m.is_frozen().unwrap());

    let stats = m.stats().unwrap();
    assert!(stats.memory.usage.usage > 0, "{stats:?}");
    assert_eq!(stats.memory.usage.limit, 32 << 20);
    assert_eq!(stats.pids.current, 1);
    assert_eq!(stats.pids.limit, 32);
    assert!(!stats.cpu.usage.percpu.is_empty());

    let mut child = cleanup.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    m.destroy().unwrap();
    for ctl in [
        "memory", "cpu", "pids", "freezer", "devices", "unified", "systemd",
    ] {
        assert!(!root.join(ctl).join(rel).exists(), "{ctl} left behind");
    }
    m.destroy().unwrap();
    cleanup.parent.take().unwrap().destroy().unwrap();
    assert!(!root
        .join("memory")
        .join(parent.trim_start_matches('/'))
        .exists());
}

/// The unified hierarchy of this hybrid host, driven by the v2 driver.
fn unified() -> Hierarchy {
    Hierarchy::V2 {
        mount_point: "/sys/fs/cgroup/unified".into(),
        own: OwnCgroups::default(),
    }
}

/// `sh` that waits for a line on stdin, then runs `command` (inside whatever
/// cgroup it has been moved to by then) and exits with its status.
fn waiting_shell(command: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read go; {command}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run_in(m: &dyn CgroupManager, command: &str) -> (bool, String) {
    let mut child = waiting_shell(command);
    m.apply(child.id() as i32).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn device_rule(allow: bool, minor: Option<i64>) -> oci_spec::runtime::LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access("rwm");
    if let Some(minor) = minor {
        b = b.typ(LinuxDeviceType::C).major(1i64).minor(minor);
    }
    b.build().unwrap()
}

#[test]
fn v2_device_filter_denies_and_is_replaced_on_update() {
    let parent = unique_parent();
    let mut cleanup = Cleanup {
        child: None,
        parent: Some(manager_in(&parent, unified()).unwrap()),
    };
    let m = manager_in(&format!("{parent}/c1"), unified()).unwrap();
    // Nothing but the shells below ever enters it; set needs the directory.
    setup::create_dirs(
        &PathBuf::from("/sys/fs/cgroup/unified")
            .join(format!("{parent}/c1").trim_start_matches('/')),
    )
    .unwrap();

    let only_zero = LinuxResourcesBuilder::default()
        .devices(vec![device_rule(false, None), device_rule(true, Some(5))])
        .build()
        .unwrap();
    m.set(&only_zero).unwrap();
    let (ok, err) = run_in(m.as_ref(), "head -c 1 /dev/zero >&2");
    assert!(ok, "/dev/zero allowed: {err}");
    let (ok, err) = run_in(m.as_ref(), "cat /dev/null");
    assert!(!ok, "/dev/null must be denied");
    assert!(err.contains("not permitted"), "{err}");

    // An update replaces the filter rather than stacking another one on it.
    let both = LinuxResourcesBuilder::default()
        .devices(vec![
            device_rule(false, None),
            device_rule(true, Some(5)),
            device_rule(true, Some(3)),
        ])
        .build()
        .unwrap();
    m.set(&both).unwrap();
    let (ok, err) = run_in(m.as_ref(), "cat /dev/null");
    assert!(ok, "/dev/null allowed after the update: {err}");

    m.destroy().unwrap();
    cleanup.parent.take().unwrap().destroy().unwrap();
    assert!(!PathBuf::from("/sys/fs/cgroup/unified")
        .join(parent.trim_start_matches('/'))
        .exists());
}

#[test]
fn v2_freeze_in_unified_hierarchy() {
    let parent = unique_parent();
    let mut cleanup = Cleanup {
        child: Some(Command::new("sleep").arg("100").spawn().unwrap()),
        parent: Some(manager_in(&parent, unified()).unwrap()),
    };
    let pid = cleanup.child.as_ref().unwrap().id() as i32;
    let m = manager_in(&format!("{parent}/c1"), unified()).unwrap();
    m.apply(pid).unwrap();
    assert_eq!(m.pids().unwrap(), [pid]);
    m.freeze(true).unwrap();
    assert!(m.is_frozen().unwrap());
    m.freeze(false).unwrap();
    assert!(!m.is_frozen().unwrap());
    let mut child = cleanup.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    m.destroy().unwrap();
    cleanup.parent.take().unwrap().destroy().unwrap();
}
