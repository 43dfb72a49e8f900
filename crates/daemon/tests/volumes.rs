//! Volumes, bind mounts, tmpfs and disk housekeeping (issue 7), end to end: Docker's
//! CLI and berth's against a real berthd, with assertions on what the user sees and
//! on the host's directories and mounts.

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use harness::{mounts_under, stderr, text, Daemon};
use serde_json::Value;

/// berth's CLI, built next to berthd (`cargo build -p berth-cli --bins`).
fn berth(d: &Daemon, args: &[&str]) -> Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p berth-cli --bins`",
        bin.display()
    );
    Command::new(bin)
        .arg("-H")
        .arg(d.host())
        .args(args)
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .stdin(Stdio::null())
        .output()
        .expect("run berth")
}

fn berth_ok(d: &Daemon, args: &[&str]) -> String {
    let o = berth(d, args);
    assert!(
        o.status.success(),
        "berth {args:?} failed ({}): {}\nberthd log:\n{}",
        o.status,
        stderr(&o),
        d.log()
    );
    text(&o)
}

/// `docker ARGS`, which must fail; its stderr.
fn fails(d: &Daemon, args: &[&str]) -> String {
    let o = d.docker(args);
    assert!(
        !o.status.success(),
        "docker {args:?} succeeded: {}",
        text(&o)
    );
    stderr(&o)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(String::from).collect();
    v.sort();
    v
}

/// The sum of the sizes of the regular files under `dir`, each hard link once: what
/// `du --apparent-size` counts for the files (its directory entries aside).
fn file_bytes(dir: &Path) -> u64 {
    let o = Command::new("find")
        .arg(dir)
        .args(["-type", "f", "-links", "1", "-printf", "%s\\n"])
        .output()
        .expect("find");
    text(&o)
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .sum()
}

/// busybox, and `seeded`: busybox with `VOLUME /seed` over a file of the image.
fn images(d: &Daemon) {
    d.import_busybox("busybox:latest");
    d.ok(&[
        "run",
        "--name",
        "seed",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /seed && echo from-image > /seed/file",
    ]);
    d.ok(&["commit", "--change", "VOLUME /seed", "seed", "seeded"]);
    d.ok(&["rm", "seed"]);
}

fn volume_names(d: &Daemon) -> Vec<String> {
    lines(&d.ok(&["volume", "ls", "-q"]))
}

#[test]
fn named_volumes_persist_copy_up_and_anonymous_volumes() {
    let d = Daemon::start();
    images(&d);
    // `seeded` stands on busybox's layer: both share it, and it counts once in total.
    let usage = df(&d);
    let imgs = usage["Images"].as_array().cloned().unwrap_or_default();
    assert_eq!(imgs.len(), 2, "{imgs:?}");
    let sizes: u64 = imgs.iter().filter_map(|i| i["Size"].as_u64()).sum();
    for i in &imgs {
        let shared = i["SharedSize"].as_u64().unwrap_or(0);
        assert!(
            shared > 0 && shared <= i["Size"].as_u64().unwrap_or(0),
            "{i}"
        );
    }
    let layers = usage["LayersSize"].as_u64().unwrap_or(0);
    assert!(layers > 0 && layers < sizes, "{layers} of {sizes}");

    assert_eq!(d.ok(&["volume", "create", "data"]), "data\n");
    // Data written in a named volume is there for the next container.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "kept\n"
    );
    let v = json(&d.ok(&["volume", "inspect", "data"]));
    let mountpoint = d.data_root().join("volumes/data/_data");
    assert_eq!(v[0]["Name"], "data");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Scope"], "local");
    assert_eq!(v[0]["Mountpoint"], mountpoint.display().to_string());
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("f"))
            .ok()
            .as_deref(),
        Some("kept\n")
    );

    // ro refuses writes; the volume is unchanged.
    let o = d.docker(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/g",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(!mountpoint.join("g").exists());

    // Copy-up: an empty named volume takes the image's content; nocopy leaves it empty.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "fresh:/seed",
            "seeded",
            "cat",
            "/seed/file"
        ]),
        "from-image\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.data_root().join("volumes/fresh/_data/file"))
            .ok()
            .as_deref(),
        Some("from-image\n")
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "empty:/seed:nocopy",
            "seeded",
            "ls",
            "-A",
            "/seed"
        ]),
        ""
    );
    // A volume that has content keeps it: no copy-up over it.
    d.ok(&["run", "--rm", "-v", "data:/seed", "seeded", "true"]);
    assert!(!mountpoint.join("file").exists());

    // The image's VOLUME: an anonymous volume, filled from the image, shown in Mounts.
    assert_eq!(
        d.ok(&["run", "--name", "anon", "seeded", "cat", "/seed/file"]),
        "from-image\n"
    );
    let c = json(&d.ok(&["inspect", "anon"]));
    let mounts = c[0]["Mounts"].as_array().cloned().unwrap_or_default();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Destination"], "/seed");
    let anon = mounts[0]["Name"].as_str().unwrap_or("").to_string();
    assert_eq!(anon.len(), 64, "{anon}");
    assert!(volume_names(&d).contains(&anon));
    let labels = json(&d.ok(&["volume", "inspect", &anon]));
    assert!(labels[0]["Labels"]
        .as_object()
        .is_some_and(|l| l.contains_key("com.docker.volume.anonymous")));
    // rm -v takes its anonymous volume with it.
    d.ok(&["rm", "-v", "anon"]);
    assert!(!volume_names(&d).contains(&anon));
    assert!(!d.data_root().join("volumes").join(&anon).exists());

    // `-v /path`: anonymous too; `rm` without -v keeps it, `volume prune` removes it
    // (and only the anonymous ones).
    d.ok(&[
        "create", "--name", "scratch", "-v", "/scratch", "busybox", "true",
    ]);
    let before = volume_names(&d);
    assert_eq!(before.len(), 4, "{before:?}");
    d.ok(&["rm", "scratch"]);
    assert_eq!(volume_names(&d), before);
    let out = d.ok(&["volume", "prune", "-f"]);
    assert!(out.contains("Deleted Volumes:"), "{out}");
    assert_eq!(
        volume_names(&d),
        lines("data\nempty\nfresh\n"),
        "only the named volumes stay"
    );
    // --rm removes the anonymous volumes of the container, not the named ones.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "/tmpvol",
        "-v",
        "data:/data",
        "busybox",
        "true",
    ]);
    assert_eq!(volume_names(&d), lines("data\nempty\nfresh\n"));
    // prune -a: every unused volume.
    d.ok(&["volume", "prune", "-a", "-f"]);
    assert!(volume_names(&d).is_empty());
    assert!(!mountpoint.exists());
}

#[test]
fn bad_input_is_refused_and_nothing_is_created() {
    let d = Daemon::start();
    let since = harness::unix_secs(0);
    d.import_busybox("busybox:latest");
    let volumes_dir = d.data_root().join("volumes");
    let volume_dirs = || {
        std::fs::read_dir(&volumes_dir)
            .map(|r| r.count())
            .unwrap_or(0)
    };

    let err = fails(&d, &["volume", "create", "a/b"]);
    assert!(
        err.contains("\"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"),
        "{err}"
    );
    let err = fails(&d, &["volume", "create", "-o", "foo=bar", "v1"]);
    assert!(err.contains("invalid option: \"foo\""), "{err}");
    let err = fails(&d, &["volume", "create", "-o", "type=tmpfs", "v1"]);
    assert!(err.contains("missing required option: \"device\""), "{err}");
    let err = fails(&d, &["volume", "create", "-d", "nosuch", "v1"]);
    assert!(err.contains("plugin \"nosuch\" not found"), "{err}");
    let err = fails(&d, &["volume", "inspect", "nope"]);
    assert!(err.contains("get nope: no such volume"), "{err}");
    let err = fails(&d, &["volume", "rm", "nope"]);
    assert!(err.contains("no such volume"), "{err}");
    d.ok(&["volume", "rm", "-f", "nope"]);
    let (status, _) = d.api("GET", "/volumes/nope", None);
    assert_eq!(status, 404);
    assert!(volume_names(&d).is_empty());
    assert_eq!(volume_dirs(), 0);

    // Bad mounts: Docker's messages, no container, no volume.
    let err = fails(
        &d,
        &[
            "run",
            "--mount",
            "type=bind,source=/nonexistent-berth-src,target=/x",
            "busybox",
            "true",
        ],
    );
    assert!(
        err.contains("invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-berth-src"),
        "{err}"
    );
    let err = fails(&d, &["run", "-v", "a$b:/x", "busybox", "true"]);
    assert!(err.contains("includes invalid characters"), "{err}");
    let err = fails(&d, &["run", "-v", "newvol:/x:bogus", "busybox", "true"]);
    assert!(err.contains("invalid mode: bogus"), "{err}");
    let err = fails(&d, &["run", "-v", "/tmp:/proc", "busybox", "true"]);
    assert!(err.contains("\"/proc\" cannot be mounted"), "{err}");
    let err = fails(
        &d,
        &[
            "run",
            "-v",
            "okvol:/x",
            "-v",
            "/tmp:/proc/sys",
            "busybox",
            "true",
        ],
    );
    assert!(err.contains("inside /proc"), "{err}");
    let err = fails(
        &d,
        &["run", "-v", "v1:/x", "-v", "v2:/x", "busybox", "true"],
    );
    assert!(err.contains("Duplicate mount point: /x"), "{err}");
    let err = fails(
        &d,
        &[
            "run",
            "--mount",
            "type=volume,source=mv,target=/mv,volume-opt=bogus=1",
            "busybox",
            "true",
        ],
    );
    assert!(err.contains("invalid option: \"bogus\""), "{err}");
    // Through the API: docker's CLI takes any 404 of create for a missing image.
    let (status, body) = d.api(
        "POST",
        "/containers/create",
        Some(r#"{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"VolumesFrom": ["nosuch"]}}"#),
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("No such container: nosuch"), "{body}");
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert!(volume_names(&d).is_empty(), "{:?}", volume_names(&d));
    assert_eq!(volume_dirs(), 0);

    // In use: 409 with the users' IDs, and the volume stays.
    let id = d
        .ok(&[
            "create", "--name", "user", "-v", "busy:/x", "busybox", "true",
        ])
        .trim()
        .to_string();
    let err = fails(&d, &["volume", "rm", "busy"]);
    assert!(
        err.contains(&format!("remove busy: volume is in use - [{id}]")),
        "{err}"
    );
    let (status, body) = d.api("DELETE", "/volumes/busy", None);
    assert_eq!(status, 409, "{body}");
    assert!(volume_names(&d).contains(&"busy".to_string()));
    // Creating it again returns the existing one.
    assert_eq!(d.ok(&["volume", "create", "busy"]), "busy\n");

    // Filters: dangling, name, label, driver.
    d.ok(&["volume", "create", "--label", "env=prod", "v-a"]);
    d.ok(&["volume", "create", "--label", "env=dev", "v-b"]);
    let ls = |f: &str| lines(&d.ok(&["volume", "ls", "-q", "--filter", f]));
    assert_eq!(ls("label=env=prod"), vec!["v-a"]);
    assert_eq!(ls("label=env"), vec!["v-a", "v-b"]);
    assert_eq!(ls("dangling=true"), vec!["v-a", "v-b"]);
    assert_eq!(ls("dangling=false"), vec!["busy"]);
    assert_eq!(ls("name=v-"), vec!["v-a", "v-b"]);
    assert_eq!(ls("driver=local").len(), 3);
    let err = fails(&d, &["volume", "ls", "--filter", "bogus=1"]);
    assert!(err.contains("invalid filter 'bogus'"), "{err}");
    // prune with a label filter takes only the matching unused ones.
    let out = d.ok(&["volume", "prune", "-a", "-f", "--filter", "label=env=dev"]);
    assert!(out.contains("v-b"), "{out}");
    assert_eq!(volume_names(&d), lines("busy\nv-a\n"));
    let events = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &harness::unix_secs(1),
        "--filter",
        "volume=v-b",
    ]);
    let actions: Vec<&str> = events
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(actions, ["create", "destroy"], "{events}");

    // `-v /host:/ctr` makes a missing host directory; `--mount` would have refused it.
    let host = d.dir.join("made/here");
    d.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/m", host.display()),
        "busybox",
        "sh",
        "-c",
        "echo hi > /m/f",
    ]);
    assert_eq!(
        std::fs::read_to_string(host.join("f")).ok().as_deref(),
        Some("hi\n")
    );
}

#[test]
fn tmpfs_volume_options_and_volumes_from() {
    let d = Daemon::start();
    d.import_busybox("busybox:latest");

    // --tmpfs: content gone after a restart; --mount type=tmpfs with size and mode.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "tm",
        "--tmpfs",
        "/t",
        "--mount",
        "type=tmpfs,target=/t2,tmpfs-size=1m,tmpfs-mode=1770",
        "busybox",
        "sleep",
        "1000",
    ]);
    d.ok(&["exec", "tm", "sh", "-c", "echo gone > /t/f"]);
    assert_eq!(d.ok(&["exec", "tm", "cat", "/t/f"]), "gone\n");
    let mounts = d.ok(&["exec", "tm", "cat", "/proc/mounts"]);
    let t2 = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/t2"))
        .unwrap_or_else(|| panic!("no /t2 in {mounts}"));
    assert!(
        t2.contains("tmpfs") && t2.contains("size=1024k") && t2.contains("mode=1770"),
        "{t2}"
    );
    let c = json(&d.ok(&["inspect", "tm"]));
    assert!(
        c[0]["Mounts"].to_string().contains("\"Type\":\"tmpfs\""),
        "{}",
        c[0]["Mounts"]
    );
    d.ok(&["restart", "-t", "1", "tm"]);
    assert_eq!(d.ok(&["exec", "tm", "ls", "-A", "/t"]), "");
    d.ok(&["rm", "-f", "tm"]);

    // A volume of the local driver with type=tmpfs: mounted while used, gone after.
    d.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=2m",
        "tv",
    ]);
    let v = json(&d.ok(&["volume", "inspect", "tv"]));
    assert_eq!(v[0]["Options"]["type"], "tmpfs");
    assert_eq!(v[0]["Options"]["o"], "size=2m");
    let out = d.ok(&[
        "run",
        "--rm",
        "-v",
        "tv:/tv",
        "busybox",
        "sh",
        "-c",
        "echo x > /tv/f; grep ' /tv ' /proc/mounts",
    ]);
    assert!(out.contains("tmpfs") && out.contains("size=2048k"), "{out}");
    let tv_dir = d.data_root().join("volumes/tv");
    assert!(
        mounts_under(&tv_dir).is_empty(),
        "{:?}",
        mounts_under(&tv_dir)
    );
    assert_eq!(
        d.ok(&["run", "--rm", "-v", "tv:/tv", "busybox", "ls", "-A", "/tv"]),
        ""
    );
    assert!(mounts_under(&tv_dir).is_empty());
    // --mount type=volume with volume-opt makes such a volume too.
    d.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,source=mv,target=/mv,volume-opt=type=tmpfs,volume-opt=device=tmpfs",
        "busybox",
        "true",
    ]);
    let v = json(&d.ok(&["volume", "inspect", "mv"]));
    assert_eq!(v[0]["Options"]["type"], "tmpfs");
    assert!(mounts_under(&d.data_root().join("volumes/mv")).is_empty());

    // --volumes-from: the same volume and bind; :ro makes them read-only.
    let host = d.dir.join("hostdir");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("h"), "host\n").expect("write");
    d.ok(&[
        "create",
        "--name",
        "src",
        "-v",
        "shared:/shared",
        "-v",
        &format!("{}:/hb", host.display()),
        "busybox",
        "true",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "src",
            "busybox",
            "sh",
            "-c",
            "echo from-other > /shared/f; cat /hb/h",
        ]),
        "host\n"
    );
    assert_eq!(
        d.ok(&["run", "--rm", "-v", "shared:/s", "busybox", "cat", "/s/f"]),
        "from-other\n"
    );
    let o = d.docker(&[
        "run",
        "--rm",
        "--volumes-from",
        "src:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /shared/g",
    ]);
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    let c = json(&d.ok(&["inspect", "src"]));
    let m = c[0]["Mounts"].to_string();
    assert!(
        m.contains("\"Name\":\"shared\"") && m.contains("/hb"),
        "{m}"
    );
    d.ok(&["rm", "src"]);
    d.ok(&["volume", "rm", "shared", "tv", "mv"]);
}

/// `/system/df` as JSON.
fn df(d: &Daemon) -> Value {
    let (status, body) = d.api("GET", "/system/df", None);
    assert_eq!(status, 200, "{body}");
    json(&body)
}

#[test]
fn disk_usage_is_true_and_prune_frees_what_it_reports() {
    let d = Daemon::start();
    d.import_busybox("busybox:latest");

    // A named volume holding a 1 MiB file, used by a stopped container.
    d.ok(&[
        "run",
        "--name",
        "vuser",
        "-v",
        "sized:/v",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/v/blob",
        "bs=1024",
        "count=1024",
    ]);
    // A container whose writable layer holds 512 KiB.
    d.ok(&[
        "run",
        "--name",
        "writer",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/w.bin",
        "bs=1024",
        "count=512",
    ]);
    // An anonymous volume with 256 KiB, its container stopped.
    d.ok(&[
        "run",
        "--name",
        "anonw",
        "-v",
        "/anon",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/anon/a",
        "bs=1024",
        "count=256",
    ]);
    // A running container with a named volume: prune must leave both working.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "-v",
        "keepvol:/k",
        "busybox",
        "sleep",
        "1000",
    ]);
    d.ok(&["exec", "keep", "sh", "-c", "echo safe > /k/f"]);

    let usage = df(&d);
    let volumes = usage["Volumes"].as_array().cloned().unwrap_or_default();
    let find = |name: &str| {
        volumes
            .iter()
            .find(|v| v["Name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no volume {name} in {volumes:?}"))
    };
    let sized_dir = d.data_root().join("volumes/sized/_data");
    assert_eq!(file_bytes(&sized_dir), 1 << 20);
    assert_eq!(find("sized")["UsageData"]["Size"], 1 << 20);
    assert_eq!(find("sized")["UsageData"]["RefCount"], 1);
    assert_eq!(find("keepvol")["UsageData"]["RefCount"], 1);
    let anon = volumes
        .iter()
        .find(|v| v["Name"].as_str().is_some_and(|n| n.len() == 64))
        .cloned()
        .unwrap_or_else(|| panic!("no anonymous volume in {volumes:?}"));
    assert_eq!(anon["UsageData"]["Size"], 256 << 10);
    let containers = usage["Containers"].as_array().cloned().unwrap_or_default();
    let size_rw = |name: &str| -> u64 {
        containers
            .iter()
            .find(|c| c["Names"][0] == format!("/{name}"))
            .and_then(|c| c["SizeRw"].as_u64())
            .unwrap_or_else(|| panic!("no {name} in {containers:?}"))
    };
    let writer = json(&d.ok(&["inspect", "writer"]));
    let upper = PathBuf::from(
        writer[0]["GraphDriver"]["Data"]["UpperDir"]
            .as_str()
            .unwrap_or(""),
    );
    assert_eq!(size_rw("writer"), file_bytes(&upper));
    assert_eq!(size_rw("writer"), 512 << 10);
    // Images: one image, nothing shared; the layers' bytes are the image's.
    let image = &usage["Images"][0];
    assert_eq!(image["SharedSize"], 0);
    assert_eq!(image["Containers"], 4);
    assert!(usage["LayersSize"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(usage["BuildCache"], serde_json::json!([]));

    let summary = d.ok(&["system", "df"]);
    let local = summary
        .lines()
        .find(|l| l.starts_with("Local Volumes"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(local.split_whitespace().nth(2) == Some("3"), "{local}");
    let verbose = d.ok(&["system", "df", "-v"]);
    assert!(verbose.contains("Local Volumes space usage:"), "{verbose}");
    let sized_row = verbose
        .lines()
        .find(|l| l.starts_with("sized "))
        .unwrap_or_else(|| panic!("{verbose}"));
    assert!(sized_row.ends_with("1.049MB"), "{sized_row}");

    // system prune -a --volumes: the stopped containers' layers, the anonymous
    // volume; named volumes, the running container and its image stay.
    let expected = size_rw("writer") + size_rw("vuser") + size_rw("anonw") + (256 << 10);
    // What the engine keeps data in (the metadata database aside, whose journal
    // grows with any write).
    let used = || -> u64 {
        ["volumes", "snapshots", "containers", "content"]
            .iter()
            .map(|dir| file_bytes(&d.data_root().join(dir)))
            .sum()
    };
    let before = used();
    let out = d.ok(&["system", "prune", "-a", "--volumes", "-f"]);
    let after = used();
    let reported = out
        .lines()
        .find_map(|l| l.strip_prefix("Total reclaimed space: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(reported, human_size(expected), "{out}");
    assert!(
        before - after >= expected,
        "freed {} of {expected} reported",
        before - after
    );
    assert_eq!(
        lines(&d.ok(&["ps", "-a", "--format", "{{.Names}}"])),
        vec!["keep"]
    );
    assert_eq!(volume_names(&d), lines("keepvol\nsized\n"));
    assert_eq!(d.ok(&["exec", "keep", "cat", "/k/f"]), "safe\n");
    assert!(d.ok(&["images", "-q"]).trim().len() == 12);

    // Nothing left to free: each prune reports 0B.
    let out = d.ok(&["container", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space: 0B"), "{out}");
    let out = d.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("Total reclaimed space: 0B"), "{out}");
    d.ok(&["rm", "-f", "keep"]);
    // With its container gone, image prune -a frees the image's layers.
    let out = d.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    assert_eq!(d.ok(&["images", "-q"]), "");
}

/// go-units' HumanSize: decimal units, `%.4g`, as docker prints sizes.
fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut size = n as f64;
    let mut i = 0;
    while size >= 1000.0 && i < units.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    let int_digits = if size < 1.0 {
        1
    } else {
        size.log10().floor() as usize + 1
    };
    let mut s = format!("{:.*}", 4usize.saturating_sub(int_digits), size);
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}

#[test]
fn berth_cli_drives_volumes_and_housekeeping() {
    let d = Daemon::start();
    d.import_busybox("busybox:latest");
    assert_eq!(
        berth_ok(&d, &["volume", "create", "--label", "k=v", "bv"]),
        "bv\n"
    );
    assert_eq!(berth_ok(&d, &["volume", "ls", "-q"]), "bv\n");
    let v = json(&berth_ok(&d, &["volume", "inspect", "bv"]));
    assert_eq!(v[0]["Labels"]["k"], "v");
    berth_ok(
        &d,
        &[
            "run",
            "--rm",
            "-v",
            "bv:/data",
            "busybox",
            "sh",
            "-c",
            "echo berth > /data/f",
        ],
    );
    assert_eq!(
        berth_ok(
            &d,
            &[
                "run",
                "--rm",
                "--mount",
                "type=volume,source=bv,target=/d",
                "busybox",
                "cat",
                "/d/f"
            ]
        ),
        "berth\n"
    );
    let o = berth(&d, &["volume", "create", "bad/name"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("includes invalid characters"),
        "{}",
        stderr(&o)
    );
    let o = berth(
        &d,
        &[
            "run",
            "--mount",
            "type=bind,source=/nonexistent-berth-src,target=/x",
            "busybox",
            "true",
        ],
    );
    assert!(
        stderr(&o).contains("bind source path does not exist: /nonexistent-berth-src"),
        "{}",
        stderr(&o)
    );
    berth_ok(
        &d,
        &[
            "create", "--name", "holder", "-v", "bv:/data", "busybox", "true",
        ],
    );
    let o = berth(&d, &["volume", "rm", "bv"]);
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    let out = berth_ok(&d, &["system", "df"]);
    assert!(out.contains("Local Volumes"), "{out}");
    let out = berth_ok(&d, &["system", "df", "-v"]);
    assert!(
        out.contains("bv ") && out.contains("Local Volumes space usage:"),
        "{out}"
    );
    berth_ok(&d, &["rm", "holder"]);
    let out = berth_ok(&d, &["system", "prune", "-f", "--volumes"]);
    assert!(out.contains("Total reclaimed space:"), "{out}");
    // Named: --volumes leaves it (anonymous only); volume prune -a takes it.
    assert_eq!(berth_ok(&d, &["volume", "ls", "-q"]), "bv\n");
    let out = berth_ok(&d, &["volume", "prune", "-a", "-f"]);
    assert!(
        out.contains("bv") && out.contains("Total reclaimed space: 6B"),
        "{out}"
    );
    assert_eq!(berth_ok(&d, &["volume", "ls", "-q"]), "");
}

#[test]
fn volumes_survive_a_daemon_crash() {
    let mut d = Daemon::start();
    d.import_busybox("busybox:latest");
    d.ok(&["volume", "create", "--label", "a=b", "durable"]);
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "durable:/d",
        "busybox",
        "sh",
        "-c",
        "echo still > /d/f",
    ]);
    // What a crash between making a volume's directory and recording it leaves.
    let orphan = d.data_root().join("volumes/orphan/_data");
    std::fs::create_dir_all(&orphan).expect("mkdir");
    d.restart_daemon(true);
    assert_eq!(volume_names(&d), vec!["durable"]);
    assert!(!orphan.exists());
    let v = json(&d.ok(&["volume", "inspect", "durable"]));
    assert_eq!(v[0]["Labels"]["a"], "b");
    assert_eq!(
        d.ok(&["run", "--rm", "-v", "durable:/d", "busybox", "cat", "/d/f"]),
        "still\n"
    );
}
