//! A daemon of the test's own — berthd, or Debian's dockerd (20.10, API 1.41) with the
//! containerd it starts — on a temp data-root, exec-root, socket, pidfile and cgroup
//! parent, with a busybox image imported offline, and runners for `berth` and the real
//! `docker` CLI against it. Dropping the [`Engine`] removes its containers, stops the
//! daemon (SIGTERM, so dockerd stops its containerd), kills leftovers, removes its
//! cgroups and unmounts what it mounted.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);
static BUILT: OnceLock<PathBuf> = OnceLock::new();

/// The directory holding berthd and berth-shim, built from this workspace once.
fn daemon_bin_dir() -> &'static Path {
    BUILT.get_or_init(|| {
        // target/<profile>/deps/<test-exe> → target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile> dir")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-p", "berth-daemon", "-p", "berth-shim"])
            .env("CARGO_TARGET_DIR", &target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building berthd and berth-shim failed");
        assert!(profile_dir.join("berthd").exists());
        profile_dir
    })
}

/// Which daemon an [`Engine`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Berthd,
    /// Debian's dockerd (package docker.io), Engine API 1.41.
    Dockerd,
}

pub struct Engine {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub kind: Kind,
    cgroup_parent: String,
    daemon: Option<Child>,
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A fresh directory (and cgroup parent name) for one daemon.
fn new_dir() -> (String, PathBuf) {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let tag = format!("bcli-{}-{n}", std::process::id());
    // Short: shim and containerd socket paths live under the exec-root and sun_path
    // is 108 bytes.
    let dir = PathBuf::from(format!("/tmp/{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    (tag, dir)
}

impl Engine {
    /// A daemon of this kind, with busybox:latest imported.
    pub fn of(kind: Kind) -> Engine {
        match kind {
            Kind::Berthd => Engine::start(),
            Kind::Dockerd => Engine::dockerd(),
        }
    }

    /// A fresh berthd with busybox:latest imported.
    pub fn start() -> Engine {
        let bin = daemon_bin_dir();
        let (tag, dir) = new_dir();
        std::fs::write(dir.join("daemon.json"), "{\"bridge\": \"none\"}\n").expect("daemon.json");
        let log = std::fs::File::create(dir.join("daemon.log")).expect("daemon.log");
        let socket = dir.join("s.sock");
        let daemon = Command::new(bin.join("berthd"))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-p")
            .arg(dir.join("berthd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--cgroup-parent")
            .arg(format!("/{tag}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        let mut engine = Engine {
            dir,
            socket,
            kind: Kind::Berthd,
            cgroup_parent: tag,
            daemon: Some(daemon),
        };
        engine.wait_ready(Duration::from_secs(30));
        engine.import_busybox();
        engine
    }

    /// A fresh Debian dockerd (20.10) with busybox:latest imported (by berth, from
    /// the same tar as berthd's). No bridge, no iptables: nothing on the host's
    /// network changes; its own containerd namespaces, so it shares nothing with
    /// another dockerd on the machine.
    pub fn dockerd() -> Engine {
        let (tag, dir) = new_dir();
        std::fs::write(dir.join("daemon.json"), "{}\n").expect("daemon.json");
        let log = std::fs::File::create(dir.join("daemon.log")).expect("daemon.log");
        let socket = dir.join("s.sock");
        let daemon = Command::new("/usr/sbin/dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-p")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .arg("--cgroup-parent")
            .arg(format!("/{tag}"))
            .arg("--containerd-namespace")
            .arg(&tag)
            .arg("--containerd-plugins-namespace")
            .arg(format!("{tag}-plugins"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("Debian's dockerd (package docker.io) at /usr/sbin/dockerd");
        let mut engine = Engine {
            dir,
            socket,
            kind: Kind::Dockerd,
            cgroup_parent: tag,
            daemon: Some(daemon),
        };
        // dockerd starts containerd first; under load that takes seconds.
        engine.wait_ready(Duration::from_secs(60));
        engine.import_busybox();
        engine
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(mut s) = UnixStream::connect(&self.socket) {
                let _ = s.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = [0u8; 16];
                if s.read(&mut buf)
                    .is_ok_and(|n| n > 12 && &buf[9..12] == b"200")
                {
                    return;
                }
            }
            if let Some(Ok(Some(st))) = self.daemon.as_mut().map(Child::try_wait) {
                panic!("{:?} exited ({st}): {}", self.kind, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{:?} did not answer /_ping: {}", self.kind, self.log());
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn berth_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("-H")
            .arg(self.host())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_cmd(args).output().expect("run berth")
    }

    /// berth with `input` on its stdin.
    pub fn berth_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .berth_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth");
        if let Some(mut s) = child.stdin.take() {
            s.write_all(input).expect("write stdin");
        }
        child.wait_with_output().expect("berth output")
    }

    /// berth ARGS, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed ({}): {}\n--- {:?} log ---\n{}",
            o.status,
            stderr(&o),
            self.kind,
            self.log()
        );
        stdout(&o)
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    fn import_busybox(&self) {
        let tar = busybox_tar(&self.dir);
        let out = self.ok(&["import", tar.to_str().expect("utf-8"), "busybox:latest"]);
        assert!(out.starts_with("sha256:"), "import printed {out:?}");
    }
}

/// A tar of a root filesystem with Debian's static busybox and its applets.
fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).expect("rootfs dir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in stdout(&list)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        let link = root.join("bin").join(applet);
        // busybox lists itself: skip names that exist already.
        if std::fs::symlink_metadata(&link).is_err() {
            symlink("busybox", &link).expect("applet symlink");
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    let tar = dir.join("busybox.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar of the rootfs failed");
    tar
}

fn kill(pid: i32) {
    if pid > 1 {
        // SAFETY: kill(2) with a PID this test's daemon recorded; no memory involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            let ids = self.berth(&["ps", "-aq", "--no-trunc"]);
            for id in stdout(&ids).split_whitespace() {
                let _ = self.berth(&["rm", "-f", id]);
            }
        }
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: our own unreaped child. SIGTERM, so that dockerd also stops the
            // containerd it started.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let grace = match self.kind {
                Kind::Berthd => 5,
                Kind::Dockerd => 20,
            };
            let deadline = Instant::now() + Duration::from_secs(grace);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = d.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        // Whatever outlived its daemon and names this directory on its command line:
        // dockerd's containerd and containerd-shim-runc-v2 (`-address
        // <dir>/exec/containerd/containerd.sock`), a berth-shim.
        for pid in processes_naming(&self.dir) {
            kill(pid);
        }
        // Shims (and so containers) a failed test left behind.
        for entry in std::fs::read_dir(self.dir.join("exec/containers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(pid) = std::fs::read_to_string(entry.path().join("shim.pid")) {
                kill(pid.trim().parse().unwrap_or(0));
            }
        }
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = hierarchy.path().join(&self.cgroup_parent);
            for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                let procs =
                    std::fs::read_to_string(child.path().join("cgroup.procs")).unwrap_or_default();
                for pid in procs.split_whitespace() {
                    kill(pid.parse().unwrap_or(0));
                }
                std::thread::sleep(Duration::from_millis(20));
                let _ = std::fs::remove_dir(child.path());
            }
            let _ = std::fs::remove_dir(&parent);
        }
        let prefix = self.dir.to_string_lossy().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Processes (not this one) whose command line mentions `dir`.
fn processes_naming(dir: &Path) -> Vec<i32> {
    // With the slash: /tmp/bcli-1-1 must not match /tmp/bcli-1-10.
    let needle = format!("{}/", dir.display());
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle.as_str()))
        })
        .collect()
}

/// Replaces IDs (12 or 64 lowercase hex digits) with placeholders of the same width.
pub fn mask_ids(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let hex_len = b[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            .count();
        let after_ok = b
            .get(i + hex_len)
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        if boundary && after_ok && (hex_len == 12 || hex_len == 64) {
            out.push_str(&"X".repeat(hex_len));
            i += hex_len;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// `mask_ids`, then durations ("5 seconds", "Less than a second") as `<T>` and runs
/// of spaces as one: for outputs whose times may differ between two runs.
pub fn mask(s: &str) -> String {
    mask_ids(s)
        .split_inclusive('\n')
        .map(mask_durations)
        .collect()
}

fn mask_durations(line: &str) -> String {
    let units = [
        "Less than a second",
        "About a minute",
        "About an hour",
        "seconds",
        "second",
        "minutes",
        "hours",
        "days",
        "weeks",
        "months",
        "years",
    ];
    let mut s = line.to_string();
    // "N seconds" → "<T>", "Less than a second" → "<T>"; keep column alignment out
    // of the comparison by collapsing runs of spaces.
    for u in units {
        while let Some(pos) = s.find(u) {
            let mut start = pos;
            let bytes = s.as_bytes();
            while start > 0 && (bytes[start - 1].is_ascii_digit() || bytes[start - 1] == b' ') {
                if bytes[start - 1] == b' ' && start >= 2 && !bytes[start - 2].is_ascii_digit() {
                    break;
                }
                start -= 1;
            }
            s.replace_range(start..pos + u.len(), "<T>");
        }
    }
    let mut collapsed = String::new();
    let mut prev_space = false;
    for c in s.chars() {
        if c == ' ' {
            if !prev_space {
                collapsed.push(' ');
            }
            prev_space = true;
        } else {
            collapsed.push(c);
            prev_space = false;
        }
    }
    collapsed
}
