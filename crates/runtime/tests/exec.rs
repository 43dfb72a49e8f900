//! `exec` into a running container: it joins the init's namespaces and cgroup, and takes
//! its process from flags or from `--process process.json`.

mod common;

use common::*;
use serde_json::json;
use std::fs;

fn running(t: &Test, id: &str) -> i32 {
    let mut b = t.bundle();
    b.config["hostname"] = json!("exec-box");
    t.start_background(&mut b, id, "exec sleep 1000")
}

#[test]
fn exec_joins_namespaces_and_cgroup() {
    let t = Test::new("execns");
    let pid = running(&t, "c1");
    let out = t.exec_sh(
        "c1",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
         for ns in mnt uts ipc net pid; do readlink /proc/self/ns/$ns; done",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "exec-box");
    assert_eq!(lines[1].trim(), "sleep 1000");
    for (i, ns) in ["mnt", "uts", "ipc", "net", "pid"].iter().enumerate() {
        let init = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_eq!(lines[2 + i], init.to_str().unwrap(), "{ns}");
    }
    let ps = t.exec_sh("c1", "ps -o pid,comm");
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep"]),
        "{ps}"
    );
    let inside = t.exec_sh("c1", "cat /proc/self/cgroup");
    let init = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(inside, init);
    t.delete("c1", true);
}

#[test]
fn exec_exit_code_and_stdio() {
    let t = Test::new("execexit");
    running(&t, "c1");
    let out = t.rt(&["exec", "c1", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(out.code, 5, "{out}");
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err"));
    t.delete("c1", true);
}

#[test]
fn exec_user_env_cwd_cap() {
    let t = Test::new("execopts");
    running(&t, "c1");
    let out = t
        .rt(&[
            "exec",
            "--user",
            "1000:1000",
            "--env",
            "GREETING=hi there",
            "--cwd",
            "/tmp",
            "c1",
            "sh",
            "-c",
            "id -u; id -g; echo $GREETING; pwd",
        ])
        .ok();
    assert_eq!(out.stdout, "1000\n1000\nhi there\n/tmp\n");
    let status = t
        .rt(&[
            "exec",
            "--cap",
            "CAP_SYS_ADMIN",
            "c1",
            "cat",
            "/proc/self/status",
        ])
        .ok()
        .stdout;
    let eff = u64::from_str_radix(&status_field(&status, "CapEff"), 16).unwrap();
    assert_ne!(eff & (1 << 21), 0, "CAP_SYS_ADMIN missing: {status}");
    assert_ne!(eff & (1 << 5), 0, "the container's caps are kept: {status}");
    t.delete("c1", true);
}

#[test]
fn exec_process_json() {
    let t = Test::new("execjson");
    running(&t, "c1");
    let process = t.dir.join("process.json");
    fs::write(
        &process,
        serde_json::to_string(&json!({
            "terminal": false,
            "user": { "uid": 65534, "gid": 65534 },
            "args": ["sh", "-c", "echo $FROM_JSON; id -u; pwd"],
            "env": ["PATH=/bin", "FROM_JSON=yes"],
            "cwd": "/etc"
        }))
        .unwrap(),
    )
    .unwrap();
    let out = t
        .rt(&["exec", "--process", process.to_str().unwrap(), "c1"])
        .ok();
    assert_eq!(out.stdout, "yes\n65534\n/etc\n");
    t.delete("c1", true);
}

#[test]
fn exec_detached_with_pid_file() {
    let t = Test::new("execdetach");
    running(&t, "c1");
    let pid_file = t.dir.join("exec.pid");
    t.rt(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "c1",
        "sh",
        "-c",
        "echo $$ > /tmp/exec-ns-pid; exec sleep 999",
    ])
    .ok();
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("exec'd sleep", || {
        fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .starts_with("sleep")
    });
    let ps = t.rt(&["ps", "--format", "json", "c1"]).ok().json();
    assert!(ps.as_array().unwrap().contains(&json!(pid)), "{ps}");
    t.delete("c1", true);
}

#[test]
fn exec_into_stopped_container_fails() {
    let t = Test::new("execstopped");
    let mut b = t.bundle();
    t.start_background(&mut b, "c1", "true");
    t.wait_status("c1", "stopped");
    t.rt(&["exec", "c1", "true"]).failed();
    t.delete("c1", false);
}
