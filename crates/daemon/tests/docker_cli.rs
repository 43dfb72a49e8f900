//! Docker's own CLI against berthd: the container lifecycle as a user types it.

mod harness;

use std::io::Write;
use std::process::{Command, Stdio};

use harness::{alive, stderr, text, Daemon};

#[test]
fn run_prints_output_and_exit_codes() {
    let d = Daemon::start();
    let id = d.import_busybox("busybox:latest");
    assert!(id.starts_with("sha256:"), "{id}");
    let images = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(
        images.contains(&format!("busybox:latest {}", &id[7..19])),
        "{images}"
    );

    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "echo", "hello"]),
        "hello\n"
    );
    // Every byte of a program that exits at once reaches the attached client.
    for i in 0..5 {
        let out = d.ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            &format!("seq 1 {}", 100 + i),
        ]);
        assert_eq!(out.lines().count(), 100 + i, "{out}");
    }
    let o = d.docker(&[
        "run",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(text(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");

    let out = d.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-u",
        "nobody",
        "--hostname",
        "box1",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING $(id -u) $(hostname)",
    ]);
    assert_eq!(out, "hi 65534 box1\n");
    let out = d.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "busybox",
        "from",
        "entrypoint",
    ]);
    assert_eq!(out, "from entrypoint\n");

    let o = d.docker(&["run", "--rm", "busybox", "no-such-program"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("executable file not found"),
        "{}",
        stderr(&o)
    );

    // Piped stdin without a tty.
    let mut child = d
        .docker_cmd(&["run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker run -i");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"piped text\n")
        .expect("write stdin");
    let o = child.wait_with_output().expect("wait");
    assert_eq!(text(&o), "PIPED TEXT\n");

    // --rm removed every container above but the one without it.
    let all = d.ok(&["ps", "-aq"]);
    assert_eq!(all.lines().count(), 1, "{all}");
}

#[test]
fn detached_lifecycle() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo started; exec sleep 1000",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = d.ok(&["ps", "--format", "{{.Names}} {{.Status}} {{.Command}}"]);
    assert!(ps.starts_with("web Up "), "{ps}");
    assert_eq!(d.ok(&["ps", "-q"]).trim(), &id[..12]);
    assert_eq!(d.ok(&["ps", "-lq"]).trim(), &id[..12]);

    let pid: i32 = d
        .ok(&["inspect", "--format", "{{.State.Pid}}", "web"])
        .trim()
        .parse()
        .expect("a PID");
    assert!(alive(pid));
    let graph = d.ok(&[
        "inspect",
        "--format",
        "{{.GraphDriver.Name}} {{.GraphDriver.Data.MergedDir}}",
        "web",
    ]);
    assert!(graph.starts_with("overlay2 /"), "{graph}");

    // logs, exec.
    let logs = d.ok(&["logs", "web"]);
    assert_eq!(logs, "started\n");
    let ps_in = d.ok(&["exec", "web", "ps", "-o", "pid,comm"]);
    assert!(ps_in.contains("1 sleep"), "{ps_in}");
    let o = d.docker(&["exec", "web", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let out = d.ok(&[
        "exec",
        "-u",
        "nobody",
        "-e",
        "X=y",
        "-w",
        "/tmp",
        "web",
        "sh",
        "-c",
        "echo $X $(id -u) $(pwd)",
    ]);
    assert_eq!(out, "y 65534 /tmp\n");
    let o = d.docker(&["exec", "web", "no-such-program"]);
    assert_eq!(o.status.code(), Some(127));

    // stop (SIGTERM to a shell's exec'd sleep: killed after the timeout), start, restart.
    d.ok(&["stop", "-t", "1", "web"]);
    let status = d.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.Running}}",
        "web",
    ]);
    assert_eq!(status.trim(), "exited false");
    assert!(!alive(pid));
    let ps = d.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Exited ("), "{ps}");
    d.ok(&["start", "web"]);
    let pid2: i32 = d
        .ok(&["inspect", "--format", "{{.State.Pid}}", "web"])
        .trim()
        .parse()
        .expect("a PID");
    assert!(alive(pid2) && pid2 != pid);
    d.ok(&["restart", "-t", "0", "web"]);
    let pid3: i32 = d
        .ok(&["inspect", "--format", "{{.State.Pid}}", "web"])
        .trim()
        .parse()
        .expect("a PID");
    assert!(alive(pid3) && pid3 != pid2);
    assert_eq!(d.ok(&["logs", "web"]), "started\nstarted\nstarted\n");

    // kill, wait.
    d.ok(&["kill", "web"]);
    assert_eq!(d.ok(&["wait", "web"]).trim(), "137");

    // rm, then the name is free again.
    let o = d.docker(&["rm", "nosuch"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No such container: nosuch"),
        "{}",
        stderr(&o)
    );
    d.ok(&["run", "-d", "--name", "again", "busybox", "sleep", "1000"]);
    let o = d.docker(&["rm", "again"]);
    assert!(!o.status.success(), "removing a running container needs -f");
    d.ok(&["rm", "-f", "again", "web"]);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    d.ok(&["run", "-d", "--name", "web", "busybox", "true"]);
}

#[test]
fn name_conflicts_and_bad_requests() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    d.ok(&["create", "--name", "one", "busybox", "true"]);
    let o = d.docker(&["create", "--name", "one", "busybox", "true"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is already in use"), "{}", stderr(&o));

    let (code, body) = d.api("POST", "/containers/create", Some("{\"Image\": "));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"message\""), "{body}");
    let (code, body) = d.api("GET", "/containers/nosuch/json", None);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("No such container: nosuch"), "{body}");
    let (code, _) = d.api(
        "POST",
        "/containers/create",
        Some("{\"Image\": \"no-such-image\"}"),
    );
    assert_eq!(code, 404);
    for (body, says) in [
        (
            r#"{"Image":"busybox","HostConfig":{"Memory":"abc"}}"#,
            "HostConfig.Memory",
        ),
        (
            r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#,
            "invalid restart policy",
        ),
        (
            r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"CpusetCpus":"x-y"}}"#,
            "Invalid value x-y for cpuset cpus",
        ),
        (
            r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"Memory":-5}}"#,
            "Memory",
        ),
        (
            r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"CapAdd":["CAP_NOPE"]}}"#,
            "CAP_NOPE",
        ),
    ] {
        let (code, reply) = d.api("POST", "/containers/create", Some(body));
        assert_eq!(code, 400, "{body}: {reply}");
        assert!(reply.contains(says), "{body}: {reply}");
    }
    let o = d.docker(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert!(!o.status.success());
    // Nothing was created by the failures; the daemon still serves.
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 1);
}

#[test]
fn live_restore_across_a_daemon_crash() {
    let mut d = Daemon::start();
    d.import_busybox("busybox");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.05; done",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "short",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 42",
    ]);
    let pid = d.ok(&["inspect", "--format", "{{.State.Pid}}", "ticker"]);
    let shim_pids: Vec<String> = ["ticker", "short"]
        .iter()
        .map(|n| {
            d.ok(&["inspect", "--format", "{{.Id}}", n])
                .trim()
                .to_string()
        })
        .map(|id| {
            std::fs::read_to_string(d.exec_root().join("containers").join(&id).join("shim.pid"))
                .expect("shim.pid")
        })
        .collect();

    d.stop_daemon(true);
    // While berthd is down, "short" exits and "ticker" keeps logging.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for p in &shim_pids[..1] {
        assert!(
            alive(p.trim().parse().expect("pid")),
            "the shim outlives berthd"
        );
    }
    d.restart_daemon(false);

    assert_eq!(
        d.ok(&["inspect", "--format", "{{.State.Pid}}", "ticker"]),
        pid
    );
    let status = d.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        "short",
    ]);
    assert_eq!(status.trim(), "exited 42");
    assert_eq!(d.ok(&["exec", "ticker", "echo", "exec ok"]), "exec ok\n");
    // No line was lost while berthd was away: the log counts up without a gap.
    d.ok(&["stop", "-t", "1", "ticker"]);
    let logs = d.ok(&["logs", "ticker"]);
    let numbers: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(numbers.len() > 20, "{logs}");
    for (i, n) in numbers.iter().enumerate() {
        assert_eq!(*n, i as u64 + 1, "gap in {logs}");
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn restart_policies() {
    let mut d = Daemon::start();
    d.import_busybox("busybox");
    // on-failure:2 — two restarts, then it stays down with its code.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    wait_for("two restarts", || {
        d.ok(&[
            "inspect",
            "--format",
            "{{.RestartCount}} {{.State.Status}}",
            "flaky",
        ])
        .trim()
            == "2 exited"
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        d.ok(&[
            "inspect",
            "--format",
            "{{.RestartCount}} {{.State.ExitCode}}",
            "flaky"
        ])
        .trim(),
        "2 3"
    );
    assert_eq!(d.ok(&["logs", "flaky"]), "run\nrun\nrun\n");
    // A clean exit is not a failure.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "clean",
        "--restart",
        "on-failure",
        "busybox",
        "true",
    ]);
    // always: it comes back after it exits, but not after docker stop.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "forever",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    wait_for("a restart", || {
        d.ok(&["inspect", "--format", "{{.RestartCount}}", "forever"])
            .trim()
            != "0"
    });
    d.ok(&["stop", "-t", "1", "forever"]);
    let count = d.ok(&["inspect", "--format", "{{.RestartCount}}", "forever"]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        d.ok(&[
            "inspect",
            "--format",
            "{{.RestartCount}} {{.State.Running}}",
            "forever"
        ])
        .trim(),
        format!("{} false", count.trim())
    );
    assert_eq!(
        d.ok(&["inspect", "--format", "{{.RestartCount}}", "clean"])
            .trim(),
        "0"
    );
    // unless-stopped comes back with the daemon; always comes back even when stopped by hand.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--restart",
        "unless-stopped",
        "busybox",
        "sleep",
        "1000",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "manual",
        "--restart",
        "unless-stopped",
        "busybox",
        "sleep",
        "1000",
    ]);
    d.ok(&["stop", "-t", "0", "manual"]);
    d.restart_daemon(true);
    assert_eq!(
        d.ok(&["inspect", "--format", "{{.State.Running}}", "svc"])
            .trim(),
        "true"
    );
    assert_eq!(
        d.ok(&["inspect", "--format", "{{.State.Running}}", "manual"])
            .trim(),
        "false"
    );
    assert_eq!(
        d.ok(&["inspect", "--format", "{{.State.Running}}", "forever"])
            .trim(),
        "true"
    );
}

#[test]
fn ps_filters_prune_and_events() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    let since = harness::unix_secs(0);
    d.ok(&[
        "run", "-d", "--name", "up1", "-l", "tier=web", "busybox", "sleep", "1000",
    ]);
    d.ok(&["run", "--name", "done0", "busybox", "true"]);
    let _ = d.docker(&[
        "run",
        "--name",
        "done3",
        "-l",
        "tier=batch",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    d.ok(&["create", "--name", "fresh", "busybox", "true"]);

    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ps", "--format", "{{.Names}}"];
        a.extend_from_slice(args);
        let mut v: Vec<String> = d.ok(&a).lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(names(&[]), ["up1"]);
    assert_eq!(names(&["-a"]), ["done0", "done3", "fresh", "up1"]);
    assert_eq!(names(&["-f", "status=exited"]), ["done0", "done3"]);
    assert_eq!(names(&["-f", "exited=3"]), ["done3"]);
    assert_eq!(names(&["-a", "-f", "label=tier"]), ["done3", "up1"]);
    assert_eq!(names(&["-a", "-f", "label=tier=web"]), ["up1"]);
    assert_eq!(names(&["-a", "-f", "name=done"]), ["done0", "done3"]);
    assert_eq!(names(&["-a", "-f", "status=created"]), ["fresh"]);
    assert_eq!(names(&["-a", "-f", "ancestor=busybox"]).len(), 4);
    assert_eq!(
        names(&["-a", "-f", "status=exited", "-f", "status=created"]).len(),
        3
    );
    let o = d.docker(&["ps", "-f", "status=bogus"]);
    assert!(!o.status.success());

    // Prune removes the stopped ones only.
    let out = d.ok(&["container", "prune", "-f"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert_eq!(names(&["-a"]), ["up1"]);

    // Events since the start of the test, up to now: the lifecycle in order.
    let until = harness::unix_secs(1);
    let ev = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=done0",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = ev.lines().collect();
    assert_eq!(
        actions,
        ["create", "attach", "start", "die", "destroy"],
        "{ev}"
    );
    // Image events: tag and untag.
    d.ok(&["tag", "busybox", "other:1"]);
    d.ok(&["rmi", "other:1"]);
    let until = harness::unix_secs(1);
    let ev = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert!(ev.contains("tag other:1") && ev.contains("untag"), "{ev}");
    // A follower sees a new event as it happens.
    let mut follower = d
        .docker_cmd(&[
            "events",
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker events");
    std::thread::sleep(std::time::Duration::from_millis(300));
    d.ok(&["run", "--rm", "--name", "late", "busybox", "true"]);
    let mut stdout = follower.stdout.take().expect("stdout");
    let mut line = [0u8; 5];
    std::io::Read::read_exact(&mut stdout, &mut line).expect("an event line");
    assert_eq!(&line, b"late\n");
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn healthchecks() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "probe",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]);
    let status = |d: &Daemon| d.ok(&["inspect", "--format", "{{.State.Health.Status}}", "probe"]);
    wait_for("unhealthy", || status(&d).trim() == "unhealthy");
    let ps = d.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.trim().ends_with("(unhealthy)"), "{ps}");
    d.ok(&["exec", "probe", "touch", "/tmp/ok"]);
    wait_for("healthy", || status(&d).trim() == "healthy");
    let streak = d.ok(&[
        "inspect",
        "--format",
        "{{.State.Health.FailingStreak}}",
        "probe",
    ]);
    assert_eq!(streak.trim(), "0");
    let until = harness::unix_secs(1);
    let ev = d.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        "container=probe",
        "--format",
        "{{.Action}}",
    ]);
    let changes: Vec<&str> = ev
        .lines()
        .filter(|l| l.starts_with("health_status"))
        .collect();
    assert_eq!(
        changes,
        ["health_status: unhealthy", "health_status: healthy"],
        "{ev}"
    );
}

#[test]
fn resources_and_security_flags() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    let out = d.ok(&[
        "run",
        "--rm",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "50",
        "busybox",
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu/cpu.shares",
        "/sys/fs/cgroup/cpuset/cpuset.cpus",
        "/sys/fs/cgroup/pids/pids.max",
    ]);
    assert_eq!(out, "67108864\n134217728\n50000\n512\n0\n50\n");
    let out = d.ok(&["run", "--rm", "--init", "busybox", "ps", "-o", "pid,args"]);
    assert!(out.contains("1 /sbin/docker-init -- ps"), "{out}");
    let o = d.docker(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    let o = d.docker(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "busybox",
        "chown",
        "1",
        "/bin",
    ]);
    assert!(
        stderr(&o).contains("Operation not permitted"),
        "{}",
        stderr(&o)
    );
    // Docker's default profile: no new namespaces without CAP_SYS_ADMIN; forks still work.
    let o = d.docker(&["run", "--rm", "busybox", "unshare", "-n", "true"]);
    assert!(!o.status.success());
    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "sh", "-c", "echo $(echo forked)"]),
        "forked\n"
    );
    let out = d.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "unshare",
        "-n",
        "echo",
        "privileged",
    ]);
    assert_eq!(out, "privileged\n");
    let out = d.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/run:size=1m",
        "busybox",
        "df",
        "-k",
        "/run",
    ]);
    assert!(out.contains(" 1024 "), "{out}");
    let out = d.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert!(out.contains('1'), "{out}");
    let out = d.ok(&["run", "--rm", "busybox", "cat", "/proc/timer_list"]);
    assert_eq!(out, "", "masked");
    // Host paths: -v and --mount.
    let host = d.dir.join("shared");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("f"), "from the host\n").expect("write");
    let v = format!("{}:/data", host.display());
    assert_eq!(
        d.ok(&["run", "--rm", "-v", &v, "busybox", "cat", "/data/f"]),
        "from the host\n"
    );
    d.ok(&[
        "run",
        "--rm",
        "-v",
        &v,
        "busybox",
        "sh",
        "-c",
        "echo back > /data/g",
    ]);
    assert_eq!(
        std::fs::read_to_string(host.join("g")).ok().as_deref(),
        Some("back\n")
    );
    let ro = format!("{v}:ro");
    let o = d.docker(&["run", "--rm", "-v", &ro, "busybox", "touch", "/data/h"]);
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    let m = format!("type=bind,src={},dst=/m,readonly", host.display());
    d.ok(&[
        "run", "--name", "mounted", "--mount", &m, "busybox", "cat", "/m/f",
    ]);
    let mounts = d.ok(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Type}} {{.Destination}} {{.RW}}{{end}}",
        "mounted",
    ]);
    assert_eq!(mounts.trim(), "bind /m false");
    let o = d.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/no/such/dir,dst=/m",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&o).contains("bind source path does not exist"),
        "{}",
        stderr(&o)
    );
    let out = d.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=2m",
        "busybox",
        "df",
        "-k",
        "/t",
    ]);
    assert!(out.contains(" 2048 "), "{out}");
    // The kernel's OOM killer, reported.
    let o = d.docker(&[
        "run",
        "--name",
        "oom",
        "-m",
        "8m",
        "--memory-swap",
        "8m",
        "busybox",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(o.status.code(), Some(137));
    assert_eq!(
        d.ok(&[
            "inspect",
            "--format",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            "oom"
        ])
        .trim(),
        "true 137"
    );
    // start -a attaches before the program runs, and exits with its code.
    d.ok(&[
        "create",
        "--name",
        "again",
        "busybox",
        "sh",
        "-c",
        "echo round; exit 5",
    ]);
    for _ in 0..2 {
        let o = d.docker(&["start", "-a", "again"]);
        assert_eq!(
            (o.status.code(), text(&o)),
            (Some(5), "round\n".to_string())
        );
    }
}

#[test]
fn info_version_df_and_old_clients() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    d.ok(&["run", "-d", "--name", "up", "busybox", "sleep", "1000"]);
    d.ok(&[
        "run",
        "--name",
        "wrote",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/tmp/f bs=1k count=100 2>/dev/null",
    ]);
    let info = d.ok(&["info", "--format", "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}} {{.Driver}} {{.CgroupVersion}} {{.DockerRootDir}}"]);
    assert_eq!(
        info.trim(),
        format!("2 1 1 1 overlay2 1 {}", d.data_root().display())
    );
    let v = d.ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(v.trim(), "1.50 1.24 linux");
    let df = d.ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ]);
    assert!(
        df.contains("Images 1 1") && df.contains("Containers 2 1"),
        "{df}"
    );
    let sizes = d.ok(&["ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}"]);
    assert!(sizes.contains("wrote 102kB (virtual 2."), "{sizes}");
    let dfv = d.ok(&[
        "system",
        "df",
        "-v",
        "--format",
        "{{range .Containers}}{{.Names}}={{.Size}} {{end}}",
    ]);
    assert!(dfv.contains("wrote=102kB"), "{dfv}");
    // An old client negotiates down to 1.24; Debian's 20.10 CLI works as the 28.x one.
    let o = d
        .docker_cmd(&["ps", "--format", "{{.Names}}"])
        .env("DOCKER_API_VERSION", "1.24")
        .output()
        .expect("docker");
    assert_eq!(text(&o), "up\n", "{}", stderr(&o));
    let (code, body) = d.api("GET", "/v1.12/version", None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("too old"), "{body}");
    let old = std::process::Command::new("/usr/bin/docker")
        .env("DOCKER_HOST", d.host())
        .args(["run", "--rm", "busybox", "echo", "from 20.10"])
        .output()
        .expect("docker 20.10");
    assert_eq!(text(&old), "from 20.10\n", "{}", stderr(&old));
    let old = std::process::Command::new("/usr/bin/docker")
        .env("DOCKER_HOST", d.host())
        .args(["exec", "up", "echo", "exec 20.10"])
        .output()
        .expect("docker 20.10");
    assert_eq!(text(&old), "exec 20.10\n", "{}", stderr(&old));
}

#[test]
fn fifty_concurrent_creates_with_one_name() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    let children: Vec<_> = (0..50)
        .map(|_| {
            d.docker_cmd(&["create", "--name", "contested", "busybox", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("docker create")
        })
        .collect();
    let mut ok = 0;
    for c in children {
        let o = c.wait_with_output().expect("wait");
        if o.status.success() {
            ok += 1;
        } else {
            assert!(stderr(&o).contains("is already in use"), "{}", stderr(&o));
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 1);
}

#[test]
fn logs_options() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo out$i; sleep 0.4; done; echo err >&2; sleep 0.4; echo last",
    ]);
    // -f follows until the container exits.
    let o = d.docker(&["logs", "-f", "lg"]);
    assert_eq!(text(&o), "out1\nout2\nout3\nlast\n");
    assert_eq!(stderr(&o), "err\n");
    assert_eq!(d.ok(&["logs", "--tail", "2", "lg"]), "last\n");
    let ts = d.ok(&["logs", "-t", "--tail", "1", "lg"]);
    assert!(ts.starts_with("20") && ts.ends_with("Z last\n"), "{ts}");
    assert_eq!(d.ok(&["logs", "--until", "2000-01-01T00:00:00Z", "lg"]), "");
    // --since the time of the last line (what -t showed): only that line.
    let at = ts.split_whitespace().next().unwrap_or_default();
    let o = d.docker(&["logs", "--since", at, "lg"]);
    assert_eq!((text(&o).as_str(), stderr(&o).as_str()), ("last\n", ""));
}

#[test]
fn a_follower_keeps_the_lines_of_a_container_removed_under_it() {
    // docker-py's `containers.run` waits, removes, then reads its `logs -f` stream;
    // the API straight, so the removal follows the exit by a few milliseconds.
    let d = Daemon::start();
    d.import_busybox("busybox");
    let cmd = r#"{"Image":"busybox","Cmd":["sh","-c","sleep 0.3; echo one; echo two"]}"#;
    let (code, body) = d.api("POST", "/containers/create?name=gone", Some(cmd));
    assert_eq!(code, 201, "{body}");
    let (code, body) = d.api("POST", "/containers/gone/start", None);
    assert_eq!(code, 204, "{body}");
    let follower = Command::new("curl")
        .args(["-sN", "--unix-socket"])
        .arg(&d.socket)
        .arg("http://berth/containers/gone/logs?follow=1&stdout=1&stderr=1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let (code, body) = d.api("POST", "/containers/gone/wait", None);
    assert_eq!(
        (code, body.contains(r#""StatusCode":0"#)),
        (200, true),
        "{body}"
    );
    let (code, body) = d.api("DELETE", "/containers/gone", None);
    assert_eq!(code, 204, "{body}");
    let o = follower.wait_with_output().expect("curl");
    // Two stdout frames: stream 1, three zero bytes, the big-endian length.
    let frame = |text: &[u8]| [&[1, 0, 0, 0, 0, 0, 0, text.len() as u8][..], text].concat();
    assert_eq!(o.stdout, [frame(b"one\n"), frame(b"two\n")].concat());
}

#[test]
fn a_follower_reads_on_across_rotations() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    // Bursts of five lines (~400 bytes of log) a few polls apart: one rotation
    // at most between two reads of the follower.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "rot",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "sleep 0.3; i=0; while [ $i -lt 60 ]; do echo line-$i; i=$((i+1)); \
         [ $((i % 5)) = 0 ] && sleep 0.2; done; true",
    ]);
    let o = d.docker(&["logs", "-f", "rot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want: String = (0..60).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(text(&o), want);
}

#[test]
fn console_size_is_set_before_the_program_runs() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    let (code, body) = d.api(
        "POST",
        "/containers/create?name=sized",
        Some(r#"{"Image":"busybox","Cmd":["stty","size"],"Tty":true,"HostConfig":{"ConsoleSize":[33,77]}}"#),
    );
    assert_eq!(code, 201, "{body}");
    d.ok(&["start", "sized"]);
    assert_eq!(d.ok(&["wait", "sized"]).trim(), "0");
    assert_eq!(d.ok(&["logs", "sized"]).trim(), "33 77");
}

#[test]
fn per_container_log_options() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    d.ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let id = d.ok(&["inspect", "--format", "{{.Id}}", "chatty"]);
    let dir = d.data_root().join("containers").join(id.trim());
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .expect("container dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("-json.log"))
        .collect();
    assert_eq!(logs.len(), 2, "the live file and one rotated");
    for l in &logs {
        let len = l.metadata().expect("stat").len();
        assert!(len <= 1024 + 200, "{} is {len} bytes", l.path().display());
    }
    // The last lines are still there for docker logs.
    let tail = d.ok(&["logs", "--tail", "1", "chatty"]);
    assert_eq!(tail, "line-199\n");
    let o = d.docker(&[
        "run",
        "--rm",
        "--log-opt",
        "max-size=lots",
        "busybox",
        "true",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("max-size"), "{}", stderr(&o));
    let o = d.docker(&["run", "--rm", "--log-driver", "syslogd", "busybox", "true"]);
    assert!(
        stderr(&o).contains("no log driver named 'syslogd'"),
        "{}",
        stderr(&o)
    );
}
