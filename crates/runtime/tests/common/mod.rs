//! Harness for the runtime's root integration tests.
//!
//! Owns: busybox bundles in a per-test temp dir, the default `config.json` (what `runc spec`
//! writes, written here so the runtime's own `spec` is not trusted), the runtime under test
//! (`$BERTH_TEST_RUNTIME`, else the freshly built `berth-runtime`) with a per-test `--root`,
//! per-container cgroup paths, and the clean-up guard: when a [`Test`] drops it force-deletes
//! its containers, removes its cgroup directories in every hierarchy, fails the test if a
//! mount under its temp dir is left, and removes the temp dir.
//!
//! Every command runs with stdin from /dev/null and stdout/stderr to files, never pipes: a
//! detached container inherits the runtime's stdio and would keep a pipe open for its whole life.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a single runtime command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The runc-compatible binary under test.
pub fn runtime_bin() -> PathBuf {
    match std::env::var_os("BERTH_TEST_RUNTIME") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime")),
    }
}

/// True when the runtime under test is runc (some messages differ in wording only).
pub fn runtime_is_runc() -> bool {
    runtime_bin()
        .file_name()
        .is_some_and(|name| name.to_string_lossy().contains("runc"))
}

/// What a finished command left: exit code (128+signal when killed), stdout and stderr.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
    stdout_path: PathBuf,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with the whole command output unless it succeeded.
    pub fn ok(self) -> Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics unless the command failed.
    pub fn failed(self) -> Self {
        assert!(!self.success(), "command should have failed: {self}");
        self
    }

    /// stdout as it is now: a detached container keeps writing to its creator's stdout.
    pub fn stdout_now(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// An OCI bundle: `<path>/config.json` (written from `config` by [`Bundle::write`]) and a
/// busybox root in `<path>/rootfs`.
pub struct Bundle {
    pub path: PathBuf,
    pub config: Value,
}

impl Bundle {
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// The process is `sh -c script`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    pub fn write(&self) {
        let text = serde_json::to_string_pretty(&self.config).unwrap();
        fs::write(self.path.join("config.json"), text).unwrap();
    }

    pub fn add_namespace(&mut self, kind: &str) -> &mut Self {
        self.namespaces().push(json!({ "type": kind }));
        self
    }

    pub fn remove_namespace(&mut self, kind: &str) -> &mut Self {
        self.namespaces().retain(|ns| ns["type"] != kind);
        self
    }

    pub fn namespaces(&mut self) -> &mut Vec<Value> {
        self.config["linux"]["namespaces"].as_array_mut().unwrap()
    }

    pub fn mounts(&mut self) -> &mut Vec<Value> {
        self.config["mounts"].as_array_mut().unwrap()
    }

    /// `linux.resources`, created when missing.
    pub fn resources(&mut self) -> &mut Value {
        &mut self.config["linux"]["resources"]
    }
}

/// The default `config.json`, as `runc spec` writes it, but with no terminal, a writable
/// root and the hostname `berth-test`.
pub fn default_config() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "berth-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// Writes a busybox root: /bin/busybox (a copy, so a container cannot change the host's),
/// one symlink per applet, /etc/passwd and /etc/group with root and nobody, empty mount points.
pub fn make_busybox_rootfs(rootfs: &Path) {
    for dir in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "home", "var", "run",
    ] {
        fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = rootfs.join("bin").join(applet);
        if !applet.is_empty() && fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// One test's world: temp dir, runtime state root, bundles, containers, cgroups.
pub struct Test {
    pub name: String,
    pub dir: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
    pub bin: PathBuf,
    containers: RefCell<Vec<String>>,
    cgroups: RefCell<Vec<String>>,
    counter: Cell<u32>,
    cleanups: RefCell<Vec<Box<dyn FnOnce()>>>,
    /// Mounts the test made itself (not leaks of the runtime).
    own_mounts: RefCell<Vec<PathBuf>>,
}

impl Test {
    pub fn new(name: &str) -> Test {
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-test-{name}-"))
            .tempdir()
            .unwrap()
            .keep();
        let root = dir.join("state");
        Test {
            name: name.to_string(),
            dir,
            root,
            bin: runtime_bin(),
            containers: RefCell::new(Vec::new()),
            cgroups: RefCell::new(Vec::new()),
            counter: Cell::new(0),
            cleanups: RefCell::new(Vec::new()),
            own_mounts: RefCell::new(Vec::new()),
        }
    }

    fn next(&self) -> u32 {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        n
    }

    /// A fresh bundle with its own busybox root and the default config.
    pub fn bundle(&self) -> Bundle {
        let path = self.dir.join(format!("bundle-{}", self.next()));
        make_busybox_rootfs(&path.join("rootfs"));
        Bundle {
            path,
            config: default_config(),
        }
    }

    /// The absolute cgroupsPath this test gives container `id`: unique on the host.
    pub fn cgroup_path(&self, id: &str) -> String {
        format!("/berth-test-{}-{}-{}", self.name, std::process::id(), id)
    }

    /// Removes `path` (absolute, or relative to this process's cgroup) in every hierarchy
    /// when the test ends.
    pub fn track_cgroup(&self, path: &str) {
        self.cgroups.borrow_mut().push(path.to_string());
    }

    /// Bind-mounts the test dir onto itself as a shared mount, so propagation settings of
    /// the container's root have a peer group to follow (the host's / may be private).
    pub fn share_dir(&self) {
        let dir = self.dir.to_str().unwrap();
        host("mount", &["--bind", dir, dir]);
        host("mount", &["--make-shared", dir]);
        self.own_mounts.borrow_mut().push(self.dir.clone());
        let path = self.dir.clone();
        self.on_cleanup(move || {
            let _ = nix::mount::umount2(path.as_path(), nix::mount::MntFlags::MNT_DETACH);
        });
    }

    /// Mounts under the test dir that the test did not make itself.
    pub fn leaked_mounts(&self) -> Vec<PathBuf> {
        let own = self.own_mounts.borrow();
        mounts_under(&self.dir)
            .into_iter()
            .filter(|m| !own.contains(m))
            .collect()
    }

    /// Runs `f` when the test ends, before containers are deleted and leaks are checked.
    pub fn on_cleanup(&self, f: impl FnOnce() + 'static) {
        self.cleanups.borrow_mut().push(Box::new(f));
    }

    /// Deletes `id` with `delete --force` when the test ends.
    pub fn track_container(&self, id: &str) {
        self.containers.borrow_mut().push(id.to_string());
    }

    /// Gives the bundle this container's cgroup path (unless the test set its own), writes
    /// config.json and records the container for clean-up.
    pub fn prepare(&self, bundle: &mut Bundle, id: &str) {
        let auto_prefix = self.cgroup_path("");
        let current = &bundle.config["linux"]["cgroupsPath"];
        if current.is_null()
            || current
                .as_str()
                .is_some_and(|p| p.starts_with(&auto_prefix))
        {
            bundle.config["linux"]["cgroupsPath"] = json!(self.cgroup_path(id));
        }
        let cgroup = bundle.config["linux"]["cgroupsPath"]
            .as_str()
            .unwrap()
            .to_string();
        self.track_cgroup(&cgroup);
        bundle.write();
        self.track_container(id);
    }

    /// `runtime --root <root> args...`
    pub fn rt(&self, args: &[&str]) -> Output {
        self.rt_with(args, |_| {})
    }

    /// As [`Test::rt`], letting the caller adjust the command (env, extra fds).
    pub fn rt_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root).args(args);
        adjust(&mut cmd);
        self.command(cmd)
    }

    /// Runs the runtime from `sh -c '<prelude>; exec "$@"'`, so the prelude can open fds
    /// or set variables that need the runtime's own pid (`LISTEN_PID=$$`).
    pub fn rt_shell(&self, prelude: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("{prelude}; exec \"$@\""))
            .arg("sh")
            .arg(&self.bin)
            .arg("--root")
            .arg(&self.root)
            .args(args);
        self.command(cmd)
    }

    /// Runs any command with stdin /dev/null and stdout/stderr to files, killing it after
    /// [`COMMAND_TIMEOUT`].
    pub fn command(&self, mut cmd: Command) -> Output {
        let n = self.next();
        let out_dir = self.dir.join("out");
        fs::create_dir_all(&out_dir).unwrap();
        let stdout_path = out_dir.join(format!("{n}.stdout"));
        let stderr_path = out_dir.join(format!("{n}.stderr"));
        let description = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).unwrap())
            .stderr(fs::File::create(&stderr_path).unwrap());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {description}: {e}"));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > COMMAND_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{description} did not finish in {COMMAND_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        Output {
            code,
            stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
            stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
            command: description,
            stdout_path,
        }
    }

    /// `create --bundle <bundle> <id>` after [`Test::prepare`].
    pub fn create(&self, bundle: &mut Bundle, id: &str) -> Output {
        self.prepare(bundle, id);
        let path = bundle.path.to_str().unwrap().to_string();
        self.rt(&["create", "--bundle", &path, id])
    }

    /// `run --bundle <bundle> <id>` (foreground) after [`Test::prepare`].
    pub fn run(&self, bundle: &mut Bundle, id: &str) -> Output {
        self.prepare(bundle, id);
        let path = bundle.path.to_str().unwrap().to_string();
        self.rt(&["run", "--bundle", &path, id])
    }

    /// Runs `sh -c script` in a new container from `bundle`, asserts success, returns stdout.
    pub fn sh(&self, bundle: &mut Bundle, script: &str) -> String {
        let id = format!("c{}", self.next());
        bundle.sh(script);
        let out = self.run(bundle, &id).ok();
        self.assert_gone(&id);
        out.stdout
    }

    /// Creates and starts a container running `sh -c script` in the background (the script
    /// should end with something like `sleep 1000`); returns its host pid.
    pub fn start_background(&self, bundle: &mut Bundle, id: &str, script: &str) -> i32 {
        bundle.sh(script);
        self.create(bundle, id).ok();
        self.rt(&["start", id]).ok();
        let state = self.state(id);
        state["pid"].as_i64().unwrap() as i32
    }

    pub fn state(&self, id: &str) -> Value {
        self.rt(&["state", id]).ok().json()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or("").to_string()
    }

    /// Waits until `state` reports `status` (panics after 10 s).
    pub fn wait_status(&self, id: &str, status: &str) {
        wait_until(&format!("{id} to be {status}"), || {
            self.status(id) == status
        });
    }

    /// Runs `exec <id> sh -c script` and returns stdout, asserting success.
    pub fn exec_sh(&self, id: &str, script: &str) -> String {
        self.rt(&["exec", id, "sh", "-c", script]).ok().stdout
    }

    /// `delete <id>` (or `--force`) and assert nothing of it is left.
    pub fn delete(&self, id: &str, force: bool) {
        let args: &[&str] = if force {
            &["delete", "--force", id]
        } else {
            &["delete", id]
        };
        self.rt(args).ok();
        self.assert_gone(id);
    }

    /// Asserts no state dir, no cgroup dir and no mount of container `id` is left.
    pub fn assert_gone(&self, id: &str) {
        let state_dir = self.root.join(id);
        assert!(
            !state_dir.exists(),
            "state dir {} is left",
            state_dir.display()
        );
        let cgroup = self.cgroup_path(id);
        for dir in cgroup_dirs(&cgroup) {
            assert!(!dir.exists(), "cgroup dir {} is left", dir.display());
        }
        let mounts = self.leaked_mounts();
        assert!(
            mounts.is_empty(),
            "mounts left under the test dir: {mounts:?}"
        );
    }

    /// Asserts the runtime left no trace of `id` after a failed create/run.
    pub fn assert_nothing_left(&self, id: &str) {
        self.assert_gone(id);
        let listed = self.rt(&["list", "-q"]);
        assert!(
            !listed.stdout.lines().any(|line| line == id),
            "{id} still listed: {listed}"
        );
    }
}

impl Drop for Test {
    fn drop(&mut self) {
        // Daemons and clients stop first: their own mounts go with them.
        for cleanup in self.cleanups.borrow_mut().drain(..) {
            cleanup();
        }
        for id in self.containers.borrow().iter() {
            let mut cmd = Command::new(&self.bin);
            cmd.arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
        }
        for cgroup in self.cgroups.borrow().iter() {
            for dir in cgroup_dirs(cgroup) {
                remove_cgroup_tree(&dir);
            }
        }
        let left = self.leaked_mounts();
        for mount in left.iter().rev() {
            let _ = nix::mount::umount2(mount.as_path(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir_all(&self.dir);
        if !left.is_empty() && !std::thread::panicking() {
            panic!("mounts were left under {}: {left:?}", self.dir.display());
        }
    }
}

/// Polls `cond` every 10 ms for up to 10 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Mount points of every cgroup hierarchy (each v1 controller and the unified one).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            (*fstype == "cgroup" || *fstype == "cgroup2").then(|| unescape(fields[4]))
        })
        .collect()
}

/// The v1 hierarchy that holds `controller` (e.g. "memory"), or the unified mount.
pub fn cgroup_mount(controller: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup").join(controller)
}

/// `path` (absolute, or relative to this process's cgroup) in every hierarchy.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    cgroup_mounts()
        .into_iter()
        .map(|mount| {
            if path.starts_with('/') {
                mount.join(path.trim_start_matches('/'))
            } else {
                let name = mount.file_name().unwrap().to_string_lossy().to_string();
                let base = own
                    .lines()
                    .find_map(|line| {
                        let mut parts = line.splitn(3, ':');
                        let _ = parts.next();
                        let controllers = parts.next()?;
                        let cgpath = parts.next()?;
                        let matches = if name == "unified" {
                            controllers.is_empty()
                        } else {
                            controllers
                                .split(',')
                                .any(|c| c == name || c == format!("name={name}"))
                        };
                        matches.then(|| cgpath.to_string())
                    })
                    .unwrap_or_else(|| "/".to_string());
                mount.join(base.trim_start_matches('/')).join(path)
            }
        })
        .collect()
}

/// Kills what is left in a cgroup tree, thaws it, and removes it, children first.
fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::write(dir.join("freezer.state"), "THAWED");
    for attempt in 0..200 {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(if attempt < 50 { 5 } else { 20 }));
    }
}

/// Mount points at or under `dir`, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape))
        .filter(|mount| mount.starts_with(dir))
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(value) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// Parses a hex capability mask line of /proc/<pid>/status (e.g. `CapEff:\t00000000a80425fb`).
pub fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_string()
}

/// Runs a command on the host, asserting success; returns stdout.
pub fn host(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A command that becomes its own process group leader, so a test can kill what it started.
pub fn own_group(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0)
}
