//! Two berthd instances and Debian's dockerd on one host at once, each with a bridge of
//! its own and a published port: stopping any one leaves the others' rules and traffic
//! alone. Traffic goes to 127.0.0.1 only.

mod harness;

use std::process::{Command, Output};

use harness::dockerd::Dockerd;
use harness::{free_port, http_get, text, Daemon};

fn get(port: u16, path: &str) -> Result<String, String> {
    http_get(&format!("127.0.0.1:{port}"), path).map(|body| body.trim().to_string())
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

#[test]
fn two_berthds_and_dockerd_publish_side_by_side() {
    let mut a = Daemon::start_networked("");
    let b = Daemon::start_networked("");
    assert_ne!(a.bridge_name(), b.bridge_name());
    let mut dockerd = Dockerd::with_bridge();
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
