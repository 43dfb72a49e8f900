//! Docker's own CLI against berthd: the container lifecycle as a user types it.

mod harness;

use std::io::Write;
use std::process::Stdio;

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
