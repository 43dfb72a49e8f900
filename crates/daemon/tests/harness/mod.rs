//! A real berthd per test: its own data-root, exec-root, socket, pidfile and cgroup
//! parent under a temp dir, driven by the real `docker` CLI. Everything it made
//! (containers, shims, mounts, cgroups) is removed when the [`Daemon`] is dropped.

#![allow(dead_code)]

pub mod dockerd;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Daemon {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub cgroup_parent: String,
    /// Everything comes from daemon.json (no flags), as seed 000's engines start.
    config_only: bool,
    child: Option<Child>,
}

/// The stdout of a command, as text.
pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What earlier test processes left when they were killed (a timeout kills without
/// running Drop): their container processes, mounts, cgroups and dirs.
fn reap_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dead = |name: &str| -> bool {
            name.strip_prefix("berth-e2e-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<i32>().ok())
                .is_some_and(|pid| pid != std::process::id() as i32 && !alive(pid))
        };
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            for parent in fs::read_dir(hierarchy.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = parent.file_name().to_string_lossy().to_string();
                if !dead(&name) {
                    continue;
                }
                for child in fs::read_dir(parent.path()).into_iter().flatten().flatten() {
                    let procs =
                        fs::read_to_string(child.path().join("cgroup.procs")).unwrap_or_default();
                    for pid in procs
                        .split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok())
                    {
                        // SAFETY: a process left in a dead test's cgroup.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        for entry in fs::read_dir("/tmp").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if dead(&name) {
                remove_network_leftovers(&entry.path());
                for m in mounts_under(&entry.path()) {
                    let _ = Command::new("umount").arg("-l").arg(&m).status();
                }
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            for parent in fs::read_dir(hierarchy.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if dead(&parent.file_name().to_string_lossy()) {
                    for child in fs::read_dir(parent.path()).into_iter().flatten().flatten() {
                        let _ = fs::remove_dir(child.path());
                    }
                    let _ = fs::remove_dir(parent.path());
                }
            }
        }
    });
}

/// The bridges and the nftables table a test daemon under `dir` made (its data-root
/// says which), removed.
pub fn remove_network_leftovers(dir: &Path) {
    // Data-roots may sit anywhere under the test dir (seed 000's engines nest them).
    fn network_dirs(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        if dir.join("network").join("table").exists() {
            out.push(dir.join("network"));
        }
        if depth == 0 {
            return;
        }
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != "network" {
                network_dirs(&e.path(), depth - 1, out);
            }
        }
    }
    let mut found = Vec::new();
    network_dirs(dir, 4, &mut found);
    for net in found {
        if let Ok(table) = fs::read_to_string(net.join("table")) {
            let table = table.trim();
            let script = format!("add table inet {table}\ndelete table inet {table}\n");
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .expect("nft (package nftables)");
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                let _ = stdin.write_all(script.as_bytes());
            }
            let _ = child.wait();
        }
        for e in fs::read_dir(net.join("networks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(v) = fs::read(e.path()) else { continue };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&v) else {
                continue;
            };
            if let Some(br) = v["bridge"].as_str().filter(|b| !b.is_empty()) {
                let _ = Command::new("ip")
                    .args(["link", "del", br])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// A bridge name and a /24 of its own for a test daemon (unique among concurrent tests).
pub fn test_bridge(n: u32) -> (String, String) {
    let pid = std::process::id();
    (
        format!("bt{}x{n}", pid % 100_000),
        format!("10.{}.{}.1/24", 200 + (n % 50), pid % 250),
    )
}

impl Daemon {
    /// A daemon without the default bridge (containers get only loopback, as with
    /// `--network none`), so that tests that are not about networking leave the host's
    /// network alone.
    pub fn start() -> Daemon {
        Self::start_json(|_| "{\"bridge\": \"none\"}\n".to_string())
    }

    /// A daemon with a default bridge of its own (see [`test_bridge`]); `extra` is
    /// more daemon.json keys (`"icc": false`, …), or empty.
    pub fn start_networked(extra: &str) -> Daemon {
        let n = COUNTER.load(Ordering::SeqCst);
        let (bridge, bip) = test_bridge(n);
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        };
        Self::start_json(move |_| {
            // Names the embedded DNS does not know go to the host's loopback, never out.
            format!(
                "{{\"bridge\": \"{bridge}\", \"bip\": \"{bip}\", \"dns\": [\"127.0.0.1\"]{extra}}}\n"
            )
        })
    }

    /// The daemon's default bridge (start_networked).
    pub fn bridge_name(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(self.dir.join("daemon.json")).unwrap_or_default(),
        )
        .unwrap_or_default();
        v["bridge"].as_str().unwrap_or("").to_string()
    }

    fn start_json(config: impl FnOnce(&Path) -> String) -> Daemon {
        reap_leftovers();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/berth-e2e-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the test dir");
        fs::write(dir.join("daemon.json"), config(&dir)).expect("write daemon.json");
        let mut d = Daemon {
            socket: dir.join("berth.sock"),
            cgroup_parent: format!("berth-e2e-{}-{n}", std::process::id()),
            dir,
            config_only: false,
            child: None,
        };
        d.spawn();
        d
    }

    /// A daemon configured only by the daemon.json that `config` writes for the test
    /// dir it is given; `socket` and `cgroup_parent` must be what that file says.
    pub fn start_with_config(
        config: impl FnOnce(&Path) -> String,
        socket: &str,
        cgroup_parent: &str,
    ) -> Daemon {
        reap_leftovers();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/berth-e2e-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the test dir");
        fs::write(dir.join("daemon.json"), config(&dir)).expect("write daemon.json");
        let mut d = Daemon {
            socket: dir.join(socket),
            cgroup_parent: cgroup_parent.to_string(),
            dir,
            config_only: true,
            child: None,
        };
        d.spawn();
        d
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("berthd.log"))
            .expect("open berthd.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berthd"));
        cmd.arg("--config-file").arg(self.dir.join("daemon.json"));
        if !self.config_only {
            cmd.arg("--data-root")
                .arg(self.data_root())
                .arg("--exec-root")
                .arg(self.exec_root())
                .arg("-p")
                .arg(self.dir.join("berthd.pid"))
                .arg("-H")
                .arg(self.host())
                .arg("--cgroup-parent")
                .arg(format!("/{}", self.cgroup_parent));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start berthd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ping = Command::new("curl")
                .args(["-sf", "--unix-socket"])
                .arg(&self.socket)
                .arg("http://berth/_ping")
                .output();
            if ping.is_ok_and(|o| o.status.success()) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("berthd exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not answer: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("berthd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Stops berthd: SIGKILL when `hard` (a crash), SIGTERM otherwise.
    pub fn stop_daemon(&mut self, hard: bool) {
        if let Some(mut child) = self.child.take() {
            let sig = if hard { libc::SIGKILL } else { libc::SIGTERM };
            // SAFETY: kill on our own child's PID, which we have not reaped yet.
            unsafe { libc::kill(child.id() as i32, sig) };
            let _ = child.wait();
        }
    }

    /// Starts berthd again on the same directories.
    pub fn restart_daemon(&mut self, hard: bool) {
        self.stop_daemon(hard);
        self.spawn();
    }

    /// The real `docker` CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_cmd(args).output().expect("run docker")
    }

    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// `docker ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({}): {}\nberthd log:\n{}",
            o.status,
            stderr(&o),
            self.log()
        );
        text(&o)
    }

    /// `docker import` of a busybox root filesystem made from Debian's busybox-static.
    pub fn import_busybox(&self, reference: &str) -> String {
        let tar = busybox_tar(&self.dir);
        self.ok(&["import", tar.to_str().expect("utf-8 path"), reference])
            .trim()
            .to_string()
    }

    /// A raw API request with curl: (status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "--unix-socket",
        ])
        .arg(&self.socket)
        .arg(format!("http://berth{path}"));
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let o = cmd.output().expect("run curl");
        let out = text(&o);
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

/// A tar of a minimal busybox root filesystem, written under `dir`.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let tar = dir.join("busybox.tar");
    if tar.exists() {
        return tar;
    }
    let root = dir.join("busybox-rootfs");
    fs::create_dir_all(root.join("bin")).expect("mkdir bin");
    fs::create_dir_all(root.join("etc")).expect("mkdir etc");
    fs::create_dir_all(root.join("tmp")).expect("mkdir tmp");
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in text(&list).lines() {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", &link).expect("applet link");
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .expect("passwd");
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    tar
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().to_string();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m.starts_with(&prefix))
        .map(PathBuf::from)
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out
}

/// Seconds since the epoch plus `ahead`, as `docker events --since/--until` take them.
pub fn unix_secs(ahead: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_secs())
        .unwrap_or(0);
    (now + ahead).to_string()
}

/// Whether a process with this PID exists.
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids = self.docker(&["ps", "-aq", "--no-trunc"]);
            for id in text(&ids).split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        self.stop_daemon(false);
        // Shims that outlived their daemon (a failed test): kill them and their containers.
        if let Ok(entries) = fs::read_dir(self.exec_root().join("containers")) {
            for e in entries.flatten() {
                if let Ok(pid) = fs::read_to_string(e.path().join("shim.pid")) {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        if alive(pid) {
                            // SAFETY: a PID read from a shim.pid this test's daemon wrote.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                }
            }
        }
        // Container processes left behind: everything in our cgroup parent.
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = hierarchy.path().join(&self.cgroup_parent);
            for child in fs::read_dir(&parent).into_iter().flatten().flatten() {
                let procs =
                    fs::read_to_string(child.path().join("cgroup.procs")).unwrap_or_default();
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    // SAFETY: a PID in a cgroup this test's daemon created.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        for m in mounts_under(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        remove_network_leftovers(&self.dir);
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = hierarchy.path().join(&self.cgroup_parent);
            if parent.exists() {
                for child in fs::read_dir(&parent).into_iter().flatten().flatten() {
                    if child.path().is_dir() {
                        let _ = fs::remove_dir(child.path());
                    }
                }
                let _ = fs::remove_dir(&parent);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A TCP port on 127.0.0.1 that nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// GET `path` from `addr` (HTTP/1.0): the body, retried for 8 s until a server answers.
pub fn http_get(addr: &str, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let sock: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
            let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(r) if r.contains("\r\n\r\n") => {
                return Ok(r
                    .split_once("\r\n\r\n")
                    .map(|x| x.1)
                    .unwrap_or("")
                    .to_string())
            }
            Ok(r) if Instant::now() > deadline => return Err(format!("bad answer: {r:?}")),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
