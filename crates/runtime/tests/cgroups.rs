//! Cgroup resources (v1 hierarchies of this host), read from inside the container through
//! its /sys/fs/cgroup mount and from the host path, and cgroupsPath placement.

mod common;

use common::*;
use serde_json::json;
use std::fs;

/// Runs `script` with `resources` and returns stdout.
fn with_resources(t: &Test, resources: serde_json::Value, script: &str) -> String {
    let mut b = t.bundle();
    let devices = b.resources()["devices"].clone();
    *b.resources() = resources;
    b.resources()["devices"] = devices;
    t.sh(&mut b, script)
}

#[test]
fn cpu_shares_quota_period() {
    let t = Test::new("cpu");
    let out = with_resources(
        &t,
        json!({ "cpu": { "shares": 512, "quota": 50000, "period": 100000 } }),
        "cd /sys/fs/cgroup/cpu && cat cpu.shares cpu.cfs_quota_us cpu.cfs_period_us",
    );
    assert_eq!(out, "512\n50000\n100000\n");
}

#[test]
fn cpuset_cpus_and_mems() {
    let t = Test::new("cpuset");
    let out = with_resources(
        &t,
        json!({ "cpu": { "cpus": "0", "mems": "0" } }),
        "cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpuset/cpuset.mems; \
         grep Cpus_allowed_list /proc/self/status",
    );
    assert_eq!(out, "0\n0\nCpus_allowed_list:\t0\n");
}

#[test]
fn memory_limit_reservation_swap_swappiness() {
    let t = Test::new("memory");
    let out = with_resources(
        &t,
        json!({ "memory": {
            "limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10
        } }),
        "cd /sys/fs/cgroup/memory && cat memory.limit_in_bytes memory.soft_limit_in_bytes \
         memory.memsw.limit_in_bytes memory.swappiness",
    );
    assert_eq!(out, "67108864\n33554432\n134217728\n10\n");
}

#[test]
fn memory_limit_is_enforced() {
    let t = Test::new("oom");
    let mut b = t.bundle();
    b.resources()["memory"] = json!({ "limit": 16777216, "swap": 16777216 });
    // tmpfs pages are charged to the writer's cgroup: 32 MiB cannot fit in 16 MiB. The
    // OOM killer takes the writer or the whole container; either way the file never fills.
    b.sh("head -c 33554432 /dev/zero > /dev/shm/big; \
          [ $(stat -c %s /dev/shm/big) -eq 33554432 ] && echo full; echo done");
    let out = t.run(&mut b, "c1");
    assert!(!out.stdout.contains("full"), "{out}");
    assert!(out.code == 137 || out.stdout == "done\n", "{out}");
    t.assert_gone("c1");
}

#[test]
fn pids_limit() {
    let t = Test::new("pids");
    let out = with_resources(
        &t,
        json!({ "pids": { "limit": 8 } }),
        // Counting with a glob forks nothing; without the limit there would be 13 processes.
        "cat /sys/fs/cgroup/pids/pids.max; \
         sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done' 2>/dev/null; \
         set -- /proc/[0-9]*; echo $#",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "8");
    let procs: u32 = lines[1].parse().unwrap();
    assert!((2..=8).contains(&procs), "{out}");
}

/// The major:minor of the block device behind /.
fn root_device() -> String {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap();
    let dev = line.split(' ').nth(2).unwrap().to_string();
    // A partition's throttles are set on the whole disk.
    let partition = format!("/sys/dev/block/{dev}/partition");
    if std::path::Path::new(&partition).exists() {
        let parent = fs::canonicalize(format!("/sys/dev/block/{dev}/.."))
            .unwrap()
            .join("dev");
        fs::read_to_string(parent).unwrap().trim().to_string()
    } else {
        dev
    }
}

#[test]
fn blkio_throttles() {
    let t = Test::new("blkio");
    let dev = root_device();
    let (major, minor) = dev.split_once(':').unwrap();
    let (major, minor): (u64, u64) = (major.parse().unwrap(), minor.parse().unwrap());
    let out = with_resources(
        &t,
        json!({ "blockIO": {
            "throttleReadBpsDevice": [{ "major": major, "minor": minor, "rate": 1048576 }],
            "throttleWriteBpsDevice": [{ "major": major, "minor": minor, "rate": 2097152 }],
            "throttleReadIOPSDevice": [{ "major": major, "minor": minor, "rate": 300 }],
            "throttleWriteIOPSDevice": [{ "major": major, "minor": minor, "rate": 400 }]
        } }),
        "cd /sys/fs/cgroup/blkio && cat blkio.throttle.read_bps_device \
         blkio.throttle.write_bps_device blkio.throttle.read_iops_device \
         blkio.throttle.write_iops_device",
    );
    assert_eq!(
        out,
        format!("{dev} 1048576\n{dev} 2097152\n{dev} 300\n{dev} 400\n")
    );
}

#[test]
fn blkio_weight() {
    let t = Test::new("blkioweight");
    // With BFQ the file is blkio.bfq.weight and shows "default 500".
    let out = with_resources(
        &t,
        json!({ "blockIO": { "weight": 500 } }),
        "cat /sys/fs/cgroup/blkio/blkio.bfq.weight 2>/dev/null || cat /sys/fs/cgroup/blkio/blkio.weight",
    );
    assert!(out.trim().ends_with("500"), "{out}");
}

#[test]
fn device_rules_deny_and_allow() {
    let t = Test::new("devicerules");
    let mut b = t.bundle();
    // Two nodes exist in /dev; the cgroup lets only /dev/berth-allowed (1:7, like /dev/full) through.
    b.config["linux"]["devices"] = json!([
        { "path": "/dev/berth-denied", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666 },
        { "path": "/dev/berth-allowed", "type": "c", "major": 1, "minor": 7, "fileMode": 0o666 }
    ]);
    b.resources()["devices"] = json!([
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "c", "major": 1, "minor": 7, "access": "rw" }
    ]);
    let out = t.sh(
        &mut b,
        "(echo x > /dev/berth-allowed) 2>&1; (echo x > /dev/berth-denied) 2>&1; \
         grep -c . /sys/fs/cgroup/devices/devices.list; true",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("No space left on device"), "{out}");
    assert!(lines[1].contains("Operation not permitted"), "{out}");
    // Not the single "a *:* rwm" of an unrestricted cgroup.
    assert_ne!(lines[2], "1", "{out}");
}

#[test]
fn absolute_cgroups_path() {
    let t = Test::new("abscgroup");
    let mut b = t.bundle();
    let path = format!("/berth-test-abs-{}/nested/c1", std::process::id());
    b.config["linux"]["cgroupsPath"] = json!(path);
    t.track_cgroup(&format!("/berth-test-abs-{}", std::process::id()));
    b.resources()["pids"] = json!({ "limit": 33 });
    let pid = t.start_background(&mut b, "c1", "sleep 1000");
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroup.lines().filter(|l| !l.starts_with("0::")) {
        assert!(line.ends_with(&path), "{line} in {cgroup}");
    }
    // A hybrid host's unified hierarchy too: the init is born there (clone3 with
    // CLONE_INTO_CGROUP) and joins the v1 ones by itself.
    if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        let unified = cgroup.lines().find(|l| l.starts_with("0::")).unwrap_or("");
        assert!(unified.ends_with(&path), "{unified} in {cgroup}");
    }
    let pids_max = cgroup_mount("pids")
        .join(path.trim_start_matches('/'))
        .join("pids.max");
    assert_eq!(fs::read_to_string(pids_max).unwrap().trim(), "33");
    t.rt(&["delete", "--force", "c1"]).ok();
    for dir in cgroup_dirs(&path) {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

#[test]
fn relative_cgroups_path() {
    let t = Test::new("relcgroup");
    let mut b = t.bundle();
    let path = format!("berth-test-rel-{}", std::process::id());
    b.config["linux"]["cgroupsPath"] = json!(path);
    b.resources()["pids"] = json!({ "limit": 44 });
    let pid = t.start_background(&mut b, "c1", "sleep 1000");
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let theirs = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    // Relative to the creator's own cgroup, in each hierarchy.
    let own_pids = own.lines().find(|l| l.contains(":pids:")).unwrap();
    let their_pids = theirs.lines().find(|l| l.contains(":pids:")).unwrap();
    let expected = format!("{}/{path}", own_pids.trim_end_matches('/'));
    assert_eq!(their_pids, expected.replace("//", "/"));
    let dirs = cgroup_dirs(&path);
    let pids_dir = dirs
        .iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/pids"))
        .unwrap();
    assert_eq!(
        fs::read_to_string(pids_dir.join("pids.max"))
            .unwrap()
            .trim(),
        "44"
    );
    t.rt(&["delete", "--force", "c1"]).ok();
    for dir in dirs {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}
