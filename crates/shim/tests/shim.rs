//! berth-shim driven as berthd drives it (as root): spawned with a readiness pipe
//! on fd 3, talked to over shim.sock, against a busybox bundle in a temp dir.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_runtime::container::{delete, Global};
use serde_json::{json, Value};
use tempfile::TempDir;

const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "sleep", "stty", "true", "seq", "head", "tr",
];
const TIMEOUT: Duration = Duration::from_secs(20);

/// A busybox bundle, runtime root, state dir and log, all in one temp dir.
struct Setup {
    dir: TempDir,
    id: String,
}

impl Setup {
    fn new(name: &str, args: &[&str], tty: bool) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("berth-shim-test")
            .tempdir()
            .unwrap();
        let bundle = dir.path().join("bundle");
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let mut spec = berth_runtime::container::spec::default_spec(false);
        spec["process"]["terminal"] = json!(tty);
        spec["process"]["args"] = json!(args);
        std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        Setup {
            id: format!("shimtest-{name}-{}", std::process::id()),
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--id".into(),
            self.id.clone(),
            "--bundle".into(),
            self.path("bundle").display().to_string(),
            "--state-dir".into(),
            self.path("state").display().to_string(),
            "--runtime-root".into(),
            self.path("runtime").display().to_string(),
            "--log-path".into(),
            self.log_path().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn log_path(&self) -> PathBuf {
        self.path("state/container-json.log")
    }

    /// Spawn the shim as berthd does: fd 3 a pipe, the direct child exits at once.
    fn spawn(&self, extra: &[&str]) -> Value {
        // Close-on-exec: tests run in parallel and must not leak it to other shims.
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let raw = write_end.as_raw_fd();
        let mut cmd = Command::new(SHIM);
        cmd.args(self.args(extra))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if raw == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0);
                } else if libc::dup2(raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        drop(write_end);
        let status = child.wait().unwrap();
        assert!(status.success(), "shim's first process: {status}");
        read_ready(read_end)
    }

    fn shim_pid(&self) -> i32 {
        std::fs::read_to_string(self.path("state/shim.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn connect(&self, request: Value) -> UnixStream {
        let sock = UnixStream::connect(self.path("state/shim.sock")).unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut line = request.to_string();
        line.push('\n');
        (&sock).write_all(line.as_bytes()).unwrap();
        sock
    }

    /// One request, one response line.
    fn call(&self, request: Value) -> Value {
        let mut sock = self.connect(request);
        read_line(&mut sock)
    }

    /// The exit status, as berthd gets it: from `wait`, or from the exit file if
    /// the shim has finished already.
    fn wait_exit(&self) -> Value {
        let state = match UnixStream::connect(self.path("state/shim.sock")) {
            Ok(_) => self.call(json!({"op": "wait"})),
            Err(_) => {
                wait_until(|| !alive(self.shim_pid()));
                serde_json::from_slice(&std::fs::read(self.path("state/exit")).unwrap()).unwrap()
            }
        };
        wait_until(|| !alive(self.shim_pid()));
        state
    }

    fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Whatever the test left running goes, with its runtime state and cgroup.
        if let Ok(pid) = std::fs::read_to_string(self.path("state/shim.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                if alive(pid) && self.path("state/shim.sock").exists() {
                    if let Ok(mut s) = UnixStream::connect(self.path("state/shim.sock")) {
                        let _ = s.write_all(b"{\"op\":\"kill\",\"signal\":9}\n");
                    }
                    let deadline = Instant::now() + TIMEOUT;
                    while alive(pid) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
        let global = Global {
            root: self.path("runtime"),
            systemd_cgroup: false,
        };
        let _ = delete::delete(&global, &self.id, true);
    }
}

fn read_ready(fd: OwnedFd) -> Value {
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).unwrap();
    assert_eq!(text.lines().count(), 1, "readiness: {text:?}");
    serde_json::from_str(text.trim()).unwrap()
}

fn read_line(sock: &mut UnixStream) -> Value {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while sock.read(&mut byte).unwrap() == 1 {
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    serde_json::from_slice(&line)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&line)))
}

/// Read stdcopy frames until EOF: (stdout, stderr).
fn read_frames(sock: &mut UnixStream) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let mut header = [0u8; 8];
        if let Err(e) = sock.read_exact(&mut header) {
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
            break;
        }
        assert_eq!(&header[1..4], &[0, 0, 0]);
        let len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len];
        sock.read_exact(&mut payload).unwrap();
        match header[0] {
            1 => out.extend(payload),
            2 => err.extend(payload),
            s => panic!("stream byte {s}"),
        }
    }
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Read raw bytes until `want` appears in them.
fn read_until(sock: &mut UnixStream, want: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(want) {
        let n = sock.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "EOF before {want:?} in {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn exec_process(args: &[&str]) -> Value {
    json!({
        "args": args,
        "env": ["PATH=/bin", "TERM=xterm"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
    })
}

fn is_rfc3339_nano(t: &str) -> bool {
    let b = t.as_bytes();
    t.len() >= 20
        && t.ends_with('Z')
        && b[4] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && t[..4].chars().all(|c| c.is_ascii_digit())
}

#[test]
fn output_is_logged_attached_and_the_exit_recorded() {
    let s = Setup::new(
        "logs",
        &[
            "/bin/sh",
            "-c",
            "sleep 0.5; echo out; echo 'err <&>' >&2; echo late; exit 3",
        ],
        false,
    );
    let ready = s.spawn(&[]);
    let pid = ready["pid"].as_i64().expect("readiness has a pid") as i32;
    assert!(alive(pid), "init {pid} runs");
    let shim = s.shim_pid();
    assert!(alive(shim));
    let state = s.call(json!({"op": "state"}));
    assert_eq!(state["pid"], pid);
    assert_eq!(state["running"], true);
    assert_eq!(state["exit_code"], Value::Null);

    let mut attach = s.connect(json!({"op": "attach", "stdout": true, "stderr": true}));
    assert_eq!(read_line(&mut attach), json!({"ok": true}));
    let waiter = std::thread::spawn({
        let mut w = s.connect(json!({"op": "wait"}));
        move || read_line(&mut w)
    });
    let (out, err) = read_frames(&mut attach);
    assert_eq!(out, "out\nlate\n");
    assert_eq!(err, "err <&>\n");
    let done = waiter.join().unwrap();
    assert_eq!(done["exit_code"], 3);
    assert_eq!(done["running"], false);
    assert_eq!(done["oom_killed"], false);
    assert!(is_rfc3339_nano(done["exited_at"].as_str().unwrap()));

    wait_until(|| !alive(shim));
    let exit: Value =
        serde_json::from_slice(&std::fs::read(s.path("state/exit")).unwrap()).unwrap();
    assert_eq!(exit["exit_code"], 3);
    assert_eq!(exit["oom_killed"], false);
    assert_eq!(exit["exited_at"], done["exited_at"]);
    assert!(!s.path("state/shim.sock").exists());
    assert!(
        !s.path("runtime").join(&s.id).exists(),
        "runtime state deleted"
    );

    let text = std::fs::read_to_string(s.log_path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    // Docker's field order and escaping, byte for byte. stdout and stderr are two
    // pipes: their relative order is not defined, each one's own order is.
    let stdout: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(r#""stream":"stdout""#))
        .collect();
    let stderr: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(r#""stream":"stderr""#))
        .collect();
    assert!(
        stdout[0].starts_with(r#"{"log":"out\n","stream":"stdout","time":""#),
        "{text}"
    );
    assert!(
        stdout[1].starts_with(r#"{"log":"late\n","stream":"stdout","time":""#),
        "{text}"
    );
    assert!(
        stderr[0].starts_with(r#"{"log":"err \u003c\u0026\u003e\n","stream":"stderr","time":""#),
        "{text}"
    );
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(is_rfc3339_nano(v["time"].as_str().unwrap()), "{l}");
        assert!(l.ends_with("Z\"}"));
    }
}

#[test]
fn stdin_round_trip_and_stdin_once() {
    let s = Setup::new("stdin", &["/bin/cat"], false);
    s.spawn(&["--stdin", "--stdin-once"]);
    let mut attach =
        s.connect(json!({"op": "attach", "stdin": true, "stdout": true, "stderr": true}));
    assert_eq!(read_line(&mut attach), json!({"ok": true}));
    attach.write_all(b"hello shim\n").unwrap();
    let mut header = [0u8; 8];
    attach.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 1);
    let mut payload = vec![0u8; u32::from_be_bytes(header[4..].try_into().unwrap()) as usize];
    attach.read_exact(&mut payload).unwrap();
    assert_eq!(payload, b"hello shim\n");
    // Our EOF closes the container's stdin: cat ends.
    attach.write_all(b"second\n").unwrap();
    attach.shutdown(Shutdown::Write).unwrap();
    let (out, _) = read_frames(&mut attach);
    assert_eq!(out, "second\n");
    assert_eq!(s.wait_exit()["exit_code"], 0);
    let logged: Vec<String> = s
        .log_lines()
        .iter()
        .map(|v| v["log"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged, vec!["hello shim\n", "second\n"]);
}

#[test]
fn tty_with_resize() {
    let s = Setup::new("tty", &["/bin/sh", "-c", "read x; stty size; exit 5"], true);
    s.spawn(&["--tty", "--stdin"]);
    let mut attach = s.connect(json!({"op": "attach", "stdin": true, "stdout": true}));
    assert_eq!(read_line(&mut attach), json!({"ok": true}));
    assert_eq!(
        s.call(json!({"op": "resize", "height": 42, "width": 117})),
        json!({"ok": true})
    );
    assert!(
        s.call(json!({"op": "resize", "height": 1, "width": 1, "exec_id": "nope"}))["error"]
            .is_string()
    );
    attach.write_all(b"go\n").unwrap();
    // Raw bytes, no frames: the echo of our input, then stty's answer.
    let seen = read_until(&mut attach, "42 117");
    assert!(seen.contains("go"), "{seen:?}");
    assert_eq!(s.wait_exit()["exit_code"], 5);
    let log: String = s
        .log_lines()
        .iter()
        .map(|v| {
            assert_eq!(v["stream"], "stdout");
            v["log"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(log.contains("42 117\r\n"), "{log:?}");
}

#[test]
fn exec_kill_and_wait() {
    let s = Setup::new("exec", &["/bin/sleep", "60"], false);
    s.spawn(&[]);
    let mut exec = s.connect(json!({
        "op": "exec", "exec_id": "e1", "tty": false, "stdin": false,
        "process": exec_process(&["/bin/sh", "-c", "echo in-exec; echo oops >&2; exit 4"]),
    }));
    let started = read_line(&mut exec);
    assert_eq!(started["ok"], true, "{started}");
    assert!(started["pid"].as_i64().unwrap() > 0);
    let (out, err) = read_frames(&mut exec);
    assert_eq!((out.as_str(), err.as_str()), ("in-exec\n", "oops\n"));
    let state = s.call(json!({"op": "exec_state", "exec_id": "e1"}));
    assert_eq!(state["running"], false);
    assert_eq!(state["exit_code"], 4);
    assert_eq!(state["pid"], started["pid"]);

    // stdin to an exec: its EOF is the exec's EOF.
    let mut cat = s.connect(json!({
        "op": "exec", "exec_id": "e2", "tty": false, "stdin": true,
        "process": exec_process(&["/bin/sh", "-c", "tr a-z A-Z; exit 9"]),
    }));
    assert_eq!(read_line(&mut cat)["ok"], true);
    cat.write_all(b"shout\n").unwrap();
    cat.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_frames(&mut cat).0, "SHOUT\n");
    assert_eq!(
        s.call(json!({"op": "exec_state", "exec_id": "e2"}))["exit_code"],
        9
    );

    // A tty exec sees its own size.
    let mut tty = s.connect(json!({
        "op": "exec", "exec_id": "e3", "tty": true, "stdin": true,
        "process": exec_process(&["/bin/sh", "-c", "read x; stty size"]),
    }));
    assert_eq!(read_line(&mut tty)["ok"], true);
    assert_eq!(
        s.call(json!({"op": "resize", "exec_id": "e3", "height": 33, "width": 44})),
        json!({"ok": true})
    );
    tty.write_all(b"\n").unwrap();
    read_until(&mut tty, "33 44");
    wait_until(|| s.call(json!({"op": "exec_state", "exec_id": "e3"}))["exit_code"] == 0);

    // Bad requests get errors, and the shim keeps serving.
    assert!(s
        .call(json!({"op": "exec", "exec_id": "e1", "process": exec_process(&["/bin/true"])}))
        ["error"]
        .is_string());
    assert!(s
        .call(json!({"op": "exec", "exec_id": "../x", "process": exec_process(&["/bin/true"])}))
        ["error"]
        .is_string());
    assert!(s.call(json!({"op": "exec_state", "exec_id": "none"}))["error"].is_string());
    assert!(s.call(json!({"op": "kill", "signal": 999}))["error"].is_string());
    assert!(s.call(json!({"op": "frobnicate"}))["error"].is_string());
    let mut garbage = UnixStream::connect(s.path("state/shim.sock")).unwrap();
    garbage.write_all(b"not json\n").unwrap();
    assert!(read_line(&mut garbage)["error"].is_string());
    assert_eq!(s.call(json!({"op": "state"}))["running"], true);

    // Exec output is not the container's log.
    assert!(s.log_lines().is_empty());

    assert_eq!(
        s.call(json!({"op": "kill", "signal": 9, "all": false})),
        json!({"ok": true})
    );
    let done = s.wait_exit();
    assert_eq!(done["exit_code"], 137);
    let exit: Value =
        serde_json::from_slice(&std::fs::read(s.path("state/exit")).unwrap()).unwrap();
    assert_eq!(exit["exit_code"], 137);
}

#[test]
fn survives_the_death_of_its_parent() {
    let s = Setup::new("orphan", &["/bin/sleep", "60"], false);
    // A stand-in for berthd that spawns the shim and exits.
    let mut parent = Command::new("/bin/sh")
        .arg("-c")
        .arg("\"$0\" \"$@\" 3>&1; exit 0")
        .arg(SHIM)
        .args(s.args(&[]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = parent.stdout.take().unwrap();
    let parent_pid = parent.id() as i32;
    assert!(parent.wait().unwrap().success());
    let ready = read_ready(OwnedFd::from(stdout));
    assert!(ready["pid"].as_i64().unwrap() > 0, "{ready}");
    assert!(!alive(parent_pid));

    let shim = s.shim_pid();
    assert!(alive(shim));
    let status = std::fs::read_to_string(format!("/proc/{shim}/status")).unwrap();
    let ppid: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(ppid, parent_pid);
    assert_ne!(ppid, std::process::id() as i32);
    // Its own session.
    assert_eq!(
        nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(shim)))
            .unwrap()
            .as_raw(),
        shim
    );

    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(shim));
    assert_eq!(s.call(json!({"op": "state"}))["running"], true);
    s.call(json!({"op": "kill", "signal": 9}));
    assert_eq!(s.wait_exit()["exit_code"], 137);
}

#[test]
fn log_rotation() {
    let s = Setup::new("rotate", &["/bin/sh", "-c", "seq 1 500"], false);
    s.spawn(&["--log-max-size", "2000", "--log-max-file", "3"]);
    assert_eq!(s.wait_exit()["exit_code"], 0);
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", s.log_path().display()));
    assert!(numbered(1).exists() && numbered(2).exists());
    assert!(!numbered(3).exists());
    let mut all: Vec<Value> = Vec::new();
    for path in [numbered(2), numbered(1), s.log_path()] {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.len() < 2000 + 200,
            "{} is {} bytes",
            path.display(),
            text.len()
        );
        all.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    // The newest lines, in order, none torn.
    let numbers: Vec<u32> = all
        .iter()
        .map(|v| v["log"].as_str().unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(*numbers.last().unwrap(), 500);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
}

#[test]
fn startup_failure_is_reported() {
    let s = Setup::new("fail", &["/bin/no-such-program"], false);
    let ready = s.spawn(&[]);
    let error = ready["error"].as_str().expect("an error");
    assert!(error.contains("no-such-program"), "{error}");
    assert!(!s.path("state/shim.sock").exists());
    assert!(!s.path("runtime").join(&s.id).exists());

    let bad = Setup::new("badbundle", &["/bin/true"], false);
    std::fs::write(bad.path("bundle/config.json"), "{").unwrap();
    assert!(bad.spawn(&[])["error"].as_str().unwrap().contains("config"));
    assert!(Command::new(SHIM).arg("--nope").status().unwrap().code() == Some(2));
}

/// The shim's private memory for a running container: the benchmark figure.
#[test]
fn private_memory_of_an_idle_shim() {
    let s = Setup::new("memory", &["/bin/sleep", "60"], false);
    s.spawn(&[]);
    // Exercise the paths a real container uses before measuring.
    s.call(json!({"op": "state"}));
    let mut exec =
        s.connect(json!({"op": "exec", "exec_id": "m", "process": exec_process(&["/bin/true"])}));
    read_line(&mut exec);
    read_frames(&mut exec);
    std::thread::sleep(Duration::from_millis(100));
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", s.shim_pid())).unwrap();
    let kb = |key: &str| -> u64 {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let private = kb("Private_Clean:") + kb("Private_Dirty:");
    let anonymous = kb("Anonymous:");
    eprintln!(
        "berth-shim private memory: {private} kB (Rss {} kB, anonymous {anonymous} kB)",
        kb("Rss:")
    );
    // Private_Clean/Dirty of the executable's pages depend on how many shims share
    // them and on whether the freshly linked file is written back yet; what the
    // shim itself allocates and writes is its anonymous memory. The bound is loose
    // enough for debug builds; the release figure is measured in bench/.
    assert!(anonymous < 1024, "{anonymous} kB anonymous");
    s.call(json!({"op": "kill", "signal": 9}));
    s.wait_exit();
}
