//! End to end, as a user: a real berthd on its own data-root, exec-root and socket,
//! a real Debian `docker-registry` on 127.0.0.1 (listed in `insecure-registries`),
//! and the real `docker` CLI (28.x) pointed at berthd. A busybox image made offline
//! is imported, tagged, pushed, removed, pulled back, saved, removed, loaded and run.
//!
//! Needs root, `docker-registry`, `docker` and `busybox` on the machine, and
//! berth-shim built next to berthd (`cargo build -p berth-daemon -p berth-shim`).

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use harness::dockerd::Dockerd;
use harness::free_port;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Setup {
    dir: tempfile::TempDir,
    registry: Option<Child>,
    berthd: Option<Child>,
    registry_address: String,
    socket: PathBuf,
}

impl Setup {
    fn start() -> Setup {
        Self::start_with(None, false)
    }

    fn start_with_auth(auth: Option<(&str, &str)>) -> Setup {
        Self::start_with(auth, false)
    }

    /// With `Some((user, password))` the registry wants htpasswd basic auth.
    /// With `mirror`, the registry is also berthd's Docker Hub mirror.
    fn start_with(auth: Option<(&str, &str)>, mirror: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let registry_address = format!("127.0.0.1:{port}");
        let reg_dir = dir.path().join("registry");
        std::fs::create_dir_all(&reg_dir).unwrap();
        let reg_config = reg_dir.join("config.yml");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {registry_address}\n",
            reg_dir.join("data").display()
        );
        if let Some((user, password)) = auth {
            let htpasswd = reg_dir.join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (Debian package apache2-utils) must be installed");
            assert!(out.status.success());
            std::fs::write(&htpasswd, &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&reg_config, config).unwrap();
        let log = std::fs::File::create(reg_dir.join("log")).unwrap();
        let registry = Command::new("docker-registry")
            .arg("serve")
            .arg(&reg_config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");

        let berthd = PathBuf::from(env!("CARGO_BIN_EXE_berthd"));
        let shim = berthd.with_file_name("berth-shim");
        assert!(
            shim.exists(),
            "{} missing: run `cargo build -p berth-daemon -p berth-shim` first",
            shim.display()
        );
        let config_file = dir.path().join("daemon.json");
        let mut daemon_json =
            serde_json::json!({"bridge": "none", "insecure-registries": [registry_address]});
        if mirror {
            daemon_json["registry-mirrors"] =
                serde_json::json!([format!("http://{registry_address}")]);
        }
        std::fs::write(&config_file, daemon_json.to_string()).unwrap();
        let socket = dir.path().join("exec/berth.sock");
        let child = spawn_berthd(dir.path(), &socket);
        let setup = Setup {
            dir,
            registry: Some(registry),
            berthd: Some(child),
            registry_address,
            socket,
        };
        setup.wait_ready();
        setup
    }

    /// `kill -9` of berthd, then a new one on the same directories.
    fn kill_and_restart_berthd(&mut self) {
        if let Some(mut child) = self.berthd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.berthd = Some(spawn_berthd(self.dir.path(), &self.socket));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut registry_up = false;
        while Instant::now() < deadline {
            if !registry_up {
                if let Ok(mut stream) = TcpStream::connect(&self.registry_address) {
                    let _ = write!(
                        stream,
                        "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    );
                    let mut answer = String::new();
                    let _ = stream.read_to_string(&mut answer);
                    registry_up =
                        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 401");
                }
            }
            if registry_up && self.socket.exists() && self.docker(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "berthd or the registry did not come up; berthd log:\n{}",
            std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
        );
    }

    fn docker(&self, args: &[&str]) -> Output {
        let config = self.dir.path().join("docker-config");
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", config)
            .stdin(Stdio::null())
            .output()
            .expect("the docker CLI must be installed")
    }

    /// Runs a docker command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\n{stdout}\nberthd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
        );
        stdout
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if self.berthd.is_some() {
            let ids = self.docker(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        for child in [self.berthd.take(), self.registry.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        unmount_under(&self.dir.path().join("data"));
        remove_cgroups(self.dir.path());
    }
}

/// berthd on `dir`'s data-root, exec-root, pidfile and daemon.json, logging to
/// `berthd.log` (appended, so a restart keeps the first one's lines).
fn spawn_berthd(dir: &Path, socket: &Path) -> Child {
    let berthd = PathBuf::from(env!("CARGO_BIN_EXE_berthd"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("berthd.log"))
        .unwrap();
    Command::new(&berthd)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("-p")
        .arg(dir.join("berthd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .arg("--config-file")
        .arg(dir.join("daemon.json"))
        .arg("--cgroup-parent")
        .arg(format!("/{}", cgroup_parent(dir)))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting berthd")
}

/// The cgroup parent of the berthd under `dir`: its own, so that the test can remove it.
fn cgroup_parent(dir: &Path) -> String {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("x");
    format!("berth-img-{}-{name}", std::process::id())
}

/// The cgroup parent's directories in every hierarchy, emptied and removed.
fn remove_cgroups(dir: &Path) {
    let parent = cgroup_parent(dir);
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = h.path().join(&parent);
        for child in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(child.path());
        }
        let _ = std::fs::remove_dir(&p);
    }
}

/// Lazily unmounts whatever is still mounted under `root`, deepest first.
fn unmount_under(root: &Path) {
    for point in harness::mounts_under(root) {
        let _ = Command::new("umount").arg("-l").arg(&point).status();
    }
}

/// A busybox rootfs tarball: the host's busybox, a symlink per applet, passwd, group.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox (Debian package busybox or busybox-static) must be installed");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(&busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" && !applet.contains('/') {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    let tarball = dir.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tarball
}

#[test]
fn push_pull_save_load_and_run_through_the_docker_cli() {
    let setup = Setup::start();
    let tarball = busybox_rootfs(setup.dir.path());
    let remote = format!("{}/busybox", setup.registry_address);
    let tagged = format!("{remote}:latest");

    let id = setup.ok(&["import", tarball.to_str().unwrap(), "busybox:latest"]);
    let id = id.trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    setup.ok(&["tag", "busybox:latest", &remote]);

    let push = setup.ok(&["push", &remote]);
    assert!(
        push.contains(&format!("The push refers to repository [{remote}]")),
        "{push}"
    );
    assert!(push.contains("Pushed"), "{push}");
    let digest_line = push
        .lines()
        .find(|l| l.starts_with("latest: digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest line in {push}"));
    let digest = digest_line.split_whitespace().nth(2).unwrap().to_string();
    // Again: the registry has everything.
    let again = setup.ok(&["push", &remote]);
    assert!(again.contains("Layer already exists"), "{again}");

    setup.ok(&["rmi", &remote, "busybox:latest"]);
    assert!(setup.ok(&["images", "-q"]).trim().is_empty());

    let started = Instant::now();
    let pull = setup.ok(&["pull", &remote]);
    let pull_time = started.elapsed();
    eprintln!("docker pull through berthd: {pull_time:?}");
    assert!(pull.contains("latest: Pulling from busybox"), "{pull}");
    assert!(pull.contains("Pull complete"), "{pull}");
    assert!(pull.contains(&format!("Digest: {digest}")), "{pull}");
    assert!(
        pull.contains(&format!("Status: Downloaded newer image for {tagged}")),
        "{pull}"
    );
    let images = setup.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert_eq!(images.trim(), format!("{tagged} {}", &id[7..19]));
    let inspect = setup.ok(&["inspect", "--format", "{{.Id}} {{.RepoDigests}}", &remote]);
    assert_eq!(inspect.trim(), format!("{id} [{remote}@{digest}]"));
    let by_digest = setup.ok(&["pull", &format!("{remote}@{digest}")]);
    assert!(
        by_digest.contains(&format!("Digest: {digest}")),
        "{by_digest}"
    );
    let up_to_date = setup.ok(&["pull", &remote]);
    assert!(
        up_to_date.contains(&format!("Status: Image is up to date for {tagged}")),
        "{up_to_date}"
    );

    let saved = setup.dir.path().join("saved.tar");
    setup.ok(&["save", "-o", saved.to_str().unwrap(), &remote]);
    assert!(std::fs::metadata(&saved).unwrap().len() > 100_000);
    setup.ok(&["rmi", &remote]);
    let load = setup.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(load.contains(&format!("Loaded image: {tagged}")), "{load}");
    let loaded = setup.ok(&["inspect", "--format", "{{.Id}}", &remote]);
    assert_eq!(loaded.trim(), id);

    let run = setup.ok(&["run", "--rm", &remote, "echo", "ok"]);
    assert_eq!(run.trim(), "ok");

    // `docker run` of an image not here: the CLI pulls it, then runs it.
    setup.ok(&["rmi", &remote]);
    let out = setup.docker(&["run", "--rm", &remote, "echo", "pulled then ran"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Unable to find image"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pulled then ran"
    );

    // The image events of all that, in order.
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_secs())
        .unwrap_or(0)
        + 1)
    .to_string();
    let events = setup.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        "type=image",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = events.lines().collect();
    for wanted in ["import", "tag", "push", "untag", "pull", "load", "delete"] {
        assert!(actions.contains(&wanted), "no {wanted} event in {events}");
    }
    let first_pull = actions.iter().position(|a| *a == "pull");
    let first_load = actions.iter().position(|a| *a == "load");
    assert!(first_pull < first_load, "{events}");

    // Errors as docker shows them.
    let missing = setup.docker(&["pull", &format!("{}/nothing:here", setup.registry_address)]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("not found"), "{stderr}");
}

/// An image saved (or pushed) by berth loads (or pulls) into Debian's docker and runs
/// there; one saved by docker (its pre-25 format, `<id>/layer.tar`) loads into berth
/// with the same ID.
#[test]
fn save_and_load_interoperate_with_debian_dockerd() {
    let berth = Setup::start();
    let dockerd = Dockerd::start();
    let tarball = busybox_rootfs(berth.dir.path());
    let tarball = tarball.to_str().unwrap();

    let id = berth
        .ok(&["import", tarball, "bb:from-berth"])
        .trim()
        .to_string();
    let from_berth = berth.dir.path().join("from-berth.tar");
    berth.ok(&["save", "-o", from_berth.to_str().unwrap(), "bb:from-berth"]);
    let load = dockerd.ok(&["load", "-i", from_berth.to_str().unwrap()]);
    assert!(load.contains("Loaded image: bb:from-berth"), "{load}");
    let in_docker = dockerd.ok(&["inspect", "--format", "{{.Id}}", "bb:from-berth"]);
    assert_eq!(in_docker.trim(), id);
    let run = dockerd.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "bb:from-berth",
        "echo",
        "ran in dockerd",
    ]);
    assert_eq!(run.trim(), "ran in dockerd");

    let docker_id = dockerd
        .ok(&["import", tarball, "bb:from-docker"])
        .trim()
        .to_string();
    dockerd.ok(&["tag", "bb:from-docker", "bb:also"]);
    let from_docker = berth.dir.path().join("from-docker.tar");
    dockerd.ok(&[
        "save",
        "-o",
        from_docker.to_str().unwrap(),
        "bb:from-docker",
        "bb:also",
    ]);
    let load = berth.ok(&["load", "-i", from_docker.to_str().unwrap()]);
    assert!(load.contains("Loaded image: bb:from-docker"), "{load}");
    assert!(load.contains("Loaded image: bb:also"), "{load}");
    let in_berth = berth.ok(&["inspect", "--format", "{{.Id}}", "bb:also"]);
    assert_eq!(in_berth.trim(), docker_id);
    let run = berth.ok(&["run", "--rm", "bb:from-docker", "echo", "ran in berthd"]);
    assert_eq!(run.trim(), "ran in berthd");

    // Through the registry, both ways: what berth pushes dockerd pulls and runs, and
    // what dockerd pushes (gzipped, Docker schema 2) berth pulls with the same ID.
    let pushed_by_berth = format!("{}/interop/berth:1", berth.registry_address);
    berth.ok(&["tag", "bb:from-berth", &pushed_by_berth]);
    berth.ok(&["push", &pushed_by_berth]);
    dockerd.ok(&["pull", &pushed_by_berth]);
    let in_docker = dockerd.ok(&["inspect", "--format", "{{.Id}}", &pushed_by_berth]);
    assert_eq!(in_docker.trim(), id);
    let run = dockerd.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &pushed_by_berth,
        "echo",
        "pulled by dockerd",
    ]);
    assert_eq!(run.trim(), "pulled by dockerd");

    let pushed_by_docker = format!("{}/interop/docker:1", berth.registry_address);
    dockerd.ok(&["tag", "bb:from-docker", &pushed_by_docker]);
    let push = dockerd.ok(&["push", &pushed_by_docker]);
    let docker_digest = push
        .lines()
        .find_map(|l| l.strip_prefix("1: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in {push}"))
        .to_string();
    berth.ok(&["pull", &pushed_by_docker]);
    let in_berth = berth.ok(&[
        "inspect",
        "--format",
        "{{.Id}} {{.RepoDigests}}",
        &pushed_by_docker,
    ]);
    let repo = pushed_by_docker.trim_end_matches(":1");
    assert_eq!(
        in_berth.trim(),
        format!("{docker_id} [{repo}@{docker_digest}]")
    );
}

/// `docker login` checks the password against the registry through `POST /auth`;
/// push and pull then carry it in `X-Registry-Auth`.
#[test]
fn login_then_push_and_pull_from_a_registry_that_wants_a_password() {
    let setup = Setup::start_with_auth(Some(("berth", "s3cret")));
    let tarball = busybox_rootfs(setup.dir.path());
    let remote = format!("{}/private/busybox:v1", setup.registry_address);
    setup.ok(&["import", tarball.to_str().unwrap(), &remote]);

    let denied = setup.docker(&["push", &remote]);
    assert!(!denied.status.success(), "a push without login must fail");

    let bad = setup.docker(&[
        "login",
        "-u",
        "berth",
        "-p",
        "wrong",
        &setup.registry_address,
    ]);
    assert!(!bad.status.success(), "a wrong password must not log in");
    let login = setup.ok(&[
        "login",
        "-u",
        "berth",
        "-p",
        "s3cret",
        &setup.registry_address,
    ]);
    assert!(login.contains("Login Succeeded"), "{login}");

    let push = setup.ok(&["push", &remote]);
    assert!(push.contains("v1: digest: sha256:"), "{push}");
    setup.ok(&["rmi", &remote]);
    let pull = setup.ok(&["pull", &remote]);
    assert!(pull.contains("Downloaded newer image"), "{pull}");

    // --all-tags: both tags of the repository.
    let repo = format!("{}/private/busybox", setup.registry_address);
    setup.ok(&["tag", &remote, &format!("{repo}:v2")]);
    setup.ok(&["push", &format!("{repo}:v2")]);
    setup.ok(&["rmi", &remote, &format!("{repo}:v2")]);
    let all = setup.ok(&["pull", "--all-tags", &repo]);
    assert!(all.contains("v1: Pulling from private/busybox"), "{all}");
    assert!(all.contains("v2: Pulling from private/busybox"), "{all}");
    assert!(
        all.contains(&format!("Status: Downloaded newer image for {repo}")),
        "{all}"
    );
    let tags = setup.ok(&["images", "--format", "{{.Tag}}", &repo]);
    let mut tags: Vec<&str> = tags.split_whitespace().collect();
    tags.sort();
    assert_eq!(tags, vec!["v1", "v2"]);
    let digests = setup.ok(&["images", "--digests", "--format", "{{.Digest}}", &repo]);
    assert!(
        digests.lines().all(|d| d.starts_with("sha256:")),
        "{digests}"
    );

    // push --all-tags: every tag of the repository, each with its digest line.
    let all = setup.ok(&["push", "--all-tags", &repo]);
    assert!(all.contains("v1: digest: sha256:"), "{all}");
    assert!(all.contains("v2: digest: sha256:"), "{all}");
    assert!(all.contains("Layer already exists"), "{all}");
}

/// `registry-mirrors` from daemon.json reach the client: `docker pull busybox` is served
/// by the local registry acting as the Docker Hub mirror, and is named as from Hub.
#[test]
fn docker_hub_pulls_go_to_the_configured_mirror() {
    let setup = Setup::start_with(None, true);
    // `docker info` shows them as it does for dockerd.
    let info = setup.ok(&["info"]);
    let insecure = format!(
        "Insecure Registries:\n  {}\n  ::1/128\n  127.0.0.0/8\n",
        setup.registry_address
    );
    let insecure_v4 = format!(
        "Insecure Registries:\n  {}\n  127.0.0.0/8\n",
        setup.registry_address
    );
    assert!(
        info.contains(&insecure) || info.contains(&insecure_v4),
        "{info}"
    );
    let mirrors = format!("Registry Mirrors:\n  http://{}/\n", setup.registry_address);
    assert!(info.contains(&mirrors), "{info}");
    let tarball = busybox_rootfs(setup.dir.path());
    let on_mirror = format!("{}/library/busybox:latest", setup.registry_address);
    let id = setup.ok(&["import", tarball.to_str().unwrap(), &on_mirror]);
    setup.ok(&["push", &on_mirror]);
    setup.ok(&["rmi", &on_mirror]);

    let pull = setup.ok(&["pull", "busybox"]);
    assert!(
        pull.contains("latest: Pulling from library/busybox"),
        "{pull}"
    );
    assert!(
        pull.contains("Status: Downloaded newer image for busybox:latest"),
        "{pull}"
    );
    let inspect = setup.ok(&["inspect", "--format", "{{.Id}} {{.RepoTags}}", "busybox"]);
    assert_eq!(inspect.trim(), format!("{} [busybox:latest]", id.trim()));
    let run = setup.ok(&["run", "--rm", "busybox", "echo", "from the mirror"]);
    assert_eq!(run.trim(), "from the mirror");
}

/// A layer that does not unpack to the diff ID its config names: the pull fails with
/// docker's error line naming the layer, and no image is left.
#[test]
fn a_lying_layer_fails_the_pull_with_a_clear_error() {
    use berth_image::digest::Digest;
    use berth_image::model::media_type;
    use berth_image::registry::{RegistryClient, RegistryConfig};

    let setup = Setup::start();
    let client = RegistryClient::new(RegistryConfig::new());
    let registry = client.registry(&setup.registry_address);
    let layer = std::fs::read(busybox_rootfs(setup.dir.path())).unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"something else").to_string()]},
    }))
    .unwrap();
    for blob in [&layer[..], &config[..]] {
        let mut reader = blob;
        registry
            .push_blob(
                "liar",
                &Digest::of(blob),
                blob.len() as u64,
                &mut reader,
                None,
                &mut |_, _| {},
            )
            .unwrap();
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": media_type::OCI_LAYER, "digest": Digest::of(&layer).to_string(), "size": layer.len()}],
    }))
    .unwrap();
    registry
        .put_manifest("liar", "latest", &manifest, media_type::OCI_MANIFEST)
        .unwrap();

    let out = setup.docker(&["pull", &format!("{}/liar", setup.registry_address)]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("Pulling fs layer"), "{stdout}");
    assert!(stderr.contains("does not match diff ID"), "{stderr}");
    assert!(stderr.contains(&Digest::of(&layer).to_string()), "{stderr}");
    assert!(setup.ok(&["images", "-q"]).trim().is_empty());
}

/// The Docker SDK for Python pulls through berthd (the container lifecycle through
/// the SDK is tests/sdk.rs).
#[test]
fn docker_py_pulls_from_the_registry() {
    let setup = Setup::start();
    let tarball = busybox_rootfs(setup.dir.path());
    let remote = format!("{}/sdk/busybox:latest", setup.registry_address);
    let id = setup.ok(&["import", tarball.to_str().unwrap(), &remote]);
    setup.ok(&["push", &remote]);
    setup.ok(&["rmi", &remote]);
    let script = r#"
import sys
import docker
client = docker.DockerClient(base_url=sys.argv[1], version="auto")
image = client.images.pull(sys.argv[2])
print(image.id, image.tags)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(format!("unix://{}", setup.socket.display()))
        .arg(&remote)
        .output()
        .expect("python3 with the docker SDK (scripts/setup) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "docker-py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("{} ['{remote}']", id.trim()));
}

/// `kill -9` of berthd in the middle of a pull loses nothing and leaves nothing: the
/// restarted berthd has no image and no half-written blob, and the pull then succeeds.
#[test]
fn berthd_killed_mid_pull_leaves_a_clean_store() {
    use berth_image::digest::Digest;
    use berth_image::model::media_type;
    use berth_image::registry::{RegistryClient, RegistryConfig};
    use std::io::BufRead;

    let mut setup = Setup::start();
    // Three layers of 8 MiB of random bytes (the same bytes under three names): slow
    // enough to be caught mid-download.
    let client = RegistryClient::new(RegistryConfig::new());
    let registry = client.registry(&setup.registry_address);
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut data = vec![0u8; 8 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .unwrap();
    for n in 0..3 {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, format!("blob{n}"), &data[..])
            .unwrap();
        let tar = tar.into_inner().unwrap();
        diff_ids.push(Digest::of(&tar).to_string());
        layers.push(tar);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    for blob in layers.iter().map(|l| &l[..]).chain([&config[..]]) {
        let mut reader = blob;
        registry
            .push_blob(
                "big",
                &Digest::of(blob),
                blob.len() as u64,
                &mut reader,
                None,
                &mut |_, _| {},
            )
            .unwrap();
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": media_type::OCI_LAYER,
            "digest": Digest::of(l).to_string(),
            "size": l.len(),
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    registry
        .put_manifest("big", "latest", &manifest, media_type::OCI_MANIFEST)
        .unwrap();
    let name = format!("{}/big", setup.registry_address);

    let mut pull = Command::new("docker")
        .args(["pull", &name])
        .env("DOCKER_HOST", format!("unix://{}", setup.socket.display()))
        .env("DOCKER_CONFIG", setup.dir.path().join("docker-config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = pull.stdout.take().unwrap();
    let mut seen = String::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("Pulling fs layer") {
            break;
        }
    }
    assert!(seen.contains("Pulling fs layer"), "{seen}");
    setup.kill_and_restart_berthd();
    let _ = pull.wait();

    assert!(setup.ok(&["images", "-q"]).trim().is_empty());
    let ingest = setup.dir.path().join("data/content/ingest");
    let left: Vec<_> = std::fs::read_dir(&ingest)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "half-written blobs left: {left:?}");
    let blobs: Vec<_> = std::fs::read_dir(setup.dir.path().join("data/content/blobs/sha256"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        blobs.is_empty(),
        "blobs of the interrupted pull left: {blobs:?}"
    );

    let out = setup.ok(&["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let id = setup.ok(&["inspect", "--format", "{{.Id}}", &name]);
    assert_eq!(id.trim(), Digest::of(&config).to_string());
}
