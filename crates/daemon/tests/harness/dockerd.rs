//! Debian's dockerd (20.10) beside berthd: its own data-root, exec-root, pidfile,
//! socket and containerd namespaces under a temp dir. Without a bridge (archive
//! interoperability) or with a bridge of the test's own and dockerd's iptables rules
//! and docker-proxy (coexistence). Stopped with SIGTERM, so that it stops the
//! containerd it started; what it leaves behind is removed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{mounts_under, text};

pub struct Dockerd {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub socket: PathBuf,
    /// The bridge made for it (`with_bridge`), removed with its rules on drop.
    pub bridge: Option<String>,
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

impl Dockerd {
    /// No bridge and no iptables rules.
    pub fn start() -> Dockerd {
        Self::spawn(
            None,
            &["--bridge=none", "--iptables=false", "--ip-masq=false"],
        )
    }

    /// A bridge of its own (made here, with a /24 of 10.190.x) and dockerd's defaults:
    /// iptables DNAT and docker-proxy for published ports.
    pub fn with_bridge() -> Dockerd {
        let pid = std::process::id();
        let bridge = format!("btd{}", pid % 100_000);
        let bip = format!("10.190.{}.1/24", pid % 250);
        let _ = run("ip", &["link", "del", &bridge]);
        assert!(run("ip", &["link", "add", &bridge, "type", "bridge"])
            .status
            .success());
        assert!(run("ip", &["addr", "add", &bip, "dev", &bridge])
            .status
            .success());
        assert!(run("ip", &["link", "set", &bridge, "up"]).status.success());
        let flag = format!("--bridge={bridge}");
        Self::spawn(Some(bridge.clone()), &[flag.as_str()])
    }

    fn spawn(bridge: Option<String>, extra: &[&str]) -> Dockerd {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("docker.sock");
        let namespace = format!("berth-test-{}", std::process::id());
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("dockerd.log");
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("-p")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(extra)
            .arg("--containerd-namespace")
            .arg(&namespace)
            .arg("--containerd-plugins-namespace")
            .arg(format!("{namespace}-plugins"))
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("Debian's dockerd (package docker.io) must be installed");
        let d = Dockerd {
            dir,
            child: Some(child),
            socket,
            bridge,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if d.socket.exists() && d.docker(&["version"]).status.success() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("dockerd did not come up:\n{}", d.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .expect("the docker CLI must be installed")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} against dockerd failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        text(&out)
    }

    /// Removes its containers and stops it (and the containerd it started).
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let ids = self.docker(&["ps", "-aq"]);
        for id in text(&ids).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        if let Some(mut child) = self.child.take() {
            let _ = run("kill", &["-TERM", &child.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        for m in mounts_under(self.dir.path()) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let Some(bridge) = &self.bridge else { return };
        // dockerd leaves its rules behind at exit (for live restore): take out the
        // ones naming this test's bridge, in its nat and filter tables, then the bridge.
        for table in ["nat", "filter"] {
            let listing = text(&run("nft", &["-a", "list", "table", "ip", table]));
            let mut chain = String::new();
            for line in listing.lines() {
                let l = line.trim();
                if let Some(rest) = l.strip_prefix("chain ") {
                    chain = rest.split_whitespace().next().unwrap_or("").to_string();
                } else if l.contains(&format!("\"{bridge}\"")) {
                    if let Some(handle) = l.rsplit("# handle ").next() {
                        let _ = run(
                            "nft",
                            &[
                                "delete",
                                "rule",
                                "ip",
                                table,
                                &chain,
                                "handle",
                                handle.trim(),
                            ],
                        );
                    }
                }
            }
        }
        let _ = run("ip", &["link", "del", bridge]);
    }
}
