//! berth driven as a user drives it: host selection, the daemon being down, stdin
//! piped into containers, exec, logs, import/export, and exit codes.

mod common;

use std::process::{Command, Stdio};

use common::{code, stderr, stdout, Engine};

fn berth() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.env_remove("BERTH_HOST")
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn daemon_down_names_the_socket_and_how_to_start_berthd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("none.sock");
    let host = format!("unix://{}", sock.display());
    let ps = berth()
        .args(["-H", &host, "ps"])
        .output()
        .expect("berth ps");
    assert_eq!(code(&ps), 1);
    let err = stderr(&ps);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("Cannot connect to the berth daemon at {host}")),
        "{err}"
    );
    assert!(err.contains("berthd -H"), "{err}");
    let run = berth()
        .args(["-H", &host, "run", "busybox"])
        .output()
        .expect("berth run");
    assert_eq!(code(&run), 125, "{}", stderr(&run));
    // The default host is berthd's socket.
    let default = berth().arg("ps").output().expect("berth ps");
    if code(&default) != 0 {
        assert!(
            stderr(&default).contains("unix:///run/berth/berth.sock"),
            "{}",
            stderr(&default)
        );
    }
}

#[test]
fn version_flag_needs_no_daemon() {
    let o = berth()
        .args(["-H", "unix:///nonexistent.sock", "--version"])
        .output()
        .expect("berth");
    // -H first: the flag is not the first argument, so clap sees it.
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("berth version "), "{}", stdout(&o));
    let o = berth().arg("--version").output().expect("berth");
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).starts_with("berth version "));
}

#[test]
fn host_flag_then_berth_host_then_docker_host() {
    let e = Engine::start();
    let bogus = "unix:///nonexistent/berth.sock";
    // DOCKER_HOST alone.
    let o = berth()
        .env("DOCKER_HOST", e.host())
        .args(["images", "-q"])
        .output()
        .expect("run");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // BERTH_HOST wins over DOCKER_HOST.
    let o = berth()
        .env("BERTH_HOST", e.host())
        .env("DOCKER_HOST", bogus)
        .args(["images", "-q"])
        .output()
        .expect("run");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = berth()
        .env("BERTH_HOST", bogus)
        .env("DOCKER_HOST", e.host())
        .args(["images", "-q"])
        .output()
        .expect("run");
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains(bogus));
    // -H wins over both.
    let o = berth()
        .env("BERTH_HOST", bogus)
        .env("DOCKER_HOST", bogus)
        .args(["-H", &e.host(), "images", "-q"])
        .output()
        .expect("run");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn run_exit_codes_follow_docker() {
    let e = Engine::start();
    let o = e.berth(&["run", "--rm", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(code(&o), 7);
    let o = e.berth(&["run", "--rm", "busybox", "no-such-binary"]);
    assert_eq!(code(&o), 127, "{}", stderr(&o));
    let o = e.berth(&["run", "--rm", "busybox", "/etc"]);
    assert_eq!(code(&o), 126, "{}", stderr(&o));
    let o = e.berth(&["run", "--rm", "--memory", "lots", "busybox", "true"]);
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    let o = e.berth(&["run", "--bogus", "busybox"]);
    assert_eq!(code(&o), 125);
    assert!(
        stderr(&o).starts_with("unknown flag: --bogus\n"),
        "{}",
        stderr(&o)
    );
    // stdout and stderr of the container reach ours, separately.
    let o = e.berth(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
}

#[test]
fn piped_stdin_reaches_the_container() {
    let e = Engine::start();
    let o = e.berth_stdin(&["run", "-i", "--rm", "busybox", "cat"], b"hi\nthere\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "hi\nthere\n");
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let o = e.berth_stdin(&["run", "-i", "--rm", "busybox", "wc", "-c"], &big);
    assert_eq!(stdout(&o).trim(), "200000", "{}", stderr(&o));
    // Without -i, stdin is not attached: cat sees end of input at once.
    let o = e.berth_stdin(&["run", "--rm", "busybox", "cat"], b"ignored\n");
    assert_eq!(stdout(&o), "");
}

#[test]
fn detached_run_then_exec_logs_and_rm() {
    let e = Engine::start();
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo started; sleep 300",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(e.ok(&["ps", "-q"]).trim(), &id[..12]);
    let o = e.berth(&["exec", "web", "sh", "-c", "echo from-exec; exit 3"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert_eq!(stdout(&o), "from-exec\n");
    let o = e.berth_stdin(&["exec", "-i", "web", "cat"], b"piped\n");
    assert_eq!(stdout(&o), "piped\n", "{}", stderr(&o));
    let o = e.berth(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "web",
        "sh",
        "-c",
        "echo $X; pwd",
    ]);
    assert_eq!(stdout(&o), "1\n/tmp\n");
    assert_eq!(e.ok(&["logs", "web"]), "started\n");
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.State.Running}}", "web"]),
        "true\n"
    );
    assert_eq!(e.ok(&["rm", "-f", "web"]), "web\n");
    assert_eq!(e.ok(&["ps", "-aq"]), "");
}

#[test]
fn logs_follow_ends_with_the_container() {
    let e = Engine::start();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 0.2; done",
    ]);
    let o = e.berth(&["logs", "-f", "ticker"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "1\n2\n3\n");
    let o = e.berth(&["logs", "-t", "--tail", "1", "ticker"]);
    let line = stdout(&o);
    assert!(line.ends_with(" 3\n") && line.contains('T'), "{line}");
}

#[test]
fn run_rm_removes_and_wait_reports() {
    let e = Engine::start();
    e.ok(&["run", "--rm", "--name", "gone", "busybox", "true"]);
    assert_eq!(e.ok(&["ps", "-aq"]), "");
    e.ok(&["create", "--name", "later", "busybox", "sh", "-c", "exit 5"]);
    let o = e.berth(&["start", "-a", "later"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert_eq!(e.ok(&["wait", "later"]), "5\n");
    assert_eq!(
        e.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]),
        "later exited\n"
    );
}

#[test]
fn import_from_stdin_then_rmi_in_use() {
    let e = Engine::start();
    let tar = std::fs::read(e.dir.join("busybox.tar")).expect("busybox.tar");
    let o = e.berth_stdin(&["import", "-", "again:v2"], &tar);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("sha256:"));
    let listed = e.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(listed.contains("again:v2"), "{listed}");
    // (export is not checked here: berthd has no GET /containers/{id}/export yet.)
    e.ok(&["create", "--name", "box", "again:v2", "true"]);
    let o = e.berth(&["rmi", "again:v2"]);
    assert_eq!(code(&o), 1, "in use by a container: {}", stdout(&o));
    e.ok(&["rm", "box"]);
    assert!(e.ok(&["rmi", "again:v2"]).contains("Untagged: again:v2"));
}

#[test]
fn tty_run_in_a_pseudo_terminal() {
    let e = Engine::start();
    // script(1) gives berth a terminal; the container and an exec get a tty of the
    // terminal's size.
    e.ok(&["run", "-d", "--name", "idle", "busybox", "sleep", "300"]);
    let cmdline = format!(
        "stty rows 33 cols 91; {b} -H {h} exec -it idle sh -c 'sleep 0.5; stty size'; {b} -H {h} run -it --rm busybox sh -c 'sleep 0.5; stty size; tty; exit 4'",
        b = env!("CARGO_BIN_EXE_berth"),
        h = e.host()
    );
    let o = Command::new("script")
        .args(["-qfec", &cmdline, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let out = stdout(&o);
    assert_eq!(out.matches("33 91").count(), 2, "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert_eq!(code(&o), 4, "{out}");
}

/// A tmux session of our own (its own server socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str, width: u16, height: u16, command: &str) -> Tmux {
        let t = Tmux {
            socket: format!("bcli-{}-{name}", std::process::id()),
        };
        let st = Command::new("tmux")
            .args([
                "-L",
                &t.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args(["-x", &width.to_string(), "-y", &height.to_string(), command])
            .status()
            .expect("tmux new-session");
        assert!(st.success());
        let _ = t.run(&["set-option", "-g", "remain-on-exit", "on"]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        stdout(&o)
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits until the pane shows `text`.
    fn expect(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never saw {text:?} in:\n{s}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn pane_dead(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "t", "#{pane_dead}"])
            .trim()
            == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn interactive_session_resize_detach_attach() {
    let e = Engine::start();
    let berth = format!("{} -H {}", env!("CARGO_BIN_EXE_berth"), e.host());
    // exec -it follows the terminal's size (berthd resizes execs; containers not yet).
    e.ok(&["run", "-d", "--name", "idle", "busybox", "sleep", "300"]);
    let x = Tmux::new("ex", 100, 30, &format!("{berth} exec -it idle sh"));
    x.keys(&["stty size", "Enter"]);
    x.expect("30 100");
    x.run(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    x.keys(&["clear; stty size", "Enter"]);
    x.expect("40 120");
    x.keys(&["exit 5", "Enter"]);
    drop(x);
    let t = Tmux::new(
        "it",
        100,
        30,
        &format!("{berth} run -it --name inter busybox sh"),
    );
    t.keys(&["echo typed-$((6*7))", "Enter"]);
    t.expect("typed-42");
    // ctrl-p ctrl-q detaches: berth exits, the container keeps running.
    t.keys(&["C-p", "C-q"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !t.pane_dead() {
        assert!(
            std::time::Instant::now() < deadline,
            "berth did not exit on detach:\n{}",
            t.screen()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.State.Running}}", "inter"]),
        "true\n"
    );
    drop(t);
    // A container started detached, attached to for the first time...
    e.ok(&["run", "-d", "-it", "--name", "inter2", "busybox", "sh"]);
    let t = Tmux::new("at2", 90, 25, &format!("{berth} attach inter"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    // ...and the detached one again: its shell is still there.
    t.keys(&["echo back-$((2+2))", "Enter"]);
    t.expect("back-4");
    t.keys(&["C-p", "C-q"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !t.pane_dead() {
        assert!(
            std::time::Instant::now() < deadline,
            "attach did not detach:\n{}",
            t.screen()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(t);
    let status_file = e.dir.join("attach.status");
    let t = Tmux::new(
        "at",
        90,
        25,
        &format!(
            "sh -c '{berth} attach inter2; echo $? > {}'",
            status_file.display()
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    t.keys(&["echo again-$((1+1))", "Enter"]);
    t.expect("again-2");
    t.keys(&["exit 3", "Enter"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !t.pane_dead() {
        assert!(
            std::time::Instant::now() < deadline,
            "berth attach did not end:\n{}",
            t.screen()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = std::fs::read_to_string(&status_file).unwrap_or_default();
    assert_eq!(status.trim(), "3", "{}", t.screen());
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.State.ExitCode}}", "inter2"]),
        "3\n"
    );
}

#[test]
fn contexts_are_shared_with_docker() {
    let e = Engine::start();
    let config = tempfile::tempdir().expect("config dir");
    let with_config = |args: &[&str]| {
        berth()
            .env("DOCKER_CONFIG", config.path())
            .args(args)
            .output()
            .expect("berth")
    };
    let endpoint = format!("host={}", e.host());
    let o = with_config(&["context", "create", "eng", "--docker", &endpoint]);
    assert_eq!(stdout(&o), "eng\n", "{}", stderr(&o));
    let o = with_config(&["context", "use", "eng"]);
    assert_eq!(stdout(&o), "eng\n");
    assert_eq!(stderr(&o), "Current context is now \"eng\"\n");
    // berth follows the current context; so does docker, from the same files.
    let o = with_config(&["images", "--format", "{{.Repository}}"]);
    assert_eq!(stdout(&o), "busybox\n", "{}", stderr(&o));
    let d = Command::new("docker")
        .env("DOCKER_CONFIG", config.path())
        .env_remove("DOCKER_HOST")
        .args([
            "context",
            "inspect",
            "--format",
            "{{.Endpoints.docker.Host}}",
            "eng",
        ])
        .output()
        .expect("docker");
    assert_eq!(stdout(&d).trim(), e.host());
    let b = with_config(&["context", "inspect", "eng"]);
    let d = Command::new("docker")
        .env("DOCKER_CONFIG", config.path())
        .env_remove("DOCKER_HOST")
        .args(["context", "inspect", "eng"])
        .output()
        .expect("docker");
    assert_eq!(stdout(&b), stdout(&d));
    let o = with_config(&["--context", "default", "-H", &e.host(), "ps", "-q"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = with_config(&["--context", "nope", "ps"]);
    assert_eq!(code(&o), 1);
    assert_eq!(stderr(&o), "context \"nope\" does not exist\n");
    let o = with_config(&["context", "rm", "-f", "eng"]);
    assert_eq!(stdout(&o), "eng\n");
    assert_eq!(stdout(&with_config(&["context", "show"])), "default\n");
}
