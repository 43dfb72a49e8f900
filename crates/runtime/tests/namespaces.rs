//! Namespaces, each observed from inside the container: pid, uts, ipc, net, mount, cgroup,
//! user (with id mappings), and joining an existing namespace by path.

mod common;

use common::*;
use serde_json::json;
use std::fs;

/// The inode link of one of this (host) process's namespaces, e.g. `net:[4026531840]`.
fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .to_string()
}

#[test]
fn pid_namespace_makes_the_process_pid_1() {
    let t = Test::new("pidns");
    let mut b = t.bundle();
    let out = t.sh(
        &mut b,
        "echo $$; ls /proc | grep -c '^[0-9]'; readlink /proc/self/ns/pid",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1");
    // sh, ls and grep: nothing of the host is visible.
    assert!(lines[1].parse::<u32>().unwrap() <= 3, "{out}");
    assert_ne!(lines[2], host_ns("pid"));
}

#[test]
fn uts_namespace_sets_hostname_and_domainname() {
    let t = Test::new("utsns");
    let mut b = t.bundle();
    b.config["hostname"] = json!("berth-box");
    b.config["domainname"] = json!("berth.example");
    let out = t.sh(
        &mut b,
        "hostname; cat /proc/sys/kernel/domainname; readlink /proc/self/ns/uts",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["berth-box", "berth.example"]);
    assert_ne!(lines[2], host_ns("uts"));
    assert_ne!(host("hostname", &[]).trim(), "berth-box");
}

#[test]
fn ipc_namespace_is_private() {
    let t = Test::new("ipcns");
    let mut b = t.bundle();
    let out = t.sh(
        &mut b,
        "readlink /proc/self/ns/ipc; ipcs -q | grep -c '^0x' || true",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], host_ns("ipc"));
    assert_eq!(lines[1], "0");
}

#[test]
fn network_namespace_has_only_loopback() {
    let t = Test::new("netns");
    let mut b = t.bundle();
    let out = t.sh(
        &mut b,
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; readlink /proc/self/ns/net",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    assert_eq!(lines.len(), 2, "{out}");
    assert_ne!(lines[1], host_ns("net"));
}

#[test]
fn no_network_namespace_shares_the_host_network() {
    let t = Test::new("hostnet");
    let mut b = t.bundle();
    b.remove_namespace("network");
    let out = t.sh(&mut b, "readlink /proc/self/ns/net");
    assert_eq!(out.trim(), host_ns("net"));
}

#[test]
fn mount_namespace_is_private() {
    let t = Test::new("mntns");
    let mut b = t.bundle();
    let out = t.sh(
        &mut b,
        "readlink /proc/self/ns/mnt; mount -t tmpfs none /mnt 2>/dev/null && echo mounted; true",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], host_ns("mnt"));
    // CAP_SYS_ADMIN is not in the default set: mounting is refused.
    assert_eq!(lines.len(), 1, "{out}");
    assert!(mounts_under(&t.dir).is_empty());
}

#[test]
fn cgroup_namespace_roots_the_container_cgroup() {
    let t = Test::new("cgroupns");
    let mut b = t.bundle();
    b.add_namespace("cgroup");
    let out = t.sh(
        &mut b,
        "cat /proc/self/cgroup; readlink /proc/self/ns/cgroup",
    );
    let mut lines: Vec<&str> = out.lines().collect();
    let ns = lines.pop().unwrap();
    assert_ne!(ns, host_ns("cgroup"));
    assert!(!lines.is_empty());
    for line in lines {
        assert!(line.ends_with(":/"), "not the root: {line} in {out}");
    }
}

#[test]
fn user_namespace_maps_ids() {
    let t = Test::new("userns");
    let mut b = t.bundle();
    b.add_namespace("user");
    b.config["linux"]["uidMappings"] =
        json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    b.config["linux"]["gidMappings"] =
        json!([{ "containerID": 0, "hostID": 200000, "size": 65536 }]);
    // A v1 cgroup bind mount is not allowed from a user namespace without its own cgroupns.
    b.mounts().retain(|m| m["destination"] != "/sys/fs/cgroup");
    b.sh("id -u; id -g; cat /proc/self/uid_map; cat /proc/self/gid_map; readlink /proc/self/ns/user; sleep 1000");
    let created = t.create(&mut b, "c1").ok();
    let pid = t.state("c1")["pid"].as_i64().unwrap();
    t.rt(&["start", "c1"]).ok();
    wait_until("output", || created.stdout_now().lines().count() >= 5);
    let out = created.stdout_now();
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"]);
    assert_eq!(lines[1], ["0"]);
    assert_eq!(lines[2], ["0", "100000", "65536"]);
    assert_eq!(lines[3], ["0", "200000", "65536"]);
    assert_ne!(lines[4], [host_ns("user").as_str()]);
    // Seen from the host, the container's root is uid 100000.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status_field(&status, "Uid").starts_with("100000"),
        "{status}"
    );
    assert!(
        status_field(&status, "Gid").starts_with("200000"),
        "{status}"
    );
    t.delete("c1", true);
}

#[test]
fn join_network_namespace_by_path() {
    let t = Test::new("joinnet");
    let name = format!("berth-test-{}", std::process::id());
    host("ip", &["netns", "add", &name]);
    let cleanup_name = name.clone();
    t.on_cleanup(move || {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &cleanup_name])
            .status();
    });
    let inode = host("stat", &["-L", "-c", "%i", &format!("/run/netns/{name}")]);
    let mut b = t.bundle();
    for ns in b.namespaces().iter_mut() {
        if ns["type"] == "network" {
            ns["path"] = json!(format!("/run/netns/{name}"));
        }
    }
    let out = t.sh(&mut b, "readlink /proc/self/ns/net");
    assert_eq!(out, format!("net:[{}]\n", inode.trim()));
}

#[test]
fn join_uts_namespace_of_another_container() {
    let t = Test::new("joinuts");
    let mut first = t.bundle();
    first.config["hostname"] = json!("first-box");
    let pid = t.start_background(&mut first, "first", "sleep 1000");

    let mut second = t.bundle();
    second.config.as_object_mut().unwrap().remove("hostname");
    for ns in second.namespaces().iter_mut() {
        if ns["type"] == "uts" {
            ns["path"] = json!(format!("/proc/{pid}/ns/uts"));
        }
    }
    let out = t.sh(&mut second, "hostname; readlink /proc/self/ns/uts");
    let expected = fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap();
    assert_eq!(out, format!("first-box\n{}\n", expected.to_string_lossy()));
    t.delete("first", true);
}
