//! Commands whose endpoints berthd does not serve yet (pull, events, diff, commit,
//! save, load, export, stats), checked against a scripted Engine API on a unix
//! socket: the real `docker` CLI and berth talk to the same fake, and must print
//! the same thing. The fake answers as the Engine API reference shapes them.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use common::{code, stderr, stdout};

#[derive(Clone)]
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

fn json(body: &str) -> Answer {
    Answer {
        status: 200,
        content_type: "application/json",
        body: body.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

/// What the fake received: method, path without the version prefix, query, body.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct Fake {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn start(routes: Vec<(&'static str, &'static str, Answer)>) -> Fake {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let routes: Arc<HashMap<(String, String), Answer>> = Arc::new(
            routes
                .into_iter()
                .map(|(m, p, a)| ((m.to_string(), p.to_string()), a))
                .collect(),
        );
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let routes = routes.clone();
                let log = log.clone();
                std::thread::spawn(move || serve(conn, &routes, &log));
            }
        });
        Fake {
            _dir: dir,
            socket,
            seen,
        }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn berth(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("-H")
            .arg(self.host())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("berth")
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.docker_in(args, &self._dir.path().join("docker-config"), b"")
    }

    /// docker with its config in `config` and `input` on stdin.
    fn docker_in(&self, args: &[&str], config: &std::path::Path, input: &[u8]) -> Output {
        run_with_input(
            Command::new("docker")
                .env("DOCKER_HOST", self.host())
                .env("DOCKER_CONFIG", config)
                .args(args),
            input,
        )
    }

    fn berth_in(&self, args: &[&str], config: &std::path::Path, input: &[u8]) -> Output {
        run_with_input(
            Command::new(env!("CARGO_BIN_EXE_berth"))
                .env("DOCKER_CONFIG", config)
                .arg("-H")
                .arg(self.host())
                .args(args),
            input,
        )
    }

    fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|x| x.method == method && x.path == path)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut s) = child.stdin.take() {
        s.write_all(input).expect("stdin");
    }
    child.wait_with_output().expect("output")
}

fn read_request(r: &mut BufReader<UnixStream>) -> Option<Seen> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers.get("content-length").and_then(|v| v.parse().ok()) {
        body = vec![0u8; n];
        r.read_exact(&mut body).ok()?;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    // "/v1.50/images/json" → "/images/json"
    let path = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest
            .find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_default(),
        _ => path.to_string(),
    };
    Some(Seen {
        method,
        path,
        query: query.to_string(),
        headers,
        body,
    })
}

fn serve(conn: UnixStream, routes: &HashMap<(String, String), Answer>, log: &Mutex<Vec<Seen>>) {
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r) {
        let answer = if req.path == "/_ping" {
            Answer {
                status: 200,
                content_type: "text/plain",
                body: if req.method == "HEAD" {
                    Vec::new()
                } else {
                    b"OK".to_vec()
                },
                headers: Vec::new(),
            }
        } else {
            routes
                .get(&(req.method.clone(), req.path.clone()))
                .cloned()
                .unwrap_or(Answer {
                    status: 404,
                    content_type: "application/json",
                    body: format!("{{\"message\":\"page not found: {}\"}}", req.path).into_bytes(),
                    headers: Vec::new(),
                })
        };
        let req_is_head = req.method == "HEAD";
        if let Ok(mut l) = log.lock() {
            l.push(req);
        }
        let extra: String = answer
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let head = format!(
            "HTTP/1.1 {} X\r\nApi-Version: 1.50\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: fake\r\nContent-Type: {}\r\n{extra}Content-Length: {}\r\n\r\n",
            answer.status,
            answer.content_type,
            answer.body.len()
        );
        // A HEAD answer has headers only.
        let body: &[u8] = if req_is_head { &[] } else { &answer.body };
        if w.write_all(head.as_bytes()).is_err() || w.write_all(body).is_err() {
            return;
        }
    }
}

fn same(fake: &Fake, args: &[&str]) -> Output {
    let b = fake.berth(args);
    let d = fake.docker(args);
    assert_eq!(
        (stdout(&b), stderr(&b).replace("berth", "docker"), code(&b)),
        (stdout(&d), stderr(&d), code(&d)),
        "{args:?}"
    );
    b
}

const PULL: &str = r#"{"status":"Pulling from library/busybox","id":"latest"}
{"status":"Pulling fs layer","progressDetail":{},"id":"9ad63333ebc9"}
{"status":"Downloading","progressDetail":{"current":1024,"total":2048},"progress":"[=========================>                         ]  1.024kB/2.048kB","id":"9ad63333ebc9"}
{"status":"Download complete","progressDetail":{},"id":"9ad63333ebc9"}
{"status":"Extracting","progressDetail":{"current":2048,"total":2048},"progress":"[==================================================>]  2.048kB/2.048kB","id":"9ad63333ebc9"}
{"status":"Pull complete","progressDetail":{},"id":"9ad63333ebc9"}
{"status":"Digest: sha256:ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"}
{"status":"Status: Downloaded newer image for busybox:latest"}
"#;

const EVENTS: &str = r#"{"status":"start","id":"0123456789ab0123456789ab0123456789ab0123456789ab0123456789ab0123","from":"busybox","Type":"container","Action":"start","Actor":{"ID":"0123456789ab0123456789ab0123456789ab0123456789ab0123456789ab0123","Attributes":{"image":"busybox","name":"web"}},"scope":"local","time":1764622800,"timeNano":1764622800123456789}
{"Type":"image","Action":"tag","Actor":{"ID":"sha256:ff","Attributes":{"name":"busybox:2"}},"scope":"local","time":1764622801,"timeNano":1764622801000000001}
"#;

#[test]
fn pull_events_diff_commit_match_docker_on_a_scripted_daemon() {
    let fake = Fake::start(vec![
        ("POST", "/images/create", json(PULL)),
        ("GET", "/events", json(EVENTS)),
        (
            "GET",
            "/containers/web/changes",
            json(
                r#"[{"Path":"/tmp","Kind":0},{"Path":"/tmp/new","Kind":1},{"Path":"/etc/gone","Kind":2}]"#,
            ),
        ),
        (
            "POST",
            "/commit",
            json(
                r#"{"Id":"sha256:4f5e4f5e4f5e4f5e4f5e4f5e4f5e4f5e4f5e4f5e4f5e4f5e4f5e4f5e4f5e4f5e"}"#,
            ),
        ),
        (
            "POST",
            "/images/load",
            json("{\"stream\":\"Loaded image: busybox:latest\\n\"}\n"),
        ),
    ]);
    for args in [
        &["pull", "busybox"][..],
        &["pull", "-q", "busybox"],
        &["diff", "web"],
        &["events", "--since", "1764622800", "--until", "1764622802"],
    ] {
        let o = same(&fake, args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        assert!(!stdout(&o).is_empty(), "{args:?}");
    }
    let pulls = fake.seen("POST", "/images/create");
    assert!(
        pulls.iter().all(|p| p.query.contains("tag=latest")),
        "{pulls:?}"
    );
    same(
        &fake,
        &["events", "--since", "1764622800", "--until", "1764622802"],
    );
    same(
        &fake,
        &[
            "events",
            "--since",
            "1764622800",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ],
    );
    same(&fake, &["diff", "web"]);
    same(
        &fake,
        &["commit", "-m", "msg", "-a", "me", "web", "saved:1"],
    );
    let commits = fake.seen("POST", "/commit");
    assert!(commits.iter().all(|c| c.query.contains("container=web")
        && c.query.contains("repo=docker.io%2Flibrary%2Fsaved")
        && c.query.contains("tag=1")
        && c.query.contains("comment=msg")));
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("in.tar");
    std::fs::write(&tar, vec![7u8; 300_000]).expect("write tar");
    same(&fake, &["load", "-i", tar.to_str().expect("utf-8")]);
    // Every load carried the whole file, whichever way it was framed.
    for l in fake.seen("POST", "/images/load") {
        assert_eq!(l.body.len(), 300_000);
    }
}

#[test]
fn save_and_export_write_what_the_daemon_sends() {
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let leaked: &'static [u8] = Box::leak(payload.clone().into_boxed_slice());
    let tar = |body: &'static [u8]| Answer {
        status: 200,
        content_type: "application/x-tar",
        body: body.to_vec(),
        headers: Vec::new(),
    };
    let fake = Fake::start(vec![
        ("GET", "/images/get", tar(leaked)),
        ("GET", "/containers/web/export", tar(leaked)),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("saved.tar");
    let o = fake.berth(&[
        "save",
        "-o",
        saved.to_str().expect("utf-8"),
        "busybox",
        "other:1",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read(&saved).expect("saved"), payload);
    let names: Vec<String> = fake
        .seen("GET", "/images/get")
        .iter()
        .map(|s| s.query.clone())
        .collect();
    assert_eq!(names, vec!["names=busybox&names=other%3A1".to_string()]);
    let exported = dir.path().join("web.tar");
    let o = fake.berth(&["export", "-o", exported.to_str().expect("utf-8"), "web"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read(&exported).expect("exported"), payload);
    let o = fake.berth(&["export", "web"]);
    assert_eq!(o.stdout, payload);
}

#[test]
fn login_stores_credentials_as_docker_does_and_pull_sends_them() {
    let fake = Fake::start(vec![
        (
            "POST",
            "/auth",
            json(r#"{"Status":"Login Succeeded","IdentityToken":""}"#),
        ),
        ("POST", "/images/create", json(PULL)),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (bcfg, dcfg) = (dir.path().join("berth"), dir.path().join("docker"));
    let args = ["login", "-u", "me", "--password-stdin", "reg.example:5000"];
    let b = fake.berth_in(&args, &bcfg, b"secret\n");
    let d = fake.docker_in(&args, &dcfg, b"secret\n");
    assert_eq!(stdout(&b), stdout(&d), "{}", stderr(&b));
    assert_eq!(code(&b), code(&d));
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p.join("config.json")).expect("config.json"))
            .expect("json")
    };
    assert_eq!(read(&bcfg)["auths"], read(&dcfg)["auths"]);
    for seen in fake.seen("POST", "/auth") {
        let v: serde_json::Value = serde_json::from_slice(&seen.body).expect("auth body");
        assert_eq!(v["username"], "me");
        assert_eq!(v["password"], "secret");
        assert_eq!(v["serveraddress"], "reg.example:5000");
    }
    let b = fake.berth_in(&["pull", "-q", "reg.example:5000/app:1"], &bcfg, b"");
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    let pulls = fake.seen("POST", "/images/create");
    let header = pulls
        .last()
        .and_then(|p| p.headers.get("x-registry-auth").cloned())
        .expect("X-Registry-Auth");
    assert!(pulls
        .last()
        .is_some_and(|p| p.query.contains("fromImage=reg.example%3A5000%2Fapp")));
    let decoded = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            if let Some(mut i) = c.stdin.take() {
                let std = header.replace('-', "+").replace('_', "/");
                i.write_all(std.as_bytes())?;
            }
            c.wait_with_output()
        })
        .expect("base64 -d");
    assert_eq!(
        stdout(&decoded),
        r#"{"username":"me","password":"secret","serveraddress":"reg.example:5000"}"#
    );
    let b = fake.berth_in(&["logout", "reg.example:5000"], &bcfg, b"");
    let d = fake.docker_in(&["logout", "reg.example:5000"], &dcfg, b"");
    assert_eq!(stdout(&b), stdout(&d));
    assert_eq!(read(&bcfg)["auths"], read(&dcfg)["auths"]);
}

const VOLUMES: &str = r#"{"Volumes":[
 {"Name":"data10","Driver":"local","Mountpoint":"/var/lib/berth/volumes/data10/_data","Scope":"local","Labels":{"team":"a"},"CreatedAt":"2026-12-01T10:00:00Z","Options":null},
 {"Name":"data2","Driver":"local","Mountpoint":"/var/lib/berth/volumes/data2/_data","Scope":"local","Labels":null,"CreatedAt":"2026-12-01T10:00:00Z","Options":null}
],"Warnings":[]}"#;

const NETWORKS: &str = r#"[
 {"Name":"bridge","Id":"0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9","Created":"2026-12-01T10:00:00Z","Scope":"local","Driver":"bridge","EnableIPv6":false,"Internal":false,"Labels":{}},
 {"Name":"backend10","Id":"1a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9","Created":"2026-12-01T10:00:00Z","Scope":"local","Driver":"bridge","EnableIPv6":false,"Internal":true,"Labels":{"x":"y"}},
 {"Name":"backend9","Id":"2a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9","Created":"2026-12-01T10:00:00Z","Scope":"local","Driver":"bridge","EnableIPv6":false,"Internal":false,"Labels":{}},
 {"Name":"host","Id":"3a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9","Created":"2026-12-01T10:00:00Z","Scope":"local","Driver":"host","EnableIPv6":false,"Internal":false,"Labels":{}}
]"#;

const WEB: &str = r#"{"Id":"4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b","Name":"/web",
 "NetworkSettings":{"Ports":{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::","HostPort":"8080"}],"443/tcp":[{"HostIp":"127.0.0.1","HostPort":"8443"}],"53/udp":null}}}"#;

#[test]
fn volumes_networks_and_ports_match_docker_on_a_scripted_daemon() {
    let no_content = Answer {
        status: 204,
        content_type: "text/plain",
        body: Vec::new(),
        headers: Vec::new(),
    };
    let fake = Fake::start(vec![
        ("GET", "/volumes", json(VOLUMES)),
        (
            "POST",
            "/volumes/create",
            json(
                r#"{"Name":"myvol","Driver":"local","Mountpoint":"/m","Scope":"local","Labels":{},"Options":{}}"#,
            ),
        ),
        (
            "GET",
            "/volumes/myvol",
            json(
                r#"{"CreatedAt":"2026-12-01T10:00:00Z","Driver":"local","Labels":{"a":"b"},"Mountpoint":"/m","Name":"myvol","Options":{},"Scope":"local"}"#,
            ),
        ),
        ("DELETE", "/volumes/myvol", no_content.clone()),
        ("GET", "/networks", json(NETWORKS)),
        (
            "POST",
            "/networks/create",
            json(
                r#"{"Id":"5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c","Warning":""}"#,
            ),
        ),
        ("DELETE", "/networks/backend9", no_content),
        ("GET", "/containers/web/json", json(WEB)),
    ]);
    for args in [
        &["volume", "ls"][..],
        &["volume", "ls", "-q"],
        &[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Labels}} {{.Mountpoint}}",
        ],
        &["volume", "create", "myvol"],
        &["volume", "inspect", "myvol"],
        &[
            "volume",
            "inspect",
            "-f",
            "{{.Mountpoint}} {{.Labels}}",
            "myvol",
        ],
        &["volume", "rm", "myvol"],
        &["volume", "rm", "nope"],
        &["network", "ls"],
        &["network", "ls", "-q"],
        &[
            "network",
            "ls",
            "--no-trunc",
            "--format",
            "{{.Name}} {{.Internal}} {{.Labels}}",
        ],
        &[
            "network",
            "create",
            "--subnet",
            "10.9.0.0/24",
            "--gateway",
            "10.9.0.1",
            "front",
        ],
        &["network", "rm", "backend9"],
        &["port", "web"],
        &["port", "web", "443"],
        &["port", "web", "80/tcp"],
        &["port", "web", "53/udp"],
    ] {
        let o = same(&fake, args);
        let should_fail = args.contains(&"nope") || args.contains(&"53/udp");
        assert_eq!(code(&o) != 0, should_fail, "{args:?}: {}", stderr(&o));
    }
    for create in fake.seen("POST", "/networks/create") {
        let v: serde_json::Value = serde_json::from_slice(&create.body).expect("json");
        assert_eq!(v["Name"], "front");
        assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "10.9.0.0/24");
        assert_eq!(v["IPAM"]["Config"][0]["Gateway"], "10.9.0.1");
    }
}

#[test]
fn cp_both_ways_as_docker_does() {
    // A one-file archive, as GET /containers/{id}/archive?path=/etc/hostname answers.
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("hostname"), "web\n").expect("file");
    let tar_path = src.path().join("a.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(src.path())
        .arg("-cf")
        .arg(&tar_path)
        .arg("hostname")
        .status()
        .expect("tar");
    assert!(st.success());
    let archive = std::fs::read(&tar_path).expect("tar bytes");
    let stat =
        r#"{"name":"hostname","size":4,"mode":420,"mtime":"2026-12-01T10:00:00Z","linkTarget":""}"#;
    let stat_header = {
        let o = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                if let Some(mut i) = c.stdin.take() {
                    i.write_all(stat.as_bytes())?;
                }
                c.wait_with_output()
            })
            .expect("base64");
        stdout(&o)
    };
    let answer = |body: Vec<u8>| Answer {
        status: 200,
        content_type: "application/x-tar",
        body,
        headers: vec![("X-Docker-Container-Path-Stat", stat_header.clone())],
    };
    let fake = Fake::start(vec![
        ("HEAD", "/containers/web/archive", answer(Vec::new())),
        ("GET", "/containers/web/archive", answer(archive)),
        ("PUT", "/containers/web/archive", json("")),
    ]);
    let out = tempfile::tempdir().expect("out dir");
    for (who, name) in [("berth", "b"), ("docker", "d")] {
        let dest = out.path().join(name);
        let dest = dest.to_str().expect("utf-8");
        let o = if who == "berth" {
            fake.berth(&["cp", "web:/etc/hostname", dest])
        } else {
            fake.docker(&["cp", "web:/etc/hostname", dest])
        };
        assert_eq!(code(&o), 0, "{who}: {}", stderr(&o));
        assert_eq!(
            std::fs::read_to_string(dest).expect("copied"),
            "web\n",
            "{who}"
        );
        assert_eq!(stdout(&o), "", "{who}");
    }
    let b = fake.berth(&[
        "cp",
        "web:/etc/hostname",
        out.path().to_str().expect("utf-8"),
    ]);
    let d = fake.docker(&[
        "cp",
        "web:/etc/hostname",
        out.path().to_str().expect("utf-8"),
    ]);
    assert_eq!((stderr(&b), code(&b)), (stderr(&d), code(&d)));
    assert_eq!(
        std::fs::read_to_string(out.path().join("hostname")).expect("into dir"),
        "web\n"
    );
}
