//! Real clients on top of the runtime under test: podman (`--runtime`) and Debian's
//! dockerd 20.10 (`--add-runtime berth=...`) driven by the Debian docker 20.10 CLI, each with
//! private roots in the test dir and a busybox image imported offline.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A tarball of a busybox root, for `podman import` / `docker import`.
fn busybox_tarball(t: &Test) -> PathBuf {
    let rootfs = t.dir.join("image-rootfs");
    make_busybox_rootfs(&rootfs);
    let tarball = t.dir.join("busybox.tar");
    host(
        "tar",
        &[
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            tarball.to_str().unwrap(),
            ".",
        ],
    );
    tarball
}

/// podman with private storage and the settings this host needs (no systemd, cgroup v1).
struct Podman {
    args: Vec<String>,
}

impl Podman {
    fn new(t: &Test) -> Podman {
        let dir = |name: &str| {
            let path = t.dir.join(name);
            fs::create_dir_all(&path).unwrap();
            path.to_str().unwrap().to_string()
        };
        let args = vec![
            "--root".into(),
            dir("podman-root"),
            "--runroot".into(),
            dir("podman-runroot"),
            "--tmpdir".into(),
            dir("podman-tmp"),
            "--storage-driver".into(),
            "vfs".into(),
            "--runtime".into(),
            t.bin.to_str().unwrap().to_string(),
            "--cgroup-manager=cgroupfs".into(),
            "--events-backend=file".into(),
        ];
        let podman = Podman { args };
        let cleanup_args = podman.args.clone();
        t.on_cleanup(move || {
            let _ = Command::new("podman")
                .args(&cleanup_args)
                .args(["rm", "--all", "--force", "--time", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        });
        let tarball = busybox_tarball(t);
        podman
            .run(
                t,
                &[
                    "import",
                    tarball.to_str().unwrap(),
                    "localhost/berth-busybox",
                ],
            )
            .ok();
        podman
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.args(&self.args).args(args);
        cmd
    }

    fn run(&self, t: &Test, args: &[&str]) -> Output {
        t.command(self.command(args))
    }

    /// `podman run --rm <flags> IMAGE args...`
    fn run_container(&self, t: &Test, flags: &[&str], args: &[&str]) -> Output {
        let mut all = vec![
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ];
        all.extend_from_slice(flags);
        all.push("localhost/berth-busybox");
        all.extend_from_slice(args);
        self.run(t, &all)
    }

    /// The shell line that runs podman, for tmux.
    fn shell_line(&self, args: &[&str]) -> String {
        let mut words = vec!["podman".to_string()];
        words.extend(self.args.iter().cloned());
        words.extend(args.iter().map(|a| a.to_string()));
        words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[test]
fn podman_run_rm() {
    let t = Test::new("podmanrun");
    let podman = Podman::new(&t);
    let out = podman
        .run_container(&t, &[], &["sh", "-c", "echo hello from podman; echo $$"])
        .ok();
    assert_eq!(out.stdout, "hello from podman\n1\n");
}

#[test]
fn podman_run_interactive_in_tmux() {
    let t = Test::new("podmantty");
    let podman = Podman::new(&t);
    let server = format!("berth-test-{}", std::process::id());
    let tmux = |args: &[&str]| {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &server]).args(args);
        t.command(cmd)
    };
    let cleanup_server = server.clone();
    t.on_cleanup(move || {
        let _ = Command::new("tmux")
            .args(["-L", &cleanup_server, "kill-server"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
    let line = podman.shell_line(&[
        "run",
        "-it",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "localhost/berth-busybox",
        "sh",
    ]);
    let status = t.dir.join("tmux-exit");
    let session_line = format!("{line}; echo $? > {}", status.display());
    tmux(&["new-session", "-d", "-x", "120", "-y", "30", &session_line]).ok();
    let capture = || tmux(&["capture-pane", "-p"]).stdout;
    wait_until("the shell prompt", || capture().contains('#'));
    tmux(&["send-keys", "echo $((6*7))", "Enter"]).ok();
    wait_until("42 on the terminal", || {
        capture().lines().any(|l| l.trim() == "42")
    });
    tmux(&["send-keys", "exit 0", "Enter"]).ok();
    wait_until("podman to exit", || status.exists());
    assert_eq!(fs::read_to_string(&status).unwrap().trim(), "0");
}

#[test]
fn podman_exec() {
    let t = Test::new("podmanexec");
    let podman = Podman::new(&t);
    podman
        .run(
            &t,
            &[
                "run",
                "-d",
                "--name",
                "berth-exec",
                "--hostname",
                "podbox",
                "--network",
                "none",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                "localhost/berth-busybox",
                "sleep",
                "1000",
            ],
        )
        .ok();
    let out = podman
        .run(
            &t,
            &[
                "exec",
                "berth-exec",
                "sh",
                "-c",
                "hostname; cat /proc/1/cmdline",
            ],
        )
        .ok();
    assert_eq!(out.stdout, "podbox\nsleep\u{0}1000\u{0}");
    podman
        .run(&t, &["rm", "--force", "--time", "0", "berth-exec"])
        .ok();
}

#[test]
fn podman_memory_and_cpus() {
    let t = Test::new("podmanlimits");
    let podman = Podman::new(&t);
    let out = podman
        .run_container(
            &t,
            &["--memory", "64m", "--cpus", "0.5"],
            &[
                "cat",
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
            ],
        )
        .ok();
    assert_eq!(out.stdout, "67108864\n50000\n100000\n");
}

/// Debian's dockerd with everything private to the test dir, stopped at clean-up.
struct Dockerd {
    socket: String,
}

impl Dockerd {
    fn start(t: &Test) -> Dockerd {
        let dir = |name: &str| t.dir.join(name).to_str().unwrap().to_string();
        let socket = format!("unix://{}", dir("docker.sock"));
        let mut cmd = Command::new("/usr/sbin/dockerd");
        cmd.args([
            "--data-root",
            &dir("docker-data"),
            "--exec-root",
            &dir("docker-exec"),
            "-H",
            &socket,
            "--pidfile",
            &dir("docker.pid"),
            "--bridge",
            "none",
            "--iptables=false",
            "--ip-masq=false",
            "--storage-driver",
            "vfs",
            "--add-runtime",
            &format!("berth={}", t.bin.display()),
        ])
        .stdin(Stdio::null())
        .stdout(fs::File::create(t.dir.join("dockerd.log")).unwrap())
        .stderr(fs::File::create(t.dir.join("dockerd.log")).unwrap());
        own_group(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let pid = child.id() as i32;
        let dir_for_cleanup = t.dir.clone();
        t.on_cleanup(move || {
            // dockerd stops its containerd; the group kill catches anything it left.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            unmount_all_under(&dir_for_cleanup);
        });
        let dockerd = Dockerd { socket };
        let log = t.dir.join("dockerd.log");
        let started = std::time::Instant::now();
        while !dockerd.cli(t, &["version"]).success() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "dockerd did not come up: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let tarball = busybox_tarball(t);
        dockerd
            .cli(
                t,
                &["import", tarball.to_str().unwrap(), "berth-busybox:latest"],
            )
            .ok();
        dockerd
    }

    /// The Debian 20.10 CLI against this daemon.
    fn cli(&self, t: &Test, args: &[&str]) -> Output {
        let mut cmd = Command::new("/usr/bin/docker");
        cmd.args(["-H", &self.socket]).args(args);
        t.command(cmd)
    }
}

/// Daemon leftovers (netns files, shm) are the daemon's, not the runtime's: detach them.
fn unmount_all_under(dir: &Path) {
    for mount in mounts_under(dir).iter().rev() {
        let _ = nix::mount::umount2(mount.as_path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn docker_run_and_exec() {
    let t = Test::new("docker");
    let docker = Dockerd::start(&t);
    let out = docker
        .cli(
            &t,
            &[
                "run",
                "--runtime",
                "berth",
                "--rm",
                "berth-busybox",
                "echo",
                "hi",
            ],
        )
        .ok();
    assert_eq!(out.stdout, "hi\n");

    docker
        .cli(
            &t,
            &[
                "run",
                "--runtime",
                "berth",
                "-d",
                "--name",
                "berth-exec",
                "--hostname",
                "dockbox",
                "berth-busybox",
                "sleep",
                "1000",
            ],
        )
        .ok();
    let out = docker
        .cli(
            &t,
            &["exec", "berth-exec", "sh", "-c", "hostname; echo $((6*7))"],
        )
        .ok();
    assert_eq!(out.stdout, "dockbox\n42\n");
    let inspect = docker
        .cli(
            &t,
            &[
                "inspect",
                "--format",
                "{{.HostConfig.Runtime}} {{.State.Running}}",
                "berth-exec",
            ],
        )
        .ok();
    assert_eq!(inspect.stdout, "berth true\n");
    docker.cli(&t, &["rm", "--force", "berth-exec"]).ok();
}
