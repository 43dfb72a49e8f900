//! What a container leaves behind: nothing once it is removed (`run --rm`, `rm -f`),
//! its overlay mounted `volatile` only when it goes at its exit, and files without a
//! record (a crash during a removal) swept at berthd's next start.

mod harness;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness::Daemon;

/// Every place a container keeps something, by its full ID.
fn traces(d: &Daemon, id: &str) -> Vec<PathBuf> {
    let mut paths = vec![
        d.data_root().join("containers").join(id),
        d.data_root().join("snapshots").join(id),
        d.exec_root().join("containers").join(id),
        d.exec_root().join("runtime").join(id),
    ];
    for h in ["memory", "pids", "freezer", "cpu", "unified"] {
        paths.push(
            PathBuf::from("/sys/fs/cgroup")
                .join(h)
                .join(&d.cgroup_parent)
                .join(id),
        );
    }
    paths.into_iter().filter(|p| p.exists()).collect()
}

/// The files go just after the record: wait (briefly) until they have.
fn wait_gone(d: &Daemon, id: &str) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = traces(d, id);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The mount options of the overlay on `dir`, from our mount table.
fn mount_options(dir: &std::path::Path) -> Option<String> {
    let table = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dir = dir.to_str()?;
    table
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(dir))
        .map(str::to_string)
}

#[test]
fn removed_containers_leave_nothing_and_rm_overlays_are_volatile() {
    let d = Daemon::start();
    d.import_busybox("busybox:latest");

    // --rm: an overlay that is never synced, and nothing left after the exit.
    let id = d
        .ok(&["run", "-d", "--rm", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let merged = d.data_root().join("snapshots").join(&id).join("merged");
    let line = mount_options(&merged).expect("the --rm container's overlay is mounted");
    assert!(line.contains("volatile"), "{line}");
    d.ok(&["kill", &id]);
    assert_eq!(wait_gone(&d, &id), Vec::<PathBuf>::new());
    let ps = d.ok(&["ps", "-aq", "--no-trunc"]);
    assert!(!ps.contains(&id), "{ps}");

    // Without --rm: a plain overlay; rm -f takes everything with it.
    let id = d
        .ok(&["run", "-d", "--name", "kept", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let merged = d.data_root().join("snapshots").join(&id).join("merged");
    let line = mount_options(&merged).expect("the container's overlay is mounted");
    assert!(!line.contains("volatile"), "{line}");
    d.ok(&["rm", "-f", "kept"]);
    // `docker rm` answers after the files are gone, not before.
    assert_eq!(traces(&d, &id), Vec::<PathBuf>::new());
    assert!(mount_options(&merged).is_none());

    // Run --rm again and again under one name: it is free as soon as the CLI is back.
    for _ in 0..5 {
        let out = d.docker(&["run", "--rm", "--name", "again", "busybox", "true"]);
        assert!(out.status.success(), "{}", harness::stderr(&out));
    }
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = loop {
        let left: Vec<_> = ["containers", "snapshots"]
            .iter()
            .flat_map(|sub| fs::read_dir(d.data_root().join(sub)).into_iter().flatten())
            .chain(
                fs::read_dir(d.exec_root().join("containers"))
                    .into_iter()
                    .flatten(),
            )
            .flatten()
            // The image's layers live beside the containers' snapshots.
            .filter(|e| !e.path().join("link").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(left, Vec::<String>::new());
}

#[test]
fn files_without_a_record_are_swept_at_start() {
    let mut d = Daemon::start();
    d.import_busybox("busybox:latest");
    let kept = d
        .ok(&["create", "--name", "kept", "busybox", "echo", "still here"])
        .trim()
        .to_string();
    // What a crash between the store's removal and the files' leaves.
    let orphan = "0123456789abcdef".repeat(4);
    let dirs = [
        d.data_root().join("containers").join(&orphan),
        d.exec_root().join("containers").join(&orphan),
        d.data_root().join("snapshots").join(&orphan).join("fs"),
    ];
    for dir in &dirs {
        fs::create_dir_all(dir).expect("make an orphan dir");
        fs::write(dir.join("file"), b"left over").expect("write an orphan file");
    }
    fs::write(
        d.data_root().join("snapshots").join(&orphan).join("parent"),
        b"[]",
    )
    .expect("write the orphan's chain");
    // Not a container ID: not ours to remove.
    let other = d.data_root().join("containers").join("not-an-id");
    fs::create_dir_all(&other).expect("make a stranger dir");

    d.restart_daemon(false);
    for dir in &dirs {
        assert!(!dir.exists(), "{} survived the start", dir.display());
    }
    assert!(!d.data_root().join("snapshots").join(&orphan).exists());
    assert!(other.exists());
    // The container with a record is untouched and still runs.
    assert!(d.data_root().join("containers").join(&kept).exists());
    let out = d.docker(&["start", "-a", "kept"]);
    assert!(out.status.success(), "{}", harness::stderr(&out));
    assert_eq!(harness::text(&out).trim(), "still here");
}
