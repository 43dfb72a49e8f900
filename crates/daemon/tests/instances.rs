//! Seed 000's three engines on one machine, each from its own daemon.json: each sees
//! only its own containers and images, and stopping one leaves the others running.

mod harness;

use harness::{alive, Daemon};

/// The system engine: mirrors, insecure registries, journald logs, a cgroup parent.
fn system(dir: &std::path::Path) -> String {
    format!(
        r#"{{
"registry-mirrors": [],
"insecure-registries": ["registry.lazycat.cloud"],
"log-driver": "journald",
"cgroup-parent": "e2e_sys_docker.slice",
"data-root": "{d}/data", "exec-root": "{d}/exec", "pidfile": "{d}/docker.pid",
"hosts": ["unix://{d}/docker.sock"]
}}"#,
        d = dir.display()
    )
}

/// The store's engine: no bridge, IPv6, containerd namespaces of its own.
fn store(dir: &std::path::Path) -> String {
    format!(
        r#"{{
"bridge": "none",
"insecure-registries": ["registry.lazycat.cloud"],
"default-address-pools": [],
"ipv6": true,
"hosts": ["unix://{d}/lzc-docker.sock"],
"containerd-namespace": "lzc-docker",
"containerd-plugins-namespace": "lzc-docker-plugins",
"exec-root": "{d}/lzc-docker",
"pidfile": "{d}/lzc-docker.pid",
"data-root": "{d}/system/docker",
"cgroup-parent": "e2e_lzc_docker.slice"
}}"#,
        d = dir.display()
    )
}

/// The playground engine.
fn playground(dir: &std::path::Path) -> String {
    format!(
        r#"{{
"bridge": "",
"containerd-namespace": "playground-docker",
"containerd-plugins-namespace": "playground-docker",
"data-root": "{d}/playground/data/docker",
"default-address-pools": [],
"exec-root": "{d}/playground/docker",
"hosts": ["unix://{d}/playground/docker.sock"],
"insecure-registries": ["registry.lazycat.cloud"],
"pidfile": "{d}/playground/docker.pid",
"cgroup-parent": "e2e_playground"
}}"#,
        d = dir.display()
    )
}

#[test]
fn three_engines_side_by_side() {
    let a = Daemon::start_with_config(system, "docker.sock", "e2e_sys_docker.slice");
    let b = Daemon::start_with_config(store, "lzc-docker.sock", "e2e_lzc_docker.slice");
    let mut c = Daemon::start_with_config(playground, "playground/docker.sock", "e2e_playground");
    for d in [&a, &b, &c] {
        d.import_busybox("busybox");
    }
    a.ok(&["tag", "busybox", "only-in-a"]);
    a.ok(&["run", "-d", "--name", "sys", "busybox", "sleep", "1000"]);
    b.ok(&["run", "-d", "--name", "app", "busybox", "sleep", "1000"]);
    c.ok(&["run", "-d", "--name", "play", "busybox", "sleep", "1000"]);
    // The same name in another engine is no conflict.
    b.ok(&["run", "-d", "--name", "sys", "busybox", "sleep", "1000"]);

    let names = |d: &Daemon| d.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(names(&a), "sys\n");
    let mut bn: Vec<String> = names(&b).lines().map(String::from).collect();
    bn.sort();
    assert_eq!(bn, ["app", "sys"]);
    assert_eq!(names(&c), "play\n");
    assert!(a
        .ok(&["images", "--format", "{{.Repository}}"])
        .contains("only-in-a"));
    assert!(!b
        .ok(&["images", "--format", "{{.Repository}}"])
        .contains("only-in-a"));

    // Each engine's containers sit under its own cgroup parent.
    let pid = a.ok(&["inspect", "--format", "{{.State.Pid}}", "sys"]);
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", pid.trim())).expect("cgroup");
    assert!(cgroup.contains("/e2e_sys_docker.slice/"), "{cgroup}");
    // The logs of the journald engine are still there for docker logs.
    a.ok(&["run", "--name", "hello", "busybox", "echo", "kept"]);
    assert_eq!(a.ok(&["logs", "hello"]), "kept\n");

    // A wrapper script as seed 000's pg-docker.
    let wrapper = c.dir.join("pg-docker");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nDOCKER_HOST={} exec docker \"$@\"\n", c.host()),
    )
    .expect("wrapper");
    let out = std::process::Command::new("sh")
        .arg(&wrapper)
        .args(["ps", "--format", "{{.Names}}"])
        .env_remove("DOCKER_HOST")
        .output()
        .expect("pg-docker");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "play\n");

    // Stopping one engine leaves the others and their containers alone.
    let b_pid: i32 = b
        .ok(&["inspect", "--format", "{{.State.Pid}}", "app"])
        .trim()
        .parse()
        .expect("pid");
    c.stop_daemon(false);
    assert!(alive(b_pid));
    assert_eq!(names(&a), "hello\nsys\n");
    b.ok(&["exec", "app", "true"]);
    c.restart_daemon(false);
    assert_eq!(names(&c), "play\n");
}
