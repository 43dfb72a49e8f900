//! Lifecycle verbs: create, start, state, kill, delete, run, list, ps, pause, resume,
//! events, update, and the failures that must leave nothing behind.

mod common;

use common::*;
use serde_json::json;
use std::fs;

#[test]
fn create_start_kill_delete() {
    let t = Test::new("lifecycle");
    let mut b = t.bundle();
    b.sh("echo started-$$; exec sleep 1000");
    let created = t.create(&mut b, "c1").ok();
    let state = t.state("c1");
    assert_eq!(state["status"], "created");
    let pid = state["pid"].as_i64().unwrap();
    assert!(pid > 0, "pid in {state}");
    assert!(
        created.stdout_now().is_empty(),
        "process ran before start: {created}"
    );

    t.rt(&["start", "c1"]).ok();
    assert_eq!(t.status("c1"), "running");
    wait_until("the container's output", || {
        created.stdout_now().contains("started-1")
    });
    assert_eq!(t.state("c1")["pid"].as_i64().unwrap(), pid);

    t.rt(&["kill", "c1", "KILL"]).ok();
    t.wait_status("c1", "stopped");
    t.delete("c1", false);
    t.rt(&["state", "c1"]).failed();
}

#[test]
fn run_propagates_exit_code() {
    let t = Test::new("exitcode");
    let mut b = t.bundle();
    b.sh("echo out; echo err >&2; exit 3");
    let out = t.run(&mut b, "c1");
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err"), "{out}");
    t.assert_gone("c1");
}

#[test]
fn start_twice_fails() {
    let t = Test::new("starttwice");
    let mut b = t.bundle();
    t.start_background(&mut b, "c1", "sleep 1000");
    t.rt(&["start", "c1"]).failed();
    assert_eq!(t.status("c1"), "running");
    t.delete("c1", true);
}

#[test]
fn pid_file_holds_the_init_pid() {
    let t = Test::new("pidfile");
    let mut b = t.bundle();
    b.sh("sleep 1000");
    t.prepare(&mut b, "c1");
    let pid_file = t.dir.join("c1.pid");
    t.rt(&[
        "create",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--bundle",
        b.path.to_str().unwrap(),
        "c1",
    ])
    .ok();
    let written: i64 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(written, t.state("c1")["pid"].as_i64().unwrap());
    t.delete("c1", true);
}

#[test]
fn run_detached() {
    let t = Test::new("detach");
    let mut b = t.bundle();
    b.sh("trap 'exit 0' TERM; echo up; sleep 1000 & wait");
    t.prepare(&mut b, "c1");
    let out = t
        .rt(&["run", "-d", "--bundle", b.path.to_str().unwrap(), "c1"])
        .ok();
    assert_eq!(t.status("c1"), "running");
    wait_until("output of the detached container", || {
        out.stdout_now().contains("up")
    });
    t.rt(&["kill", "c1", "TERM"]).ok();
    t.wait_status("c1", "stopped");
    t.delete("c1", false);
}

#[test]
fn state_json_fields() {
    let t = Test::new("statejson");
    let mut b = t.bundle();
    b.sh("sleep 1000");
    t.create(&mut b, "c1").ok();
    let state = t.state("c1");
    assert!(state["ociVersion"].as_str().unwrap().starts_with("1."));
    assert_eq!(state["id"], "c1");
    assert!(state["pid"].as_i64().unwrap() > 0);
    assert_eq!(state["status"], "created");
    assert_eq!(state["bundle"], json!(b.path.to_str().unwrap()));
    let created = state["created"].as_str().unwrap();
    assert!(
        created.len() >= 20 && created.contains('T'),
        "created is not RFC 3339: {created}"
    );
    t.delete("c1", true);
}

#[test]
fn list_quiet_and_json() {
    let t = Test::new("list");
    let mut b = t.bundle();
    b.sh("sleep 1000");
    t.create(&mut b, "alpha").ok();
    t.start_background(&mut b, "beta", "sleep 1000");

    let table = t.rt(&["list"]).ok().stdout;
    let header = table.lines().next().unwrap();
    for column in ["ID", "PID", "STATUS", "BUNDLE", "CREATED"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table
        .lines()
        .any(|l| l.starts_with("alpha ") && l.contains("created")));
    assert!(table
        .lines()
        .any(|l| l.starts_with("beta ") && l.contains("running")));

    let quiet = t.rt(&["list", "-q"]).ok().stdout;
    let mut ids: Vec<&str> = quiet.lines().collect();
    ids.sort();
    assert_eq!(ids, ["alpha", "beta"]);

    let listed = t.rt(&["list", "--format", "json"]).ok().json();
    let entries = listed.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let beta = entries.iter().find(|e| e["id"] == "beta").unwrap();
    assert_eq!(beta["status"], "running");
    assert_eq!(beta["pid"], t.state("beta")["pid"]);
    assert_eq!(beta["bundle"], json!(b.path.to_str().unwrap()));

    t.delete("alpha", true);
    t.delete("beta", true);
    assert_eq!(t.rt(&["list", "-q"]).ok().stdout, "");
}

#[test]
fn duplicate_id_fails() {
    let t = Test::new("dupid");
    let mut b = t.bundle();
    b.sh("sleep 1000");
    t.create(&mut b, "c1").ok();
    let pid = t.state("c1")["pid"].clone();
    let out = t
        .rt(&["create", "--bundle", b.path.to_str().unwrap(), "c1"])
        .failed();
    assert!(out.stderr.contains("exist"), "{out}");
    let state = t.state("c1");
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid);
    t.delete("c1", true);
}

#[test]
fn bad_ids_fail() {
    let t = Test::new("badid");
    let mut b = t.bundle();
    b.sh("true");
    t.prepare(&mut b, "x");
    for id in ["a/b", "..", "../escape", "a/../../b", "."] {
        let out = t.rt(&["create", "--bundle", b.path.to_str().unwrap(), id]);
        assert!(!out.success(), "id {id:?} was accepted: {out}");
    }
    assert!(!t.dir.join("escape").exists());
    assert!(!t.root.join("a").exists());
    assert_eq!(t.rt(&["list", "-q"]).stdout, "");
    t.assert_gone("x");
}

#[test]
fn missing_rootfs_fails_and_leaves_nothing() {
    let t = Test::new("norootfs");
    let mut b = t.bundle();
    b.config["root"]["path"] = json!("no-such-rootfs");
    let out = t.create(&mut b, "c1").failed();
    assert!(out.stderr.contains("no-such-rootfs"), "{out}");
    t.assert_nothing_left("c1");
}

/// runc resolves a relative --bundle against its cwd; the issue asks for a refusal.
#[test]
fn relative_bundle_fails() {
    let t = Test::new("relbundle");
    let mut b = t.bundle();
    b.sh("true");
    t.prepare(&mut b, "c1");
    let name = b.path.file_name().unwrap().to_str().unwrap().to_string();
    let dir = t.dir.clone();
    let out = t.rt_with(&["run", "--bundle", &name, "c1"], |cmd| {
        cmd.current_dir(&dir);
    });
    assert!(!out.success(), "relative bundle accepted: {out}");
    t.assert_nothing_left("c1");
}

#[test]
fn invalid_config_names_the_field() {
    let t = Test::new("badconfig");
    let mut b = t.bundle();
    b.config["process"]["args"] = json!(5);
    let out = t.create(&mut b, "c1").failed();
    assert!(out.stderr.contains("args"), "{out}");
    t.assert_nothing_left("c1");
}

#[test]
fn unknown_namespace_fails() {
    let t = Test::new("badns");
    let mut b = t.bundle();
    b.sh("true");
    b.add_namespace("bogus");
    let out = t.create(&mut b, "c1").failed();
    assert!(out.stderr.contains("bogus"), "{out}");
    t.assert_nothing_left("c1");
}

#[test]
fn failing_process_leaves_nothing() {
    let t = Test::new("noexec");
    let mut b = t.bundle();
    b.args(&["/no/such/binary"]);
    let out = t.run(&mut b, "c1").failed();
    assert!(out.stderr.contains("/no/such/binary"), "{out}");
    t.assert_nothing_left("c1");
}

#[test]
fn kill_all_reaches_every_process() {
    let t = Test::new("killall");
    let mut b = t.bundle();
    // Without a pid namespace, killing init alone would leave its children running.
    b.remove_namespace("pid");
    let pid = t.start_background(&mut b, "c1", "sleep 1001 & sleep 1002 & trap '' TERM; wait");
    let procs = cgroup_dirs(&t.cgroup_path("c1"))
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/pids"))
        .unwrap()
        .join("cgroup.procs");
    wait_until("three processes in the cgroup", || {
        fs::read_to_string(&procs).unwrap().lines().count() == 3
    });
    t.rt(&["kill", "--all", "c1", "KILL"]).ok();
    wait_until("the cgroup to empty", || {
        fs::read_to_string(&procs).unwrap().trim().is_empty()
    });
    t.wait_status("c1", "stopped");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
            // reaped by pid 1 soon; a zombie has an empty cmdline
            fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .is_empty()
        }
    );
    t.delete("c1", false);
}

#[test]
fn delete_force_of_running_container() {
    let t = Test::new("delforce");
    let mut b = t.bundle();
    t.start_background(&mut b, "c1", "sleep 1000");
    t.rt(&["delete", "c1"]).failed();
    assert_eq!(t.status("c1"), "running");
    t.delete("c1", true);
}

#[test]
fn delete_force_of_created_container() {
    let t = Test::new("delcreated");
    let mut b = t.bundle();
    b.sh("sleep 1000");
    t.create(&mut b, "c1").ok();
    t.delete("c1", true);
}

#[test]
fn ps_lists_the_init() {
    let t = Test::new("ps");
    let mut b = t.bundle();
    let pid = t.start_background(&mut b, "c1", "exec sleep 1000");
    let table = t.rt(&["ps", "c1"]).ok().stdout;
    assert!(table.lines().next().unwrap().contains("PID"), "{table}");
    assert!(
        table.lines().skip(1).any(
            |l| l.split_whitespace().any(|field| field == pid.to_string()) && l.contains("sleep")
        ),
        "{table}"
    );
    let pids = t.rt(&["ps", "--format", "json", "c1"]).ok().json();
    assert_eq!(pids, json!([pid]));
    t.delete("c1", true);
}

#[test]
fn pause_and_resume() {
    let t = Test::new("pause");
    let mut b = t.bundle();
    b.sh("while true; do echo tick >> /tmp/ticks; sleep 0.05; done");
    t.create(&mut b, "c1").ok();
    t.rt(&["start", "c1"]).ok();
    let ticks = b.rootfs().join("tmp/ticks");
    wait_until("ticks", || ticks.exists());
    t.rt(&["pause", "c1"]).ok();
    assert_eq!(t.status("c1"), "paused");
    let freezer = cgroup_mount("freezer")
        .join(t.cgroup_path("c1").trim_start_matches('/'))
        .join("freezer.state");
    assert_eq!(fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    let frozen = fs::read_to_string(&ticks).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        fs::read_to_string(&ticks).unwrap(),
        frozen,
        "ticked while paused"
    );
    t.rt(&["resume", "c1"]).ok();
    assert_eq!(t.status("c1"), "running");
    wait_until("ticks after resume", || {
        fs::read_to_string(&ticks).unwrap().len() > frozen.len()
    });
    t.delete("c1", true);
}

#[test]
fn events_stats_reports_memory() {
    let t = Test::new("events");
    let mut b = t.bundle();
    t.start_background(&mut b, "c1", "sleep 1000");
    let out = t.rt(&["events", "--stats", "c1"]).ok();
    let event: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], "c1");
    let usage = event["data"]["memory"]["usage"]["usage"].as_u64().unwrap();
    assert!(usage > 0, "{event}");
    assert!(event["data"]["pids"]["current"].as_u64().unwrap() >= 1);
    t.delete("c1", true);
}

#[test]
fn update_memory_of_running_container() {
    let t = Test::new("update");
    let mut b = t.bundle();
    t.start_background(&mut b, "c1", "sleep 1000");
    t.rt(&["update", "--memory", "104857600", "c1"]).ok();
    let inside = t.exec_sh("c1", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes");
    assert_eq!(inside.trim(), "104857600");
    let host = cgroup_mount("memory")
        .join(t.cgroup_path("c1").trim_start_matches('/'))
        .join("memory.limit_in_bytes");
    assert_eq!(fs::read_to_string(host).unwrap().trim(), "104857600");
    t.rt(&["update", "--pids-limit", "77", "c1"]).ok();
    assert_eq!(
        t.exec_sh("c1", "cat /sys/fs/cgroup/pids/pids.max").trim(),
        "77"
    );
    t.delete("c1", true);
}

#[test]
fn preserve_fds_passes_extra_fds() {
    let t = Test::new("preservefds");
    let mut b = t.bundle();
    let secret = t.dir.join("secret");
    fs::write(&secret, "fd three\n").unwrap();
    b.sh("cat <&3; test -e /proc/$$/fd/4 && echo fd 4 leaked || echo fd 4 closed");
    t.prepare(&mut b, "c1");
    let out = t
        .rt_shell(
            &format!("exec 3<{} 4<{}", secret.display(), secret.display()),
            &[
                "run",
                "--preserve-fds",
                "1",
                "--bundle",
                b.path.to_str().unwrap(),
                "c1",
            ],
        )
        .ok();
    // fd 3 is passed, fd 4 (beyond --preserve-fds) is not.
    assert_eq!(out.stdout, "fd three\nfd 4 closed\n");
    t.assert_gone("c1");
}

#[test]
fn listen_fds_are_passed() {
    let t = Test::new("listenfds");
    let mut b = t.bundle();
    let first = t.dir.join("first");
    let second = t.dir.join("second");
    fs::write(&first, "one\n").unwrap();
    fs::write(&second, "two\n").unwrap();
    b.sh("echo LISTEN_FDS=$LISTEN_FDS; cat <&3; cat <&4");
    t.prepare(&mut b, "c1");
    let out = t
        .rt_shell(
            &format!(
                "exec 3<{} 4<{}; export LISTEN_FDS=2 LISTEN_PID=$$",
                first.display(),
                second.display()
            ),
            &["run", "--bundle", b.path.to_str().unwrap(), "c1"],
        )
        .ok();
    assert_eq!(out.stdout, "LISTEN_FDS=2\none\ntwo\n");
    t.assert_gone("c1");
}
