//! OCI hooks: each kind runs once, in order, with the container state on stdin; a hook
//! that fails or outlives its timeout fails the operation and leaves nothing behind.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::time::{Duration, Instant};

/// A hook that saves its stdin as `<dir>/<name>.json` and appends `name` to `<dir>/order`.
fn recording_hook(dir: &str, name: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat > {dir}/{name}.json; echo {name} >> {dir}/order")]
    })
}

#[test]
fn every_hook_runs_in_order_with_the_state() {
    let t = Test::new("hooks");
    let markers = t.dir.join("markers");
    fs::create_dir_all(&markers).unwrap();
    let host_dir = markers.to_str().unwrap();
    let mut b = t.bundle();
    // startContainer runs inside the container, after pivot_root: it sees the markers
    // directory through this bind mount.
    b.mounts().push(json!({
        "destination": "/markers", "type": "bind", "source": host_dir, "options": ["bind"]
    }));
    b.config["hooks"] = json!({
        "prestart": [recording_hook(host_dir, "prestart")],
        "createRuntime": [recording_hook(host_dir, "createRuntime")],
        "createContainer": [recording_hook(host_dir, "createContainer")],
        "startContainer": [recording_hook("/markers", "startContainer")],
        "poststart": [recording_hook(host_dir, "poststart")],
        "poststop": [recording_hook(host_dir, "poststop")]
    });
    b.sh("echo process >> /markers/order; exec sleep 1000");
    t.create(&mut b, "c1").ok();
    let pid = t.state("c1")["pid"].as_i64().unwrap();
    let order = || fs::read_to_string(markers.join("order")).unwrap_or_default();
    // runc 1.1 runs poststart during create; the spec has it after start.
    assert_eq!(order(), "prestart\ncreateRuntime\ncreateContainer\n");

    t.rt(&["start", "c1"]).ok();
    wait_until("the process to run", || order().contains("process"));
    let lines = order();
    assert!(
        lines.starts_with("prestart\ncreateRuntime\ncreateContainer\nstartContainer\n"),
        "{lines}"
    );
    // poststart and the process race; both follow startContainer.
    assert!(lines.contains("poststart\n"), "{lines}");

    t.rt(&["kill", "c1", "KILL"]).ok();
    t.wait_status("c1", "stopped");
    t.delete("c1", false);
    assert!(order().ends_with("poststop\n"), "{}", order());
    assert_eq!(
        order().lines().count(),
        7,
        "each hook ran once: {}",
        order()
    );

    let bundle = b.path.to_str().unwrap();
    for (name, statuses) in [
        ("prestart", &["creating", "created"][..]),
        ("createRuntime", &["creating", "created"][..]),
        ("createContainer", &["creating", "created"][..]),
        ("startContainer", &["created", "running"][..]),
        ("poststart", &["running"][..]),
        ("poststop", &["stopped"][..]),
    ] {
        let text = fs::read_to_string(markers.join(format!("{name}.json"))).unwrap();
        let state: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} got no state JSON ({e}): {text:?}"));
        assert_eq!(state["id"], "c1", "{name}: {state}");
        assert_eq!(state["bundle"], json!(bundle), "{name}: {state}");
        assert!(
            statuses.contains(&state["status"].as_str().unwrap_or("")),
            "{name}: {state}"
        );
        assert!(state["ociVersion"].is_string(), "{name}: {state}");
        match name {
            "poststop" => {}
            // These run in the container's namespaces; runc gives the pid as seen there.
            "createContainer" | "startContainer" => assert!(
                [Some(pid), Some(1)].contains(&state["pid"].as_i64()),
                "{name}: {state}"
            ),
            _ => assert_eq!(state["pid"].as_i64(), Some(pid), "{name}: {state}"),
        }
    }
}

#[test]
fn hook_timeout_fails_create() {
    let t = Test::new("hooktimeout");
    let mut b = t.bundle();
    b.sh("true");
    b.config["hooks"] = json!({
        "createRuntime": [{ "path": "/bin/sleep", "args": ["sleep", "20"], "timeout": 1 }]
    });
    let started = Instant::now();
    let out = t.create(&mut b, "c1").failed();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "timeout not enforced: {:?}",
        started.elapsed()
    );
    assert!(
        out.stderr.contains("timed out") || out.stderr.contains("timeout"),
        "{out}"
    );
    t.assert_nothing_left("c1");
}

#[test]
fn failing_hook_fails_create() {
    let t = Test::new("hookfail");
    let mut b = t.bundle();
    b.sh("true");
    b.config["hooks"] = json!({
        "prestart": [{ "path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 7"] }]
    });
    let out = t.create(&mut b, "c1").failed();
    assert!(
        out.stderr.contains("hook-said-no") || out.stderr.contains('7'),
        "{out}"
    );
    t.assert_nothing_left("c1");
}

#[test]
fn hook_env_and_args() {
    let t = Test::new("hookenv");
    let marker = t.dir.join("env");
    let mut b = t.bundle();
    b.sh("true");
    b.config["hooks"] = json!({
        "createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", "echo \"$0 $1 $HOOK_VAR\" > \"$1\"", "zero", marker.to_str().unwrap()],
            "env": ["HOOK_VAR=from-config"]
        }]
    });
    t.run(&mut b, "c1").ok();
    assert_eq!(
        fs::read_to_string(&marker).unwrap(),
        format!("zero {} from-config\n", marker.display())
    );
}
