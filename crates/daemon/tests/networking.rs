//! Networking end to end: a real berthd with a bridge of its own, containers reached
//! through published ports from the host's loopback, user networks with the embedded
//! DNS, isolation, internal networks, bad input and live restore. All traffic stays on
//! loopback or inside the namespaces these tests make.

mod harness;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use harness::{free_port, http_get, stderr, test_bridge, text, Daemon};

/// A daemon with its own bridge and the busybox image.
fn daemon() -> Daemon {
    let d = Daemon::start_networked("");
    d.import_busybox("busybox");
    d
}

/// A /24 for a user network, unique to this test process and `k`.
fn subnet(k: u32) -> String {
    let pid = std::process::id();
    format!("10.{}.{}.0/24", 150 + k, pid % 250)
}

fn veths_on(bridge: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn table_of(d: &Daemon) -> String {
    let name = std::fs::read_to_string(d.data_root().join("network/table")).expect("table name");
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", name.trim()])
        .output()
        .expect("nft");
    assert!(out.status.success(), "{}", stderr(&out));
    text(&out)
}

#[test]
fn published_port_answers_on_loopback_and_shows_in_ps_and_port() {
    let d = daemon();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--hostname",
        "webhost",
        "-p",
        &spec,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let body = http_get(&format!("127.0.0.1:{port}"), "/hostname").expect("answer");
    assert_eq!(body.trim(), "webhost");
    assert_eq!(
        d.ok(&["port", "web"]).trim(),
        format!("80/tcp -> 127.0.0.1:{port}")
    );
    let ps = d.ok(&["ps", "--format", "{{.Ports}}"]);
    assert_eq!(ps.trim(), format!("127.0.0.1:{port}->80/tcp"));
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    let (_, bip) = test_bridge(0);
    let prefix: Vec<&str> = bip.split('.').take(3).collect();
    assert!(
        ip.trim().starts_with(&prefix.join(".")),
        "{ip} not in {bip}"
    );
    // The container reaches the host's side too: its gateway answers ping.
    let gw = d.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "web"]);
    d.ok(&["exec", "web", "ping", "-c", "1", "-W", "2", gw.trim()]);
    // Bound to 127.0.0.1 only: not reachable through the bridge's address.
    let refused = d.docker(&[
        "run",
        "--rm",
        "busybox",
        "nc",
        "-w",
        "2",
        gw.trim(),
        &port.to_string(),
    ]);
    assert!(!refused.status.success());
    // Published on every address: other containers reach it through the host's
    // addresses: one on the same bridge, one on a user network, and the container
    // itself (hairpin); the host through the bridge's address too.
    let open_port = free_port();
    let spec = format!("{open_port}:80");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "open",
        "--hostname",
        "webhost",
        "-p",
        &spec,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let body = http_get(&format!("{}:{open_port}", gw.trim()), "/hostname").expect("answer");
    assert_eq!(body.trim(), "webhost");
    let get = format!(
        "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {} {open_port}",
        gw.trim()
    );
    let same = d.ok(&["run", "--rm", "busybox", "sh", "-c", &get]);
    assert!(same.contains("webhost"), "{same}");
    d.ok(&["network", "create", "--subnet", &subnet(8), "elsewhere"]);
    let other_gw = subnet(8).replace(".0/24", ".1");
    let get_other = get.replace(gw.trim(), &other_gw);
    let other = d.ok(&[
        "run",
        "--rm",
        "--network",
        "elsewhere",
        "busybox",
        "sh",
        "-c",
        &get_other,
    ]);
    assert!(other.contains("webhost"), "{other}");
    let own = d.ok(&["exec", "open", "sh", "-c", &get]);
    assert!(own.contains("webhost"), "{own}");
    d.ok(&["rm", "-f", "open"]);
    d.ok(&["network", "rm", "elsewhere"]);
    // Stopped: the port is closed, the veth and the rule are gone.
    d.ok(&["stop", "-t", "1", "web"]);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert_eq!(veths_on(&d.bridge_name()), 0);
    assert!(!table_of(&d).contains("dnat ip to"), "{}", table_of(&d));
    assert_eq!(
        std::fs::read_dir(d.exec_root().join("netns"))
            .unwrap()
            .count(),
        0
    );
    // Started again: published again.
    d.ok(&["start", "web"]);
    let body = http_get(&format!("127.0.0.1:{port}"), "/hostname").expect("answer");
    assert_eq!(body.trim(), "webhost");
}

#[test]
fn publish_all_takes_ephemeral_ports_and_udp_echoes() {
    let d = daemon();
    d.ok(&[
        "run", "-d", "--name", "pall", "--expose", "80", "-P", "busybox", "httpd", "-f", "-p",
        "80", "-h", "/etc",
    ]);
    let port = d.ok(&["port", "pall", "80/tcp"]);
    let port = port
        .lines()
        .next()
        .unwrap_or("")
        .rsplit(':')
        .next()
        .unwrap_or("")
        .to_string();
    let port: u16 = port.trim().parse().expect("an ephemeral port");
    assert!(port >= 1024);
    let body = http_get(&format!("127.0.0.1:{port}"), "/passwd").expect("answer");
    assert!(body.starts_with("root:x:0:0"), "{body}");

    // An image's EXPOSE is the container's: -P publishes it.
    let tar = harness::busybox_tar(&d.dir);
    d.ok(&[
        "import",
        "--change",
        "EXPOSE 8080",
        "--change",
        "ENV PATH=/bin",
        tar.to_str().unwrap(),
        "exposing",
    ]);
    d.ok(&[
        "run", "-d", "--name", "exp", "-P", "exposing", "httpd", "-f", "-p", "8080", "-h", "/etc",
    ]);
    let mapped = d.ok(&["port", "exp", "8080"]);
    let eport: u16 = mapped
        .lines()
        .next()
        .unwrap_or("")
        .rsplit(':')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .expect("a port");
    assert!(http_get(&format!("127.0.0.1:{eport}"), "/passwd")
        .unwrap()
        .starts_with("root:"));

    let uport = free_port();
    let spec = format!("127.0.0.1:{uport}:9999/udp");
    // busybox has no UDP server: Debian's python3, bind-mounted read-only, echoes.
    d.ok(&[
        "run", "-d", "--name", "echo", "-p", &spec, "-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro",
        "-v", "/lib64:/lib64:ro", "busybox", "/usr/bin/python3", "-c",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 9999))\nwhile True:\n    s.sendto(*s.recvfrom(100))\n",
    ]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        sock.send_to(b"hello-udp\n", ("127.0.0.1", uport)).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got = String::from_utf8_lossy(&buf[..n]).to_string();
            break;
        }
    }
    assert_eq!(got, "hello-udp\n", "{}", d.ok(&["logs", "echo"]));
    let ps = d.ok(&[
        "ps",
        "--format",
        "{{.Names}} {{.Ports}}",
        "--filter",
        "name=echo",
    ]);
    assert_eq!(ps.trim(), format!("echo 127.0.0.1:{uport}->9999/udp"));
}

#[test]
fn user_networks_resolve_names_and_aliases_and_are_isolated() {
    let d = daemon();
    let (a, b, c) = (subnet(1), subnet(2), subnet(3));
    d.ok(&["network", "create", "--subnet", &a, "front"]);
    d.ok(&["network", "create", "--subnet", &b, "back"]);
    d.ok(&["network", "create", "--internal", "--subnet", &c, "vault"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "front",
        "--network-alias",
        "service",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "front",
        "busybox",
        "sleep",
        "300",
    ]);
    let resolv = d.ok(&["exec", "client", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    let api_ip = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.front.IPAddress}}",
        "api",
    ]);
    let api_ip = api_ip.trim().to_string();
    for name in ["api", "service", "API"] {
        let out = d.ok(&["exec", "client", "nslookup", name]);
        assert!(out.contains(&api_ip), "{name}: {out}");
    }
    let page = d.ok(&[
        "exec",
        "client",
        "sh",
        "-c",
        "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 service 80",
    ]);
    let api_host = d.ok(&["inspect", "-f", "{{.Config.Hostname}}", "api"]);
    assert!(page.contains(api_host.trim()), "{page}");
    // Another network cannot reach them, by address or by name.
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        &api_ip,
    ]);
    assert!(!out.status.success(), "back reached front: {}", text(&out));
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox",
        "nslookup",
        "api",
    ]);
    assert!(!text(&out).contains(&api_ip), "{}", text(&out));
    // An internal network has no way out: no default route, nothing else reachable.
    let routes = d.ok(&[
        "run",
        "--rm",
        "--network",
        "vault",
        "busybox",
        "ip",
        "route",
    ]);
    assert!(!routes.contains("default"), "{routes}");
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "vault",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        &api_ip,
    ]);
    assert!(!out.status.success());
    // Connect the client to `back` live, then take it off `front`.
    d.ok(&["network", "connect", "back", "client"]);
    let links = d.ok(&["exec", "client", "ip", "-o", "addr"]);
    assert!(links.contains("eth1"), "{links}");
    d.ok(&["network", "disconnect", "front", "client"]);
    let out = d.docker(&["exec", "client", "ping", "-c", "1", "-W", "1", &api_ip]);
    assert!(!out.status.success());
    let inspect = d.ok(&["network", "inspect", "-f", "{{len .Containers}}", "front"]);
    assert_eq!(inspect.trim(), "1");
    // Network events, as `docker events` shows them.
    let events = d.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &harness::unix_secs(1),
        "--filter",
        "type=network",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    for want in [
        "create front",
        "connect front",
        "connect back",
        "disconnect front",
    ] {
        assert!(events.lines().any(|l| l == want), "{want} not in {events}");
    }
    // ls, filters, rm with users (refused), prune.
    let ls = d.ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        "type=custom",
    ]);
    let mut names: Vec<&str> = ls.lines().collect();
    names.sort();
    assert_eq!(names, ["back", "front", "vault"]);
    let rm = d.docker(&["network", "rm", "front"]);
    assert!(!rm.status.success());
    assert!(
        stderr(&rm).contains("has active endpoints"),
        "{}",
        stderr(&rm)
    );
    d.ok(&["rm", "-f", "api", "client"]);
    let pruned = d.ok(&["network", "prune", "-f"]);
    for n in ["front", "back", "vault"] {
        assert!(pruned.contains(n), "{pruned}");
    }
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}}"]);
    let mut names: Vec<&str> = ls.lines().collect();
    names.sort();
    assert_eq!(names, ["bridge", "host", "none"]);
}

#[test]
fn bad_network_input_gets_dockers_errors_and_changes_nothing() {
    let d = daemon();
    let a = subnet(4);
    d.ok(&["network", "create", "--subnet", &a, "one"]);
    let cases: [(&[&str], &str); 5] = [
        (&["network", "create", "--subnet", &a, "two"], "overlaps"),
        (
            &["network", "create", "--subnet", "10.1.2.0/40", "two"],
            "invalid",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.77.0.0/24",
                "--gateway",
                "10.78.0.1",
                "two",
            ],
            "gateway",
        ),
        (
            &["network", "create", "--subnet", &subnet(5), "one"],
            "already exists",
        ),
        (&["network", "rm", "bridge"], "pre-defined"),
    ];
    for (args, want) in cases {
        let out = d.docker(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let ls = d.ok(&["network", "ls", "-q", "--filter", "type=custom"]);
    assert_eq!(ls.lines().count(), 1);
    // Connecting twice.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "one",
        "busybox",
        "sleep",
        "300",
    ]);
    let out = d.docker(&["network", "connect", "one", "c1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already exists in network one"),
        "{}",
        stderr(&out)
    );
    // --ip outside the subnet, and on the default bridge.
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "one",
        "--ip",
        "10.99.99.9",
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    let out = d.docker(&["run", "--rm", "--ip", "10.99.99.9", "busybox", "true"]);
    assert!(
        stderr(&out).contains("user defined networks only"),
        "{}",
        stderr(&out)
    );
    // A fixed --ip is honoured.
    let fixed = a.replace(".0/24", ".77");
    let got = d.ok(&[
        "run",
        "--rm",
        "--network",
        "one",
        "--ip",
        &fixed,
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0",
    ]);
    assert!(got.contains(&format!("{fixed}/24")), "{got}");
    // A network that does not exist: 404, which the CLI would take for a missing
    // image and pull (as it does against dockerd) — so without pulling.
    let out = d.docker(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "nope",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&out).contains("network nope not found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_host_port_in_use_is_refused_and_nothing_leaks() {
    let d = daemon();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let spec = format!("127.0.0.1:{port}:80");
    let out = d.docker(&[
        "run", "-d", "--name", "late", "-p", &spec, "busybox", "sleep", "300",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("port is already allocated"),
        "{}",
        stderr(&out)
    );
    let state = d.ok(&["inspect", "-f", "{{.State.Running}}", "late"]);
    assert_eq!(state.trim(), "false");
    assert_eq!(veths_on(&d.bridge_name()), 0);
    assert_eq!(
        std::fs::read_dir(d.exec_root().join("netns"))
            .unwrap()
            .count(),
        0
    );
    // One container holds a port: a second one cannot take it.
    let p2 = free_port();
    let spec2 = format!("127.0.0.1:{p2}:80");
    d.ok(&[
        "run", "-d", "--name", "first", "-p", &spec2, "busybox", "sleep", "300",
    ]);
    let out = d.docker(&[
        "run", "-d", "--name", "second", "-p", &spec2, "busybox", "sleep", "300",
    ]);
    assert!(
        stderr(&out).contains("port is already allocated"),
        "{}",
        stderr(&out)
    );
    assert_eq!(veths_on(&d.bridge_name()), 1);
    // Addresses are not handed out twice.
    d.ok(&["run", "-d", "--name", "third", "busybox", "sleep", "300"]);
    let a = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "first"]);
    let b = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "third"]);
    assert_ne!(a, b);
    drop(taken);
}

#[test]
fn etc_files_say_what_the_flags_say() {
    let d = daemon();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "target",
        "--expose",
        "6379",
        "-e",
        "SECRET=s3",
        "busybox",
        "sleep",
        "300",
    ]);
    let target_ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "target"]);
    let gw = d.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "target"]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        "--add-host",
        "db.local:10.1.2.3",
        "--add-host",
        "host.docker.internal:host-gateway",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:2",
        "--link",
        "target:tgt",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hostname /etc/hosts /etc/resolv.conf",
    ]);
    assert!(out.starts_with("box\n"), "{out}");
    assert!(out.contains("10.1.2.3\tdb.local"), "{out}");
    assert!(
        out.contains(&format!("{}\thost.docker.internal", gw.trim())),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}\ttgt ", target_ip.trim())),
        "{out}"
    );
    assert!(out.contains("nameserver 10.9.9.9"), "{out}");
    assert!(out.contains("search example.test"), "{out}");
    assert!(out.contains("options ndots:2"), "{out}");
    let env = d.ok(&[
        "run",
        "--rm",
        "--name",
        "linker",
        "--link",
        "target:tgt",
        "busybox",
        "env",
    ]);
    let ip = target_ip.trim();
    for want in [
        format!("TGT_PORT=tcp://{ip}:6379"),
        format!("TGT_PORT_6379_TCP_ADDR={ip}"),
        "TGT_PORT_6379_TCP_PORT=6379".to_string(),
        "TGT_NAME=/linker/tgt".to_string(),
        "TGT_ENV_SECRET=s3".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in {env}");
    }
    // The container's own address is in its hosts file under its hostname.
    let hosts = d.ok(&["exec", "target", "cat", "/etc/hosts"]);
    let short = d.ok(&["inspect", "-f", "{{.Config.Hostname}}", "target"]);
    assert!(
        hosts.contains(&format!("{}\t{}", target_ip.trim(), short.trim())),
        "{hosts}"
    );
    // --network none and host.
    let none = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(none.lines().count(), 1, "{none}");
    let host = d.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert!(host.contains(&d.bridge_name()), "{host}");
}

#[test]
fn kill9_and_restart_keep_ports_and_addresses_without_duplicate_rules() {
    let mut d = daemon();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    // One that exits while berthd is away: its veth and namespace go at the restart.
    d.ok(&["run", "-d", "--name", "gone", "busybox", "sleep", "300"]);
    let gone_pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "gone"]);
    d.ok(&[
        "run", "-d", "--name", "web", "-p", &spec, "busybox", "httpd", "-f", "-p", "80", "-h",
        "/etc",
    ]);
    let net = subnet(6);
    d.ok(&["network", "create", "--subnet", &net, "app"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "named",
        "--network",
        "app",
        "busybox",
        "sleep",
        "300",
    ]);
    let ip_before = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    let rules_before = table_of(&d);
    assert_eq!(
        rules_before.matches("dnat ip to").count(),
        1,
        "{rules_before}"
    );
    assert_eq!(veths_on(&d.bridge_name()), 2);
    d.stop_daemon(true);
    let gone_pid: i32 = gone_pid.trim().parse().unwrap();
    // SAFETY: the PID of this test's own container.
    unsafe { libc::kill(gone_pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    d.restart_daemon(false);
    let state = d.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "gone",
    ]);
    assert_eq!(state.trim(), "exited 137");
    assert_eq!(veths_on(&d.bridge_name()), 1, "the exited one's veth stays");
    assert_eq!(
        std::fs::read_dir(d.exec_root().join("netns"))
            .unwrap()
            .count(),
        2
    );
    let body = http_get(&format!("127.0.0.1:{port}"), "/hostname").expect("answer after restart");
    assert!(!body.trim().is_empty());
    let rules_after = table_of(&d);
    assert_eq!(
        rules_after.matches("dnat ip to").count(),
        1,
        "{rules_after}"
    );
    assert_eq!(rules_before, rules_after);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]),
        ip_before
    );
    d.ok(&["run", "-d", "--name", "newer", "busybox", "sleep", "300"]);
    let ip_new = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "newer"]);
    assert_ne!(ip_new, ip_before);
    // The embedded DNS answers again in the restored container's namespace.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "app",
        "busybox",
        "sleep",
        "300",
    ]);
    let out = d.ok(&["exec", "named", "nslookup", "peer"]);
    let peer_ip = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.app.IPAddress}}",
        "peer",
    ]);
    assert!(out.contains(peer_ip.trim()), "{out}");
    // A port published while berthd was away is still reserved against others.
    let out = d.docker(&[
        "run", "-d", "--name", "clash", "-p", &spec, "busybox", "sleep", "300",
    ]);
    assert!(
        stderr(&out).contains("port is already allocated"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn icc_false_keeps_default_bridge_containers_apart() {
    let d = Daemon::start_networked(r#""icc": false"#);
    d.import_busybox("busybox");
    d.ok(&["run", "-d", "--name", "one", "busybox", "sleep", "300"]);
    d.ok(&["run", "-d", "--name", "two", "busybox", "sleep", "300"]);
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "one"]);
    let gw = d.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "one"]);
    let out = d.docker(&["exec", "two", "ping", "-c", "1", "-W", "1", ip.trim()]);
    assert!(!out.status.success(), "icc=false, yet two reached one");
    d.ok(&["exec", "two", "ping", "-c", "1", "-W", "2", gw.trim()]);
    let bridge = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{index .Options \"com.docker.network.bridge.enable_icc\"}}",
        "bridge",
    ]);
    assert_eq!(bridge.trim(), "false");
}

#[test]
fn ipv6_on_the_default_bridge_and_daemon_dns_defaults() {
    let pid = std::process::id();
    let v6 = format!("fd42:{:x}::/64", pid % 0xffff);
    let d = Daemon::start_networked(&format!(
        r#""ipv6": true, "fixed-cidr-v6": "{v6}", "dns-search": ["corp.test"]"#
    ));
    d.import_busybox("busybox");
    d.ok(&["run", "-d", "--name", "six", "busybox", "sleep", "300"]);
    let addr = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.GlobalIPv6Address}}",
        "six",
    ]);
    let prefix = v6.trim_end_matches("/64").trim_end_matches(':');
    assert_eq!(addr.trim(), format!("{prefix}::2"));
    let shown = d.ok(&["exec", "six", "ip", "-6", "-o", "addr", "show", "eth0"]);
    assert!(shown.contains(&format!("{prefix}::2/64")), "{shown}");
    let gw = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPv6Gateway}}", "six"]);
    d.ok(&["exec", "six", "ping", "-6", "-c", "1", "-W", "3", gw.trim()]);
    let resolv = d.ok(&["exec", "six", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.1"), "{resolv}");
    assert!(resolv.contains("search corp.test"), "{resolv}");
}

/// berth's CLI, built next to berthd (the workspace's test build makes both).
fn berth(d: &Daemon, args: &[&str]) -> std::process::Output {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth");
    assert!(
        bin.exists(),
        "{} missing: cargo build -p berth-cli",
        bin.display()
    );
    std::process::Command::new(bin)
        .arg("-H")
        .arg(d.host())
        .args(args)
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run berth")
}

fn berth_ok(d: &Daemon, args: &[&str]) -> String {
    let o = berth(d, args);
    assert!(o.status.success(), "berth {args:?}: {}", stderr(&o));
    text(&o)
}

#[test]
fn berth_cli_drives_networks_and_ports() {
    let d = daemon();
    let net = subnet(7);
    berth_ok(
        &d,
        &[
            "network", "create", "--subnet", &net, "--label", "team=web", "shop",
        ],
    );
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    berth_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "front",
            "--hostname",
            "front-host",
            "--network",
            "shop",
            "--network-alias",
            "www",
            "-p",
            &spec,
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    );
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/hostname")
            .unwrap()
            .trim(),
        "front-host"
    );
    assert_eq!(
        berth_ok(&d, &["port", "front"]).trim(),
        format!("80/tcp -> 127.0.0.1:{port}")
    );
    let ps = berth_ok(&d, &["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert_eq!(ps.trim(), format!("front 127.0.0.1:{port}->80/tcp"));
    let ls = berth_ok(
        &d,
        &[
            "network",
            "ls",
            "--filter",
            "label=team=web",
            "--format",
            "{{.Name}} {{.Driver}}",
        ],
    );
    assert_eq!(ls.trim(), "shop bridge");
    let sub = berth_ok(
        &d,
        &[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            "shop",
        ],
    );
    assert_eq!(sub.trim(), net);
    let out = berth_ok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "shop",
            "busybox",
            "nslookup",
            "www",
        ],
    );
    let ip = berth_ok(
        &d,
        &[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.shop.IPAddress}}",
            "front",
        ],
    );
    assert!(out.contains(ip.trim()), "{out}");
    berth_ok(&d, &["network", "connect", "bridge", "front"]);
    let nets = berth_ok(
        &d,
        &[
            "inspect",
            "-f",
            "{{len .NetworkSettings.Networks}}",
            "front",
        ],
    );
    assert_eq!(nets.trim(), "2");
    berth_ok(&d, &["network", "disconnect", "bridge", "front"]);
    let rm = berth(&d, &["network", "rm", "shop"]);
    assert!(!rm.status.success());
    assert!(stderr(&rm).contains("active endpoints"), "{}", stderr(&rm));
    berth_ok(&d, &["rm", "-f", "front"]);
    berth_ok(&d, &["network", "rm", "shop"]);
    let ls = berth_ok(&d, &["network", "ls", "-q"]);
    assert_eq!(ls.lines().count(), 3);
}
