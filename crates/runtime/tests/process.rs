//! The container process as it sees itself: args and PATH, env, cwd, user and groups,
//! umask, rlimits, capabilities, no_new_privs, oom_score_adj, sysctls, seccomp, and LSM
//! fields that are accepted on a host without that LSM.

mod common;

use common::*;
use serde_json::json;

#[test]
fn args_are_looked_up_in_path() {
    let t = Test::new("pathlookup");
    let mut b = t.bundle();
    b.config["process"]["env"] = json!(["PATH=/nowhere:/bin"]);
    b.args(&["echo", "found", "in path"]);
    let out = t.run(&mut b, "c1").ok();
    assert_eq!(out.stdout, "found in path\n");
}

#[test]
fn env_is_exactly_the_configured_one() {
    let t = Test::new("env");
    let mut b = t.bundle();
    b.config["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz", "EMPTY="]);
    let out = t.sh(
        &mut b,
        "echo \"$FOO|$EMPTY|${HOME:-unset}\"; env | grep -c '^BERTH' || true",
    );
    // HOME is set from the user's passwd entry when the config has none.
    assert_eq!(out, "bar baz||/root\n0\n");
}

#[test]
fn cwd_is_applied() {
    let t = Test::new("cwd");
    let mut b = t.bundle();
    std::fs::create_dir_all(b.rootfs().join("work/dir")).unwrap();
    b.config["process"]["cwd"] = json!("/work/dir");
    assert_eq!(t.sh(&mut b, "pwd"), "/work/dir\n");
}

#[test]
fn user_group_and_additional_groups() {
    let t = Test::new("user");
    let mut b = t.bundle();
    b.config["process"]["user"] = json!({ "uid": 1000, "gid": 1001, "additionalGids": [10, 20] });
    let out = t.sh(
        &mut b,
        "id -u; id -g; id -G; grep -E '^(Uid|Gid|Groups)' /proc/self/status",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1001");
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["10", "1001", "20"], "{out}");
    assert_eq!(
        status_field(&out, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4]
    );
    let groups_field = status_field(&out, "Groups");
    let mut supplementary: Vec<&str> = groups_field.split_whitespace().collect();
    supplementary.sort();
    assert_eq!(supplementary, ["10", "20"], "{out}");
}

#[test]
fn user_without_passwd_entry() {
    let t = Test::new("nopasswd");
    let mut b = t.bundle();
    b.config["process"]["user"] = json!({ "uid": 4242, "gid": 4343 });
    let out = t.sh(
        &mut b,
        "echo $(id -u) $(id -g); touch /tmp/f; stat -c '%u %g' /tmp/f",
    );
    assert_eq!(out, "4242 4343\n4242 4343\n");
}

#[test]
fn umask_is_applied() {
    let t = Test::new("umask");
    let mut b = t.bundle();
    b.config["process"]["user"]["umask"] = json!(0o077);
    let out = t.sh(&mut b, "umask; touch /tmp/f; stat -c %a /tmp/f");
    assert_eq!(out, "0077\n600\n");
}

#[test]
fn rlimits_are_applied() {
    let t = Test::new("rlimits");
    let mut b = t.bundle();
    b.config["process"]["rlimits"] = json!([
        { "type": "RLIMIT_NOFILE", "soft": 512, "hard": 2048 },
        { "type": "RLIMIT_NPROC", "soft": 300, "hard": 300 },
        { "type": "RLIMIT_CORE", "soft": 0, "hard": 0 }
    ]);
    let out = t.sh(&mut b, "ulimit -n; ulimit -Hn; ulimit -u; ulimit -c");
    assert_eq!(out, "512\n2048\n300\n0\n");
}

#[test]
fn default_capabilities() {
    let t = Test::new("capsdefault");
    let mut b = t.bundle();
    let status = t.sh(&mut b, "cat /proc/1/status");
    // CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29).
    let expected = format!("{:016x}", (1u64 << 5) | (1 << 10) | (1 << 29));
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(&status, field), expected, "{field}");
    }
    // runc's spec lists ambient caps but no inheritable ones; the kernel only raises an
    // ambient cap that is also inheritable, so both sets stay empty.
    assert_eq!(status_field(&status, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&status, "CapAmb"), "0000000000000000");
}

#[test]
fn configured_capability_sets() {
    let t = Test::new("capsset");
    let mut b = t.bundle();
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_SETUID"],
        "permitted": ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_RAW"],
        "effective": ["CAP_CHOWN", "CAP_SYS_ADMIN"],
        "inheritable": ["CAP_NET_RAW"],
        "ambient": ["CAP_NET_RAW"]
    });
    let status = t.sh(&mut b, "cat /proc/1/status");
    let mask = |bits: &[u32]| format!("{:016x}", bits.iter().fold(0u64, |m, b| m | 1 << b));
    // CAP_CHOWN 0, CAP_SETUID 7, CAP_NET_RAW 13, CAP_SYS_ADMIN 21.
    assert_eq!(status_field(&status, "CapBnd"), mask(&[0, 7, 13, 21]));
    // exec recomputes: ambient caps join permitted and effective.
    assert_eq!(status_field(&status, "CapPrm"), mask(&[0, 13, 21]));
    assert_eq!(status_field(&status, "CapEff"), mask(&[0, 13, 21]));
    assert_eq!(status_field(&status, "CapInh"), mask(&[13]));
    assert_eq!(status_field(&status, "CapAmb"), mask(&[13]));
}

#[test]
fn capabilities_for_non_root_user() {
    let t = Test::new("capsuser");
    let mut b = t.bundle();
    b.config["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
    let caps = b.config["process"]["capabilities"]["bounding"].clone();
    b.config["process"]["capabilities"]["inheritable"] = caps;
    let status = t.sh(&mut b, "cat /proc/1/status");
    let expected = format!("{:016x}", (1u64 << 5) | (1 << 10) | (1 << 29));
    // The ambient set keeps the caps across the switch to a non-root uid.
    assert_eq!(status_field(&status, "CapEff"), expected);
    assert_eq!(status_field(&status, "CapAmb"), expected);
}

#[test]
fn no_new_privileges() {
    let t = Test::new("nnp");
    let mut b = t.bundle();
    assert_eq!(
        t.sh(&mut b, "grep NoNewPrivs /proc/1/status"),
        "NoNewPrivs:\t1\n"
    );
    b.config["process"]["noNewPrivileges"] = json!(false);
    assert_eq!(
        t.sh(&mut b, "grep NoNewPrivs /proc/1/status"),
        "NoNewPrivs:\t0\n"
    );
}

#[test]
fn oom_score_adj() {
    let t = Test::new("oomscore");
    let mut b = t.bundle();
    b.config["process"]["oomScoreAdj"] = json!(500);
    assert_eq!(t.sh(&mut b, "cat /proc/self/oom_score_adj"), "500\n");
}

#[test]
fn sysctls_in_net_and_ipc_namespaces() {
    let t = Test::new("sysctl");
    let mut b = t.bundle();
    b.config["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": "1",
        "kernel.shmmax": "123456789",
        "kernel.msgmax": "4242"
    });
    let out = t.sh(
        &mut b,
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax /proc/sys/kernel/msgmax",
    );
    assert_eq!(out, "1\n123456789\n4242\n");
    let host_shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    assert_ne!(host_shmmax.trim(), "123456789");
}

#[test]
fn sysctl_outside_a_private_namespace_is_refused() {
    let t = Test::new("sysctlhost");
    let mut b = t.bundle();
    b.remove_namespace("network");
    b.config["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": "1" });
    b.sh("true");
    let before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let out = t.run(&mut b, "c1").failed();
    assert!(out.stderr.contains("net.ipv4.ip_forward"), "{out}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        before
    );
    t.assert_nothing_left("c1");
}

#[test]
fn seccomp_errno_ret() {
    let t = Test::new("seccomp");
    let mut b = t.bundle();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 },
            { "names": ["sethostname"], "action": "SCMP_ACT_ERRNO" }
        ]
    });
    b.config["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_SYS_ADMIN"));
    for set in ["effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
    }
    let out = t.sh(
        &mut b,
        "mkdir /tmp/d 2>&1; hostname other 2>&1; hostname; touch /tmp/f && echo touch-ok; true",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("Permission denied"), "{out}");
    // Without errnoRet, SCMP_ACT_ERRNO is EPERM.
    assert!(lines[1].contains("Operation not permitted"), "{out}");
    assert_eq!(lines[2..], ["berth-test", "touch-ok"], "{out}");
}

#[test]
fn seccomp_argument_filter() {
    let t = Test::new("seccompargs");
    let mut b = t.bundle();
    // chmod(path, mode) has mode at index 1, fchmodat(dirfd, path, mode) at index 2.
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
              "args": [{ "index": 1, "value": 0o777, "op": "SCMP_CMP_EQ" }] },
            { "names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
              "args": [{ "index": 2, "value": 0o777, "op": "SCMP_CMP_EQ" }] }
        ]
    });
    let out = t.sh(
        &mut b,
        "touch /tmp/f; chmod 755 /tmp/f && stat -c %a /tmp/f; chmod 777 /tmp/f 2>&1; stat -c %a /tmp/f",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "755", "{out}");
    assert!(lines[1].contains("Operation not permitted"), "{out}");
    assert_eq!(lines[2], "755", "{out}");
}

#[test]
fn seccomp_kill_default_action() {
    let t = Test::new("seccompkill");
    let mut b = t.bundle();
    // Everything allowed except sync, which kills with SIGSYS.
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["sync"], "action": "SCMP_ACT_KILL" }]
    });
    let out = t.sh(&mut b, "echo before; sync; echo status=$?");
    assert_eq!(out, format!("before\nstatus={}\n", 128 + 31));
}

#[test]
fn apparmor_profile_is_accepted_without_apparmor() {
    let t = Test::new("apparmor");
    let mut b = t.bundle();
    b.config["process"]["apparmorProfile"] = json!("berth-test-profile");
    assert_eq!(t.sh(&mut b, "echo ran"), "ran\n");
}

/// runc refuses an SELinux label on a host without SELinux; the issue asks to ignore it.
#[test]
fn selinux_label_is_accepted_without_selinux() {
    let t = Test::new("selinux");
    let mut b = t.bundle();
    b.config["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
    b.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    assert_eq!(t.sh(&mut b, "echo ran"), "ran\n");
}
