//! Two berthd instances and Debian's dockerd on one host at once, each with a bridge of
//! its own and a published port: stopping any one leaves the others' rules and traffic
//! alone. Traffic goes to 127.0.0.1 only.

mod harness;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::{text, Daemon};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn get(port: u16, path: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(2),
            )?;
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
                    .map(|x| x.1.trim().to_string())
                    .unwrap_or_default())
            }
            Ok(r) if Instant::now() > deadline => return Err(format!("bad answer {r:?}")),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// The rules of iptables' nat table (dockerd's), as text.
fn iptables_nat() -> String {
    text(&run("iptables", &["-t", "nat", "-S"]))
}

fn berth_table(d: &Daemon) -> String {
    let name = std::fs::read_to_string(d.data_root().join("network/table")).expect("table");
    text(&run("nft", &["list", "table", "inet", name.trim()]))
}

/// Debian's dockerd with its own bridge (made here), iptables rules and docker-proxy.
struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    socket: PathBuf,
    bridge: String,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        let bridge = format!("btd{}", pid % 100_000);
        let bip = format!("10.{}.{}.1/24", 190, pid % 250);
        let _ = run("ip", &["link", "del", &bridge]);
        assert!(run("ip", &["link", "add", &bridge, "type", "bridge"])
            .status
            .success());
        assert!(run("ip", &["addr", "add", &bip, "dev", &bridge])
            .status
            .success());
        assert!(run("ip", &["link", "set", &bridge, "up"]).status.success());
        let socket = dir.path().join("docker.sock");
        let namespace = format!("berth-coexist-{pid}");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("-p")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--bridge")
            .arg(&bridge)
            .arg("--containerd-namespace")
            .arg(&namespace)
            .arg("--containerd-plugins-namespace")
            .arg(format!("{namespace}-plugins"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("Debian's dockerd (package docker.io)");
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
        panic!("dockerd did not come up: {}", d.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .expect("docker CLI")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} against dockerd: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        text(&out)
    }

    fn stop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in text(&ids).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        if let Some(mut child) = self.child.take() {
            // SIGTERM: dockerd stops the containerd it started.
            let _ = run("kill", &["-TERM", &child.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(30);
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
        for m in harness::mounts_under(self.dir.path()) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        // dockerd leaves its rules behind at exit (for live restore): take out the
        // ones naming this test's bridge, in its nat and filter tables, then the bridge.
        for table in ["nat", "filter"] {
            let listing = text(&run("nft", &["-a", "list", "table", "ip", table]));
            let mut chain = String::new();
            for line in listing.lines() {
                let l = line.trim();
                if let Some(rest) = l.strip_prefix("chain ") {
                    chain = rest.split_whitespace().next().unwrap_or("").to_string();
                } else if l.contains(&format!("\"{}\"", self.bridge)) {
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
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

#[test]
fn two_berthds_and_dockerd_publish_side_by_side() {
    let mut a = Daemon::start_networked("");
    let b = Daemon::start_networked("");
    assert_ne!(a.bridge_name(), b.bridge_name());
    let mut dockerd = Dockerd::start();
    a.import_busybox("busybox");
    b.import_busybox("busybox");
    let tar = harness::busybox_tar(&b.dir);
    dockerd.ok(&[
        "import",
        "--change",
        "ENV PATH=/bin",
        tar.to_str().unwrap(),
        "busybox",
    ]);
    let (pa, pb, pd) = (free_port(), free_port(), free_port());
    let serve = |port: u16, host: &str| -> Vec<String> {
        vec![
            "run".into(),
            "-d".into(),
            "--hostname".into(),
            host.into(),
            "-p".into(),
            format!("127.0.0.1:{port}:80"),
            "busybox".into(),
            "httpd".into(),
            "-f".into(),
            "-p".into(),
            "80".into(),
            "-h".into(),
            "/etc".into(),
        ]
    };
    let args = |v: &Vec<String>| v.clone();
    let va = args(&serve(pa, "in-a"));
    a.ok(&va.iter().map(String::as_str).collect::<Vec<_>>());
    let vb = args(&serve(pb, "in-b"));
    b.ok(&vb.iter().map(String::as_str).collect::<Vec<_>>());
    let vd = args(&serve(pd, "in-docker"));
    dockerd.ok(&vd.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(get(pa, "/hostname").as_deref(), Ok("in-a"));
    assert_eq!(get(pb, "/hostname").as_deref(), Ok("in-b"));
    assert_eq!(get(pd, "/hostname").as_deref(), Ok("in-docker"));
    let b_rules = berth_table(&b);
    let docker_nat = iptables_nat();
    assert!(
        docker_nat.contains(&format!("--dport {pd}")),
        "{docker_nat}"
    );

    // Stop berthd A (its containers go with it): B and dockerd are untouched.
    let ids = a.ok(&["ps", "-q"]);
    for id in ids.split_whitespace() {
        a.ok(&["rm", "-f", id]);
    }
    a.stop_daemon(false);
    assert!(get(pa, "/hostname").is_err());
    assert_eq!(get(pb, "/hostname").as_deref(), Ok("in-b"));
    assert_eq!(get(pd, "/hostname").as_deref(), Ok("in-docker"));
    assert_eq!(berth_table(&b), b_rules);
    assert_eq!(iptables_nat(), docker_nat);

    // Stop dockerd: B still answers with the same rules.
    dockerd.stop();
    assert_eq!(get(pb, "/hostname").as_deref(), Ok("in-b"));
    assert_eq!(berth_table(&b), b_rules);
}
