//! Pull, push, save and load through the `Images` facade against a real Debian
//! `docker-registry` on 127.0.0.1, each on fresh data-roots.

use std::io::{Cursor, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_image::digest::Digest;
use berth_image::model::{media_type, Platform};
use berth_image::pull::PullOptions;
use berth_image::push::PushOptions;
use berth_image::registry::progress::Message;
use berth_image::registry::{RegistryClient, RegistryConfig};
use berth_image::{ImageError, Images, ImportOptions};

struct RealRegistry {
    child: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl RealRegistry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let registry = RealRegistry {
            child,
            address,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(&registry.address) {
                let _ = write!(
                    stream,
                    "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    registry.address
                );
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    return registry;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(registry.dir.path().join("registry.log")).unwrap();
        panic!("docker-registry did not come up: {log}");
    }
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(RegistryConfig::new())
}

/// A small rootfs: two files in a directory, gzipped.
fn rootfs(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "etc/", std::io::empty()).unwrap();
    for (name, data) in [
        ("etc/marker", marker.as_bytes()),
        ("etc/hostname", b"box\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// Collects progress lines as Docker's JSON.
#[derive(Default)]
struct Lines(Mutex<Vec<serde_json::Value>>);

impl Lines {
    fn push(&self, m: Message) {
        self.0.lock().unwrap().push(m.to_json());
    }
    fn statuses(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|v| v["status"].as_str().map(str::to_string))
            .collect()
    }
    fn take(&self) -> Vec<serde_json::Value> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn import(images: &Images, name: &str, marker: &str) -> berth_image::store::ImageRecord {
    images
        .import(
            &mut Cursor::new(rootfs(marker)),
            &ImportOptions {
                reference: Some(name.into()),
                ..Default::default()
            },
        )
        .unwrap()
}

#[test]
fn push_then_pull_on_a_fresh_store_gives_the_same_image() {
    let registry = RealRegistry::start();
    let client = client();
    let src_dir = tempfile::tempdir().unwrap();
    let src = Images::open(src_dir.path()).unwrap();
    let name = format!("{}/busybox", registry.address);
    let made = import(&src, &name, "one");

    let lines = Lines::default();
    let pushed = src
        .push(&client, &name, None, &PushOptions::default(), &|m| {
            lines.push(m)
        })
        .unwrap();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].tag, "latest");
    let statuses = lines.statuses();
    assert_eq!(
        statuses[0],
        format!("The push refers to repository [{name}]")
    );
    assert!(statuses.contains(&"Preparing".to_string()), "{statuses:?}");
    assert!(statuses.contains(&"Pushed".to_string()), "{statuses:?}");
    let digest_line = format!(
        "latest: digest: {} size: {}",
        pushed[0].digest, pushed[0].size
    );
    assert!(statuses.contains(&digest_line), "{statuses:?}");
    // The pushed image now answers to its RepoDigest.
    let repo_digest = format!("{name}@{}", pushed[0].digest);
    assert_eq!(
        src.resolve(&made.id.to_string())
            .unwrap()
            .familiar_repo_digests(),
        vec![repo_digest.clone()]
    );
    lines.take();

    // Pushing again sends nothing.
    src.push(
        &client,
        &name,
        Some("latest"),
        &PushOptions::default(),
        &|m| lines.push(m),
    )
    .unwrap();
    assert!(lines
        .statuses()
        .contains(&"Layer already exists".to_string()));
    lines.take();

    let dst_dir = tempfile::tempdir().unwrap();
    let dst = Images::open(dst_dir.path()).unwrap();
    let started = Instant::now();
    let pulled = dst
        .pull(&client, &name, &PullOptions::default(), &|m| lines.push(m))
        .unwrap();
    eprintln!("pull of a one-layer image: {:?}", started.elapsed());
    assert!(pulled.downloaded);
    assert_eq!(pulled.image.id, made.id);
    assert_eq!(pulled.image.diff_ids, made.diff_ids);
    assert_eq!(pulled.digest, pushed[0].digest);
    assert_eq!(pulled.image.familiar_repo_digests(), vec![repo_digest]);
    assert_eq!(
        pulled.image.familiar_repo_tags(),
        vec![format!("{name}:latest")]
    );
    let layer = dst.snapshots().layer_dir(&pulled.image.chain_ids[0]);
    assert_eq!(std::fs::read(layer.join("etc/marker")).unwrap(), b"one");

    let all = lines.take();
    assert_eq!(all[0]["status"], "Pulling from busybox");
    assert_eq!(all[0]["id"], "latest");
    let short = &made.layer_digests[0].hex()[..12];
    let per_layer: Vec<&str> = all
        .iter()
        .filter(|v| v["id"] == short)
        .filter_map(|v| v["status"].as_str())
        .collect();
    assert_eq!(per_layer.first(), Some(&"Pulling fs layer"));
    assert_eq!(per_layer.last(), Some(&"Pull complete"));
    for phase in [
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
    ] {
        assert!(per_layer.contains(&phase), "{phase} missing: {per_layer:?}");
    }
    let downloading = all.iter().find(|v| v["status"] == "Downloading").unwrap();
    assert!(downloading["progressDetail"]["current"].as_u64().unwrap() > 0);
    assert!(downloading["progressDetail"]["total"].as_u64().unwrap() > 0);
    let n = all.len();
    assert_eq!(
        all[n - 2]["status"],
        format!("Digest: {}", pushed[0].digest)
    );
    assert_eq!(
        all[n - 1]["status"],
        format!("Status: Downloaded newer image for {name}:latest")
    );

    // Again: nothing to fetch.
    let again = dst
        .pull(&client, &name, &PullOptions::default(), &|m| lines.push(m))
        .unwrap();
    assert!(!again.downloaded);
    let statuses = lines.statuses();
    assert!(
        statuses.contains(&"Already exists".to_string()),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().unwrap(),
        &format!("Status: Image is up to date for {name}:latest")
    );

    // By digest.
    let by_digest = format!("{name}@{}", pushed[0].digest);
    let third_dir = tempfile::tempdir().unwrap();
    let third = Images::open(third_dir.path()).unwrap();
    let r = third
        .pull(&client, &by_digest, &PullOptions::default(), &|_| {})
        .unwrap();
    assert_eq!(r.image.id, made.id);
    assert!(r.image.repo_tags.is_empty());
}

#[test]
fn pull_of_a_manifest_list_picks_the_platform() {
    let registry = RealRegistry::start();
    let client = client();
    let src_dir = tempfile::tempdir().unwrap();
    let src = Images::open(src_dir.path()).unwrap();
    let amd = format!("{}/multi:amd64", registry.address);
    let arm = format!("{}/multi:arm64", registry.address);
    let amd_image = import(&src, &amd, "amd64");
    let arm_image = src
        .import(
            &mut Cursor::new(rootfs("arm64")),
            &ImportOptions {
                reference: Some(arm.clone()),
                platform: Some(Platform::parse("linux/arm64").unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
    let pushed_amd = src
        .push(&client, &amd, None, &PushOptions::default(), &|_| {})
        .unwrap();
    let pushed_arm = src
        .push(&client, &arm, None, &PushOptions::default(), &|_| {})
        .unwrap();
    let entry = |d: &Digest, size: u64, arch: &str| {
        serde_json::json!({
            "mediaType": media_type::OCI_MANIFEST,
            "digest": d.to_string(),
            "size": size,
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [
            entry(&pushed_arm[0].digest, pushed_arm[0].size, "arm64"),
            entry(&pushed_amd[0].digest, pushed_amd[0].size, "amd64"),
        ],
    }))
    .unwrap();
    let reg = client.registry(&registry.address);
    let index_digest = reg
        .put_manifest("multi", "latest", &index, media_type::OCI_INDEX)
        .unwrap();
    let name = format!("{}/multi", registry.address);

    let dir = tempfile::tempdir().unwrap();
    let dst = Images::open(dir.path()).unwrap();
    let pulled = dst
        .pull(&client, &name, &PullOptions::default(), &|_| {})
        .unwrap();
    assert_eq!(pulled.image.id, amd_image.id);
    assert_eq!(pulled.digest, index_digest);
    assert_eq!(
        pulled.image.familiar_repo_digests(),
        vec![format!("{name}@{index_digest}")]
    );
    let options = PullOptions {
        platform: Some(Platform::parse("linux/arm64").unwrap()),
        ..Default::default()
    };
    let pulled = dst.pull(&client, &name, &options, &|_| {}).unwrap();
    assert_eq!(pulled.image.id, arm_image.id);

    let options = PullOptions {
        platform: Some(Platform::parse("linux/s390x").unwrap()),
        ..Default::default()
    };
    match dst.pull(&client, &name, &options, &|_| {}) {
        Err(ImageError::NoMatchingPlatform { .. }) => {}
        other => panic!("expected NoMatchingPlatform, got {other:?}"),
    }
    // A plain manifest: its config's platform must match an explicit one.
    let options = PullOptions {
        platform: Some(Platform::parse("linux/arm64").unwrap()),
        ..Default::default()
    };
    match dst.pull(&client, &amd, &options, &|_| {}) {
        Err(ImageError::NoMatchingPlatform { .. }) => {}
        other => panic!("expected NoMatchingPlatform, got {other:?}"),
    }
    let r = dst.pull(&client, &arm, &options, &|_| {}).unwrap();
    assert_eq!(r.image.id, arm_image.id);
}

#[test]
fn pull_of_an_unknown_tag_is_manifest_unknown_and_stores_nothing() {
    let registry = RealRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let name = format!("{}/nothing:here", registry.address);
    let lines = Lines::default();
    let err = images
        .pull(&client(), &name, &PullOptions::default(), &|m| {
            lines.push(m)
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::ManifestUnknown { .. } | ImageError::Registry { status: 404, .. }
        ),
        "{err:?}"
    );
    assert!(
        lines.take().is_empty(),
        "no progress before the manifest is known"
    );
    assert!(images.list().is_empty());
}

#[test]
fn save_then_load_on_a_fresh_store_keeps_id_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let a = import(&images, "busybox:latest", "a");
    images
        .store()
        .tag("busybox:latest", "busybox:1.36")
        .unwrap();
    let b = import(&images, "example.com/app:v1", "b");
    let mut tar = Vec::new();
    images
        .save(&["busybox".into(), "example.com/app:v1".into()], &mut tar)
        .unwrap();

    // The archive is an OCI layout and a Docker archive at once.
    let mut names = Vec::new();
    let mut manifest_json = None;
    let mut index_json = None;
    for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if path == "manifest.json" || path == "index.json" {
            let mut s = String::new();
            entry.read_to_string(&mut s).unwrap();
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            if path == "manifest.json" {
                manifest_json = Some(v);
            } else {
                index_json = Some(v);
            }
        }
        names.push(path);
    }
    for name in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(
            names.contains(&name.to_string()),
            "{name} missing: {names:?}"
        );
    }
    let blob = format!("blobs/sha256/{}", a.id.hex());
    assert!(names.contains(&blob));
    let manifest_json = manifest_json.unwrap();
    assert_eq!(manifest_json[0]["Config"], blob);
    let mut tags: Vec<String> = manifest_json[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, vec!["busybox:1.36", "busybox:latest"]);
    assert_eq!(manifest_json[1]["RepoTags"][0], "example.com/app:v1");
    let index_json = index_json.unwrap();
    assert_eq!(index_json["manifests"].as_array().unwrap().len(), 3);
    assert_eq!(
        index_json["manifests"][2]["annotations"]["io.containerd.image.name"],
        "example.com/app:v1"
    );

    let dir2 = tempfile::tempdir().unwrap();
    let fresh = Images::open(dir2.path()).unwrap();
    let loaded = fresh.load(&mut Cursor::new(&tar)).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].id, a.id);
    assert_eq!(loaded[1].id, b.id);
    assert_eq!(loaded[1].repo_tags, vec!["example.com/app:v1"]);
    assert_eq!(fresh.resolve("busybox:1.36").unwrap().id, a.id);
    let rec = fresh.resolve("example.com/app:v1").unwrap();
    let layer = fresh.snapshots().layer_dir(&rec.chain_ids[0]);
    assert_eq!(std::fs::read(layer.join("etc/marker")).unwrap(), b"b");
    // Saved by ID: no tags.
    let mut by_id = Vec::new();
    fresh.save(&[a.id.to_string()], &mut by_id).unwrap();
    let dir3 = tempfile::tempdir().unwrap();
    let third = Images::open(dir3.path()).unwrap();
    let loaded = third.load(&mut Cursor::new(&by_id)).unwrap();
    assert_eq!(loaded[0].id, a.id);
    assert!(loaded[0].repo_tags.is_empty());
}

/// The format Docker wrote before 25 (and Debian's docker 20.10 still writes):
/// `<id>/layer.tar`, `<id>.json` configs, repeated layers as symlinks.
#[test]
fn load_of_a_legacy_docker_archive() {
    let layer = {
        let mut b = tar::Builder::new(Vec::new());
        let data = b"legacy\n";
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, "legacy.txt", &data[..]).unwrap();
        b.into_inner().unwrap()
    };
    let diff_id = Digest::of(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string(), diff_id.to_string()]},
        "history": [{"created_by": "one"}, {"created_by": "two"}],
    }))
    .unwrap();
    let config_digest = Digest::of(&config);
    let one = "1".repeat(64);
    let two = "2".repeat(64);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{}.json", config_digest.hex()),
        "RepoTags": ["legacy:old"],
        "Layers": [format!("{one}/layer.tar"), format!("{two}/layer.tar")],
    }]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add(&format!("{one}/VERSION"), b"1.0");
    add(&format!("{one}/json"), b"{}");
    add(&format!("{one}/layer.tar"), &layer);
    add(&format!("{}.json", config_digest.hex()), &config);
    add("manifest.json", &manifest);
    add("repositories", br#"{"legacy":{"old":"2222"}}"#);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(
        &mut h,
        format!("{two}/layer.tar"),
        format!("../{one}/layer.tar"),
    )
    .unwrap();
    let tar = b.into_inner().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let loaded = images.load(&mut Cursor::new(tar)).unwrap();
    assert_eq!(loaded[0].id, config_digest);
    assert_eq!(loaded[0].repo_tags, vec!["legacy:old"]);
    let rec = images.resolve("legacy:old").unwrap();
    assert_eq!(rec.diff_ids, vec![diff_id.clone(), diff_id]);
    let top = images.snapshots().layer_dir(&rec.chain_ids[1]);
    assert_eq!(std::fs::read(top.join("legacy.txt")).unwrap(), b"legacy\n");
}

#[test]
fn load_refuses_paths_that_leave_the_archive_and_missing_layers() {
    let mut b = tar::Builder::new(Vec::new());
    let manifest = br#"[{"Config":"c.json","RepoTags":["x:y"],"Layers":["nope/layer.tar"]}]"#;
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(manifest.len() as u64);
    b.append_data(&mut h, "manifest.json", &manifest[..])
        .unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(config.len() as u64);
    b.append_data(&mut h, "c.json", &config[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let err = images.load(&mut Cursor::new(tar)).unwrap_err();
    assert!(err.to_string().contains("nope/layer.tar"), "{err}");
    assert!(images.list().is_empty());

    // A member named ../escape (the tar crate refuses to build one, so by hand).
    let mut raw = vec![0u8; 512];
    raw[..9].copy_from_slice(b"../escape");
    raw[100..107].copy_from_slice(b"0000644");
    raw[124..135].copy_from_slice(b"00000000000");
    raw[156] = b'0';
    raw[257..262].copy_from_slice(b"ustar");
    let mut header = tar::Header::from_byte_slice(&raw).clone();
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.extend_from_slice(&[0u8; 1024]);
    let err = images.load(&mut Cursor::new(tar)).unwrap_err();
    assert!(err.to_string().contains("unsafe path"), "{err}");
}

/// Pushes a one-layer image by hand (layer, config, manifest) and returns its name.
fn push_raw(
    registry: &RealRegistry,
    client: &RegistryClient,
    repo: &str,
    layer: &[u8],
    diff_id: &Digest,
) -> String {
    let reg = client.registry(&registry.address);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    }))
    .unwrap();
    for blob in [layer, &config[..]] {
        let mut reader = blob;
        reg.push_blob(
            repo,
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
        "layers": [{"mediaType": media_type::OCI_LAYER_GZIP, "digest": Digest::of(layer).to_string(), "size": layer.len()}],
    }))
    .unwrap();
    reg.put_manifest(repo, "latest", &manifest, media_type::OCI_MANIFEST)
        .unwrap();
    format!("{}/{repo}", registry.address)
}

#[test]
fn a_layer_that_does_not_unpack_to_its_diff_id_leaves_no_image_and_no_layer() {
    let registry = RealRegistry::start();
    let client = client();
    let layer = rootfs("x");
    let wrong = Digest::of(b"not the diff id");
    let name = push_raw(&registry, &client, "lying", &layer, &wrong);
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let err = images
        .pull(&client, &name, &PullOptions::default(), &|_| {})
        .unwrap_err();
    match &err {
        ImageError::DiffIdMismatch {
            image, expected, ..
        } => {
            assert!(image.contains("lying"), "{err}");
            assert_eq!(expected, &wrong);
        }
        other => panic!("expected DiffIdMismatch, got {other:?}"),
    }
    assert!(images.list().is_empty());
    assert!(!images.snapshots().has_layer(&wrong));
    // What was downloaded is garbage now, and GC takes it.
    images.gc().unwrap();
    assert!(images.content().list().unwrap().is_empty());
}

#[test]
fn concurrent_pulls_of_one_image_share_the_download() {
    let registry = RealRegistry::start();
    let client = client();
    let src_dir = tempfile::tempdir().unwrap();
    let src = Images::open(src_dir.path()).unwrap();
    let name = format!("{}/shared", registry.address);
    let made = import(&src, &name, "shared");
    src.push(&client, &name, None, &PushOptions::default(), &|_| {})
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| images.pull(&client, &name, &PullOptions::default(), &|_| {})))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        assert_eq!(r.unwrap().image.id, made.id);
    }
    assert_eq!(images.list().len(), 1);
}

#[test]
fn push_to_a_second_repository_mounts_the_layers() {
    let registry = RealRegistry::start();
    let client = client();
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let first = format!("{}/first", registry.address);
    let second = format!("{}/second", registry.address);
    import(&images, &first, "mounted");
    images
        .push(&client, &first, None, &PushOptions::default(), &|_| {})
        .unwrap();
    images.store().tag(&first, &second).unwrap();
    let lines = Lines::default();
    images
        .push(&client, &second, None, &PushOptions::default(), &|m| {
            lines.push(m)
        })
        .unwrap();
    let statuses = lines.statuses();
    assert!(
        statuses.contains(&"Mounted from first".to_string()),
        "{statuses:?}"
    );
}

fn run_tool(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (Debian package {program}) must be installed: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What Debian's skopeo and umoci make of berth's pushes and archives, and berth of
/// skopeo's.
#[test]
fn skopeo_and_umoci_agree_with_berth() {
    let registry = RealRegistry::start();
    let client = client();
    let src_dir = tempfile::tempdir().unwrap();
    let src = Images::open(src_dir.path()).unwrap();
    let name = format!("{}/tools/box", registry.address);
    let made = import(&src, &name, "tools");
    let pushed = src
        .push(&client, &name, None, &PushOptions::default(), &|_| {})
        .unwrap();

    // A pull on a fresh store gives the ID, diff IDs and digest skopeo reports.
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let pulled = images
        .pull(&client, &name, &PullOptions::default(), &|_| {})
        .unwrap();
    let remote = format!("docker://{name}:latest");
    let inspect: serde_json::Value = serde_json::from_slice(&run_tool(
        "skopeo",
        &["inspect", "--tls-verify=false", &remote],
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], pushed[0].digest.to_string());
    assert_eq!(inspect["Digest"], pulled.digest.to_string());
    let raw_config = run_tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            "--config",
            &remote,
        ],
    );
    assert_eq!(Digest::of(&raw_config), pulled.image.id);
    assert_eq!(pulled.image.id, made.id);
    let config: serde_json::Value = serde_json::from_slice(&raw_config).unwrap();
    let diff_ids: Vec<String> = pulled
        .image
        .diff_ids
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
    assert_eq!(
        pulled.image.familiar_repo_digests(),
        vec![format!("{name}@{}", inspect["Digest"].as_str().unwrap())]
    );

    // berth's archive is an OCI layout: skopeo reads it, umoci unpacks it.
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("berth.tar");
    let mut file = std::fs::File::create(&archive).unwrap();
    images.save(&[format!("{name}:latest")], &mut file).unwrap();
    drop(file);
    for source in [
        format!("oci-archive:{}:latest", archive.display()),
        format!("docker-archive:{}", archive.display()),
    ] {
        let seen: serde_json::Value =
            serde_json::from_slice(&run_tool("skopeo", &["inspect", "--config", &source])).unwrap();
        assert_eq!(
            seen["rootfs"]["diff_ids"],
            serde_json::json!(diff_ids),
            "{source}"
        );
    }
    let layout = work.path().join("layout");
    images
        .save_oci_layout(&[format!("{name}:latest")], &layout)
        .unwrap();
    assert!(layout.join("oci-layout").exists());
    let copied = work.path().join("copied");
    run_tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:latest", layout.display()),
            &format!("dir:{}", copied.display()),
        ],
    );
    assert!(
        copied.join(made.id.hex()).exists(),
        "skopeo copied the config blob"
    );
    let bundle = work.path().join("bundle");
    run_tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:latest", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/marker")).unwrap(),
        b"tools"
    );

    // An OCI archive written by skopeo loads into berth with the same ID.
    let from_skopeo = work.path().join("skopeo.tar");
    run_tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &remote,
            &format!("oci-archive:{}:latest", from_skopeo.display()),
        ],
    );
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = Images::open(fresh_dir.path()).unwrap();
    let loaded = fresh
        .load(&mut std::fs::File::open(&from_skopeo).unwrap())
        .unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, made.id);

    // And an OCI layout directory written by skopeo.
    let skopeo_layout = work.path().join("skopeo-layout");
    run_tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &remote,
            &format!("oci:{}:v9", skopeo_layout.display()),
        ],
    );
    let third_dir = tempfile::tempdir().unwrap();
    let third = Images::open(third_dir.path()).unwrap();
    let loaded = third.load_oci_layout(&skopeo_layout).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, made.id);
    let rec = third.resolve(&made.id.to_string()).unwrap();
    let layer = third.snapshots().layer_dir(&rec.chain_ids[0]);
    assert_eq!(std::fs::read(layer.join("etc/marker")).unwrap(), b"tools");
}

#[test]
fn plain_tar_layers_are_pushed_gzipped_and_the_copy_survives_gc() {
    let registry = RealRegistry::start();
    let client = client();
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let name = format!("{}/plain", registry.address);
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&rootfs("plain")[..])
        .read_to_end(&mut plain)
        .unwrap();
    let made = images
        .import(
            &mut Cursor::new(plain),
            &ImportOptions {
                reference: Some(name.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    let pushed = images
        .push(&client, &name, None, &PushOptions::default(), &|_| {})
        .unwrap();
    let reg = client.registry(&registry.address);
    let manifest = reg.get_manifest("plain", "latest").unwrap();
    assert_eq!(manifest.digest, pushed[0].digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        media_type::OCI_LAYER_GZIP
    );
    assert_eq!(manifest["config"]["digest"], made.id.to_string());

    images.gc().unwrap();
    let lines = Lines::default();
    let again = images
        .push(&client, &name, None, &PushOptions::default(), &|m| {
            lines.push(m)
        })
        .unwrap();
    assert_eq!(again[0].digest, pushed[0].digest, "the same gzipped copy");
    assert!(lines
        .statuses()
        .contains(&"Layer already exists".to_string()));

    let dst_dir = tempfile::tempdir().unwrap();
    let dst = Images::open(dst_dir.path()).unwrap();
    let pulled = dst
        .pull(&client, &name, &PullOptions::default(), &|_| {})
        .unwrap();
    assert_eq!(pulled.image.id, made.id);
    assert_eq!(pulled.image.diff_ids, made.diff_ids);
}
