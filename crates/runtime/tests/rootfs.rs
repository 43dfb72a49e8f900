//! The container's filesystem seen from inside: default mounts, bind mount flags, a
//! read-only root, mount destinations that try to leave the root, masked and read-only
//! paths, /dev contents, `linux.devices`, root propagation.

mod common;

use common::*;
use serde_json::json;
use std::fs;

/// (mount point, fstype, mount options, optional fields) of each line of a mountinfo text.
fn parse_mountinfo(text: &str) -> Vec<(String, String, String, String)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            Some((
                fields[4].to_string(),
                fields[dash + 1].to_string(),
                fields[5].to_string(),
                fields[6..dash].join(" "),
            ))
        })
        .collect()
}

#[test]
fn default_mounts_are_in_place() {
    let t = Test::new("mounts");
    let mut b = t.bundle();
    let info = parse_mountinfo(&t.sh(&mut b, "cat /proc/self/mountinfo"));
    let has = |point: &str, fstype: &str| info.iter().any(|m| m.0 == point && m.1 == fstype);
    assert!(has("/proc", "proc"), "{info:?}");
    assert!(has("/sys", "sysfs"), "{info:?}");
    assert!(has("/dev", "tmpfs"), "{info:?}");
    assert!(has("/dev/pts", "devpts"), "{info:?}");
    assert!(has("/dev/shm", "tmpfs"), "{info:?}");
    assert!(has("/dev/mqueue", "mqueue"), "{info:?}");
    assert!(
        info.iter()
            .any(|m| m.0.starts_with("/sys/fs/cgroup/") && m.1 == "cgroup"),
        "{info:?}"
    );
    let sys = info.iter().find(|m| m.0 == "/sys").unwrap();
    assert!(sys.2.split(',').any(|o| o == "ro"), "{sys:?}");
    let shm = info.iter().find(|m| m.0 == "/dev/shm").unwrap();
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(shm.2.split(',').any(|o| o == flag), "{shm:?}");
    }
    // Nothing of the host's mount table shows through.
    assert!(
        !info.iter().any(|m| m.0.starts_with("/tmp/berth-test")),
        "{info:?}"
    );
}

#[test]
fn bind_mount_flags() {
    let t = Test::new("bindflags");
    let share = t.dir.join("share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("data"), "shared data\n").unwrap();
    fs::write(share.join("script"), "#!/bin/sh\necho ran\n").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut fs::metadata(share.join("script")).unwrap().permissions(),
        0o755,
    );
    fs::set_permissions(
        share.join("script"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut b = t.bundle();
    b.mounts().push(json!({
        "destination": "/mnt/share", "type": "bind", "source": share.to_str().unwrap(),
        "options": ["bind", "ro", "nosuid", "noexec", "nodev"]
    }));
    b.mounts().push(json!({
        "destination": "/mnt/rw", "type": "bind", "source": share.to_str().unwrap(),
        "options": ["bind"]
    }));
    let out = t.sh(
        &mut b,
        "cat /mnt/share/data; touch /mnt/share/new 2>/dev/null && echo wrote || echo refused; \
         /mnt/share/script 2>/dev/null || echo noexec; /mnt/rw/script; \
         grep ' /mnt/share ' /proc/self/mountinfo | cut -d' ' -f6",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..4],
        ["shared data", "refused", "noexec", "ran"],
        "{out}"
    );
    let options: Vec<&str> = lines[4].split(',').collect();
    for flag in ["ro", "nosuid", "noexec", "nodev"] {
        assert!(options.contains(&flag), "{out}");
    }
    assert!(!share.join("new").exists());
}

#[test]
fn readonly_root_refuses_writes() {
    let t = Test::new("roroot");
    let mut b = t.bundle();
    b.config["root"]["readonly"] = json!(true);
    let out = t.sh(
        &mut b,
        "touch /newfile 2>&1; touch /dev/shm/ok && echo tmpfs-writable; \
         awk '$5 == \"/\" { print $6 }' /proc/self/mountinfo",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("Read-only file system"), "{out}");
    assert_eq!(lines[1], "tmpfs-writable");
    assert!(lines[2].split(',').any(|o| o == "ro"), "{out}");
    assert!(!b.rootfs().join("newfile").exists());
}

#[test]
fn dotdot_destination_stays_in_the_root() {
    let t = Test::new("dotdot");
    let mut b = t.bundle();
    let escape = t.dir.join("escaped");
    let destination = format!("/../../../../../../..{}", escape.display());
    b.mounts().push(json!({
        "destination": destination, "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
    }));
    let id = "c1";
    b.sh(&format!("touch {}/x 2>&1; echo done", escape.display()));
    let out = t.run(&mut b, id);
    // Either refused or confined to the root: the host path is never touched.
    assert!(!escape.exists(), "mount point made on the host: {out}");
    if out.success() {
        assert!(
            b.rootfs().join(escape.strip_prefix("/").unwrap()).is_dir(),
            "{out}"
        );
    }
    t.assert_nothing_left(id);
}

#[test]
fn symlink_destination_stays_in_the_root() {
    let t = Test::new("symlinkdest");
    let mut b = t.bundle();
    let host_dir = t.dir.join("hostdir");
    fs::create_dir_all(&host_dir).unwrap();
    // /evil in the root points at a host directory by absolute path.
    std::os::unix::fs::symlink(&host_dir, b.rootfs().join("evil")).unwrap();
    b.mounts().push(json!({
        "destination": "/evil/sub", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
    }));
    b.sh("echo ran");
    let out = t.run(&mut b, "c1");
    assert!(
        !host_dir.join("sub").exists(),
        "mount point made through the symlink on the host: {out}"
    );
    if out.success() {
        let inside = b
            .rootfs()
            .join(host_dir.strip_prefix("/").unwrap())
            .join("sub");
        assert!(inside.is_dir(), "{out}");
    }
    t.assert_nothing_left("c1");
}

#[test]
fn masked_paths_read_empty() {
    let t = Test::new("masked");
    let mut b = t.bundle();
    let out = t.sh(
        &mut b,
        "for f in /proc/kcore /proc/keys /proc/timer_list; do cat $f | wc -c; done; \
         ls /sys/firmware | wc -l",
    );
    let counts: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(counts, ["0", "0", "0", "0"], "{out}");
}

#[test]
fn readonly_paths_refuse_writes() {
    let t = Test::new("ropaths");
    let mut b = t.bundle();
    let out = t.sh(
        &mut b,
        "(echo other > /proc/sys/kernel/hostname) 2>&1; hostname; \
         grep ' /proc/sys ' /proc/self/mountinfo | cut -d' ' -f6",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("Read-only file system"), "{out}");
    assert_eq!(lines[1], "berth-test");
    assert!(lines[2].split(',').any(|o| o == "ro"), "{out}");
}

#[test]
fn dev_has_the_standard_devices_and_links() {
    let t = Test::new("devices");
    let mut b = t.bundle();
    let out = t.sh(
        &mut b,
        "for d in null zero full random urandom tty; do \
           [ -c /dev/$d ] && echo $d:$(stat -c '%t:%T' /dev/$d); done; \
         for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; \
         head -c 3 /dev/zero | od -An -tx1 | tr -d ' '; echo discard > /dev/null && echo null-ok; \
         (echo x > /dev/full) 2>&1; true",
    );
    let expected = "null:1:3\nzero:1:5\nfull:1:7\nrandom:1:8\nurandom:1:9\ntty:5:0\n\
                    /proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\npts/ptmx\n\
                    000000\nnull-ok\n";
    assert!(out.starts_with(expected), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
}

#[test]
fn linux_devices_are_created() {
    let t = Test::new("lnxdevices");
    let mut b = t.bundle();
    b.config["linux"]["devices"] = json!([{
        "path": "/dev/berth-full", "type": "c", "major": 1, "minor": 7,
        "fileMode": 0o640, "uid": 0, "gid": 0
    }]);
    b.resources()["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "allow": true, "type": "c", "major": 1, "minor": 7, "access": "rw" }));
    let out = t.sh(
        &mut b,
        "stat -c '%F %t:%T %a' /dev/berth-full; (echo x > /dev/berth-full) 2>&1; true",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "character special file 1:7 640", "{out}");
    assert!(lines[1].contains("No space left on device"), "{out}");
}

#[test]
fn rootfs_propagation_private() {
    let t = Test::new("propprivate");
    let mut b = t.bundle();
    t.share_dir();
    b.config["linux"]["rootfsPropagation"] = json!("private");
    let info = parse_mountinfo(&t.sh(&mut b, "cat /proc/self/mountinfo"));
    let root = info.iter().find(|m| m.0 == "/").unwrap();
    assert!(
        !root.3.contains("shared:") && !root.3.contains("master:"),
        "{root:?}"
    );
}

#[test]
fn rootfs_propagation_slave() {
    let t = Test::new("propslave");
    let mut b = t.bundle();
    t.share_dir();
    b.config["linux"]["rootfsPropagation"] = json!("rslave");
    let info = parse_mountinfo(&t.sh(&mut b, "cat /proc/self/mountinfo"));
    let root = info.iter().find(|m| m.0 == "/").unwrap();
    assert!(root.3.contains("master:"), "{root:?}");
    assert!(!root.3.contains("shared:"), "{root:?}");
}
