//! Content store and image store, through the public API: verified ingests, shared
//! fetches, crash leftovers, Docker's tag/untag/rmi/resolve rules, persistence, GC.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use berth_image::content::{ContentStore, FetchOutcome};
use berth_image::store::{DeleteItem, ImageRecord, ImageStore, ImageUser, LayerStore};
use berth_image::{Digest, ImageError, Result};

fn blobs_dir(root: &std::path::Path) -> std::path::PathBuf {
    root.join("blobs/sha256")
}

fn count(dir: &std::path::Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

#[test]
fn ingest_good_digest_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let data = vec![7u8; 300_000];
    let d = Digest::of(&data);
    let mut w = store.writer(Some(&d), Some(data.len() as u64)).unwrap();
    for chunk in data.chunks(1000) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.commit().unwrap(), d);
    assert_eq!(fs::read(store.path(&d)).unwrap(), data);
    assert_eq!(count(&dir.path().join("ingest")), 0);
}

#[test]
fn ingest_bad_digest_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let claimed = Digest::of(b"what the manifest says");
    let mut w = store.writer(Some(&claimed), None).unwrap();
    w.set_context("docker.io/library/busybox:latest");
    w.write_all(b"what the registry sent").unwrap();
    match w.commit() {
        Err(ImageError::DigestMismatch {
            image,
            digest,
            actual,
        }) => {
            assert_eq!(image, "docker.io/library/busybox:latest");
            assert_eq!(digest, claimed);
            assert_eq!(actual, Digest::of(b"what the registry sent"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&blobs_dir(dir.path())), 0);
    assert_eq!(count(&dir.path().join("ingest")), 0);
}

#[test]
fn ingest_bad_size_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let d = Digest::of(b"short");
    // Too short: the digest would not match either, but the size is checked first.
    let mut w = store.writer(Some(&d), Some(10)).unwrap();
    w.write_all(b"short").unwrap();
    assert!(matches!(
        w.commit(),
        Err(ImageError::SizeMismatch {
            expected: 10,
            actual: 5,
            ..
        })
    ));
    // Right digest, wrong announced size.
    let mut w = store.writer(Some(&d), Some(4)).unwrap();
    assert!(w.write_all(b"short").is_err());
    assert!(matches!(w.commit(), Err(ImageError::SizeMismatch { .. })));
    // Dropped without commit.
    let mut w = store.writer(Some(&d), None).unwrap();
    w.write_all(b"sho").unwrap();
    drop(w);
    assert_eq!(count(&blobs_dir(dir.path())), 0);
    assert_eq!(count(&dir.path().join("ingest")), 0);
    assert!(!store.exists(&d));
}

#[test]
fn read_blob_checks_what_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let d = store.write_blob(br#"{"a":1}"#).unwrap();
    fs::write(store.path(&d), br#"{"a":2}"#).unwrap();
    assert!(matches!(
        store.read_blob(&d, 1024),
        Err(ImageError::DigestMismatch { .. })
    ));
    let missing = Digest::of(b"missing");
    assert!(matches!(
        store.read_blob(&missing, 1024),
        Err(ImageError::BlobNotFound(_))
    ));
}

#[test]
fn leftovers_in_ingest_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let _ = ContentStore::open(dir.path()).unwrap();
    }
    let ingest = dir.path().join("ingest");
    fs::write(ingest.join("abc-123-0"), b"half a blob").unwrap();
    fs::create_dir(ingest.join("odd-dir")).unwrap();
    fs::write(ingest.join("odd-dir/x"), b"x").unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    assert_eq!(count(&ingest), 0);
    // A writer that is alive (here: this process) keeps its file.
    let mut live = store.writer(None, None).unwrap();
    live.write_all(b"in progress").unwrap();
    live.flush().unwrap();
    let again = ContentStore::open(dir.path()).unwrap();
    assert_eq!(count(&ingest), 1, "a live ingest was removed");
    let d = live.commit().unwrap();
    assert!(again.exists(&d));
    assert_eq!(count(&ingest), 0);
}

#[test]
fn concurrent_fetch_once_runs_fetch_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::of(&data);
    let runs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, d, data, runs, barrier, outcomes) = (
                store.clone(),
                d.clone(),
                data.clone(),
                runs.clone(),
                barrier.clone(),
                outcomes.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                let outcome = store
                    .fetch_once(&d, Some(data.len() as u64), "test", |w| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Slow enough that the others arrive while this one runs.
                        std::thread::sleep(Duration::from_millis(200));
                        for chunk in data.chunks(65536) {
                            w.write_all(chunk).map_err(|e| ImageError::io("test", e))?;
                        }
                        Ok(())
                    })
                    .unwrap();
                outcomes.lock().unwrap().push(outcome);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == FetchOutcome::Fetched)
            .count(),
        1
    );
    assert!(outcomes.iter().all(|o| matches!(
        o,
        FetchOutcome::Fetched | FetchOutcome::Shared | FetchOutcome::AlreadyExists
    )));
    assert_eq!(fs::read(store.path(&d)).unwrap(), data);
    // Once present, nothing runs.
    let outcome = store
        .fetch_once(&d, None, "test", |_| panic!("fetched twice"))
        .unwrap();
    assert_eq!(outcome, FetchOutcome::AlreadyExists);
}

#[test]
fn waiters_share_a_failed_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let d = Digest::of(b"real");
    let barrier = Arc::new(Barrier::new(4));
    let runs = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, d, barrier, runs) =
                (store.clone(), d.clone(), barrier.clone(), runs.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.fetch_once(&d, None, "img", |w| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    w.write_all(b"fake").map_err(|e| ImageError::io("test", e))
                })
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert!(matches!(r, Err(ImageError::DigestMismatch { .. })), "{r:?}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(count(&blobs_dir(dir.path())), 0);
    // A later attempt runs again.
    let r = store.fetch_once(&d, None, "img", |w| {
        w.write_all(b"real").map_err(|e| ImageError::io("test", e))
    });
    assert_eq!(r.unwrap(), FetchOutcome::Fetched);
}

// ---- image store ----

/// A layer store in memory.
#[derive(Default)]
struct FakeLayers(Mutex<BTreeSet<Digest>>);

impl LayerStore for FakeLayers {
    fn layers(&self) -> Result<Vec<Digest>> {
        Ok(self.0.lock().unwrap().iter().cloned().collect())
    }
    fn remove_layer(&self, chain_id: &Digest) -> Result<()> {
        self.0.lock().unwrap().remove(chain_id);
        Ok(())
    }
}

/// An image whose config, manifest and layers are real blobs in `content`.
fn make_image(
    content: &ContentStore,
    layers: &FakeLayers,
    seed: &str,
    shared_base: bool,
) -> ImageRecord {
    let base = content.write_blob(b"base layer").unwrap();
    let own = content
        .write_blob(format!("layer {seed}").as_bytes())
        .unwrap();
    let mut diff_ids = vec![Digest::of(format!("diff {seed}").as_bytes())];
    let mut layer_digests = vec![own];
    if shared_base {
        diff_ids.insert(0, Digest::of(b"diff base"));
        layer_digests.insert(0, base);
    }
    let config = content
        .write_blob(format!("config {seed}").as_bytes())
        .unwrap();
    let manifest = content
        .write_blob(format!("manifest {seed}").as_bytes())
        .unwrap();
    let mut record = ImageRecord::new(config, diff_ids);
    record.layer_digests = layer_digests;
    record.manifest_digests = vec![manifest];
    for chain in &record.chain_ids {
        layers.0.lock().unwrap().insert(chain.clone());
    }
    record
}

fn fresh() -> (tempfile::TempDir, ContentStore, FakeLayers, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let content = ContentStore::open(dir.path().join("content")).unwrap();
    let images = ImageStore::open(dir.path().join("image")).unwrap();
    (dir, content, FakeLayers::default(), images)
}

fn tags(images: &ImageStore, id: &Digest) -> Vec<String> {
    let mut t = images.get(id).unwrap().familiar_repo_tags();
    t.sort();
    t
}

#[test]
fn add_tag_resolve() {
    let (_dir, content, layers, images) = fresh();
    let mut a = make_image(&content, &layers, "a", true);
    let manifest = a.manifest_digests[0].clone();
    a.repo_tags = vec!["busybox".into()];
    a.repo_digests = vec![format!("busybox@{manifest}")];
    let a = images.add(a).unwrap();
    assert_eq!(a.repo_tags, vec!["docker.io/library/busybox:latest"]);
    assert_eq!(
        a.familiar_repo_digests(),
        vec![format!("busybox@{manifest}")]
    );

    // Names, full and short IDs, digests.
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        "index.docker.io/library/busybox",
        &a.id.to_string(),
        a.id.hex(),
        &a.id.hex()[..12],
        &a.id.hex()[..3],
        &format!("sha256:{}", &a.id.hex()[..12]),
        &format!("busybox@{manifest}"),
    ] {
        assert_eq!(images.resolve(name).unwrap().id, a.id, "{name}");
    }
    match images.resolve("busybox:1.36") {
        Err(ImageError::ImageNotFound(n)) => assert_eq!(n, "busybox:1.36"),
        other => panic!("{other:?}"),
    }
    match images.resolve("nothere") {
        Err(e) => assert_eq!(e.to_string(), "No such image: nothere:latest"),
        Ok(r) => panic!("{r:?}"),
    }
    assert!(matches!(
        images.resolve("Bad:Name"),
        Err(ImageError::InvalidReference { .. })
    ));

    // docker tag moves a tag from the image that had it.
    let b = images
        .add(make_image(&content, &layers, "b", true))
        .unwrap();
    images.tag(a.id.short(), "myapp:1").unwrap();
    assert_eq!(tags(&images, &a.id), vec!["busybox:latest", "myapp:1"]);
    images.tag("busybox", "localhost:5000/x").unwrap();
    images.tag(b.id.hex(), "busybox:latest").unwrap();
    assert_eq!(
        tags(&images, &a.id),
        vec!["localhost:5000/x:latest", "myapp:1"]
    );
    assert_eq!(tags(&images, &b.id), vec!["busybox:latest"]);
    assert!(images.tag("busybox", &format!("x@{manifest}")).is_err());
    assert!(images.tag("nothere", "x").is_err());

    // An ID prefix shared by two images is ambiguous: no such image.
    let common =
        a.id.hex()
            .chars()
            .zip(b.id.hex().chars())
            .take_while(|(x, y)| x == y)
            .count();
    assert!(images.resolve(&a.id.hex()[..common]).is_err() || common == 0);

    // untag removes the one name.
    assert_eq!(images.untag("myapp:1").unwrap(), a.id);
    assert!(images.untag("myapp:1").is_err());
    assert_eq!(tags(&images, &a.id), vec!["localhost:5000/x:latest"]);
}

#[test]
fn persistence_across_reopen() {
    let (dir, content, layers, images) = fresh();
    let mut a = make_image(&content, &layers, "a", false);
    a.repo_tags = vec!["app:v1".into(), "app:v2".into()];
    a.created = Some("2024-01-02T03:04:05Z".into());
    a.size = 1234;
    let a = images.add(a).unwrap();
    images.tag("app:v1", "other").unwrap();
    drop(images);
    // A replacement a crash left half-written is not read, and is removed.
    fs::write(dir.path().join("image/images.json.tmp-1-1"), b"{garbage").unwrap();
    let images = ImageStore::open(dir.path().join("image")).unwrap();
    assert_eq!(count(&dir.path().join("image")), 1);
    let got = images.get(&a.id).unwrap();
    assert_eq!(got.id, a.id);
    assert_eq!(got.size, 1234);
    assert_eq!(got.created.as_deref(), Some("2024-01-02T03:04:05Z"));
    assert_eq!(got.chain_ids, a.chain_ids);
    assert_eq!(
        tags(&images, &a.id),
        vec!["app:v1", "app:v2", "other:latest"]
    );
    images.remove("app:v2", false, &[]).unwrap();
    drop(images);
    let images = ImageStore::open(dir.path().join("image")).unwrap();
    assert_eq!(tags(&images, &a.id), vec!["app:v1", "other:latest"]);
}

#[test]
fn rmi_semantics() {
    let (_dir, content, layers, images) = fresh();
    let mut a = make_image(&content, &layers, "a", false);
    let manifest = a.manifest_digests[0].clone();
    a.repo_tags = vec!["app:v1".into(), "app:v2".into(), "other:x".into()];
    a.repo_digests = vec![format!("app@{manifest}")];
    let a = images.add(a).unwrap();

    // By tag with other tags left: only untags.
    assert_eq!(
        images.remove("app:v1", false, &[]).unwrap(),
        vec![DeleteItem::Untagged("app:v1".into())]
    );
    // By ID with names in two repositories: needs force.
    let err = images.remove(a.id.short(), false, &[]).unwrap_err();
    assert!(matches!(err, ImageError::Conflict(_)), "{err}");
    assert!(
        err.to_string()
            .contains("(must be forced) - image is referenced in multiple repositories"),
        "{err}"
    );
    // The last tag of a repository takes that repository's digests with it.
    assert_eq!(
        images.remove("app:v2", false, &[]).unwrap(),
        vec![
            DeleteItem::Untagged("app:v2".into()),
            DeleteItem::Untagged(format!("app@{manifest}")),
        ]
    );
    // The last name of an image in use by a container: refused without force.
    let stopped = ImageUser {
        container_id: "0123456789abcdef0123".into(),
        image_id: a.id.clone(),
        running: false,
    };
    let err = images
        .remove("other:x", false, std::slice::from_ref(&stopped))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unable to remove repository reference \"other:x\" (must force) - container 0123456789ab"),
        "{err}"
    );
    // The last name, no users: untag and delete.
    assert_eq!(
        images.remove("other:x", false, &[]).unwrap(),
        vec![
            DeleteItem::Untagged("other:x".into()),
            DeleteItem::Deleted(a.id.clone())
        ]
    );
    assert!(images.get(&a.id).is_none());

    // By ID, one repository: names go with it; a stopped user needs force, a running
    // one cannot be forced.
    let mut b = make_image(&content, &layers, "b", false);
    b.repo_tags = vec!["b:1".into()];
    let b = images.add(b).unwrap();
    let users = [ImageUser {
        image_id: b.id.clone(),
        ..stopped.clone()
    }];
    let err = images.remove(b.id.hex(), false, &users).unwrap_err();
    assert!(
        err.to_string()
            .contains("must be forced) - image is being used by stopped container"),
        "{err}"
    );
    let running = [ImageUser {
        running: true,
        ..users[0].clone()
    }];
    let err = images.remove(b.id.hex(), true, &running).unwrap_err();
    assert!(
        err.to_string()
            .contains("(cannot be forced) - image is being used by running container"),
        "{err}"
    );
    assert_eq!(tags(&images, &b.id), vec!["b:1"]);
    assert_eq!(
        images.remove(b.id.hex(), true, &users).unwrap(),
        vec![
            DeleteItem::Untagged("b:1".into()),
            DeleteItem::Deleted(b.id.clone())
        ]
    );

    // Force by ID across repositories removes every name.
    let mut c = make_image(&content, &layers, "c", false);
    c.repo_tags = vec!["c:1".into(), "d:1".into()];
    let c = images.add(c).unwrap();
    let items = images.remove(&c.id.to_string(), true, &[]).unwrap();
    assert_eq!(items.last(), Some(&DeleteItem::Deleted(c.id.clone())));
    assert_eq!(items.len(), 3);

    // A parent cannot go while a child names it.
    let p = images
        .add(make_image(&content, &layers, "p", false))
        .unwrap();
    let mut child = make_image(&content, &layers, "child", false);
    child.parent = Some(p.id.clone());
    let child = images.add(child).unwrap();
    let err = images.remove(p.id.hex(), true, &[]).unwrap_err();
    assert!(
        err.to_string().contains("image has dependent child images"),
        "{err}"
    );
    images.remove(child.id.hex(), false, &[]).unwrap();
    images.remove(p.id.hex(), false, &[]).unwrap();
    assert!(images.list().is_empty());
}

#[test]
fn gc_removes_exactly_the_unreferenced() {
    let (_dir, content, layers, images) = fresh();
    let mut a = make_image(&content, &layers, "a", true);
    a.repo_tags = vec!["a".into()];
    let a = images.add(a).unwrap();
    let mut b = make_image(&content, &layers, "b", true);
    b.repo_tags = vec!["b".into()];
    let b = images.add(b).unwrap();
    // A dangling blob and a layer nobody uses, one used only by a container, and one
    // leased by a pull in progress.
    let stray = content.write_blob(b"stray").unwrap();
    let stray_layer = Digest::of(b"stray layer");
    let container_layer = Digest::of(b"container layer");
    let leased_blob = content.write_blob(b"being pulled").unwrap();
    let leased_layer = Digest::of(b"being unpacked");
    for l in [&stray_layer, &container_layer, &leased_layer] {
        layers.0.lock().unwrap().insert(l.clone());
    }
    let mut lease = content.lease();
    lease.protect(&leased_blob);
    lease.protect(&leased_layer);
    let in_use: HashSet<Digest> = [container_layer.clone()].into();

    let report = images.gc(&content, &layers, &in_use).unwrap();
    assert_eq!(report.removed_blobs, vec![stray.clone()]);
    assert_eq!(report.removed_layers, vec![stray_layer.clone()]);
    assert_eq!(report.reclaimed, 5);

    // Removing b frees its own blobs and top layer, not the shared base.
    images.remove("b", false, &[]).unwrap();
    drop(lease);
    let report = images.gc(&content, &layers, &HashSet::new()).unwrap();
    let mut expected_blobs: Vec<Digest> = b
        .manifest_digests
        .iter()
        .chain([&b.id, &b.layer_digests[1], &leased_blob])
        .cloned()
        .collect();
    expected_blobs.sort();
    let mut got = report.removed_blobs.clone();
    got.sort();
    assert_eq!(got, expected_blobs);
    let mut expected_layers = vec![b.chain_ids[1].clone(), container_layer, leased_layer];
    expected_layers.sort();
    let mut got = report.removed_layers.clone();
    got.sort();
    assert_eq!(got, expected_layers);
    assert_eq!(b.chain_ids[0], a.chain_ids[0]);

    // What is left is exactly a's.
    let mut left = content.list().unwrap();
    left.sort();
    let mut want: Vec<Digest> = a
        .manifest_digests
        .iter()
        .chain(&a.layer_digests)
        .chain([&a.id])
        .cloned()
        .collect();
    want.sort();
    assert_eq!(left, want);
    assert_eq!(layers.layers().unwrap(), {
        let mut c = a.chain_ids.clone();
        c.sort();
        c
    });
    // Nothing more to do.
    assert_eq!(
        images.gc(&content, &layers, &HashSet::new()).unwrap(),
        Default::default()
    );
}

#[test]
fn gc_with_the_real_snapshotter() {
    let dir = tempfile::tempdir().unwrap();
    let content = ContentStore::open(dir.path().join("content")).unwrap();
    let images = ImageStore::open(dir.path().join("image")).unwrap();
    let snapshots = berth_image::snapshot::Snapshotter::open(dir.path().join("snapshots")).unwrap();
    let keep = Digest::of(b"keep");
    let drop_me = Digest::of(b"drop");
    for chain in [&keep, &drop_me] {
        let prepared = snapshots.prepare_layer(chain).unwrap();
        fs::write(prepared.fs_dir().join("file"), b"x").unwrap();
        snapshots.commit_layer(prepared).unwrap();
    }
    let config = content.write_blob(b"config").unwrap();
    let mut record = ImageRecord::new(config, vec![keep.clone()]);
    record.repo_tags = vec!["keep".into()];
    images.add(record).unwrap();
    let report = images.gc(&content, &snapshots, &HashSet::new()).unwrap();
    assert_eq!(report.removed_layers, vec![drop_me.clone()]);
    assert!(snapshots.has_layer(&keep));
    assert!(!snapshots.has_layer(&drop_me));
}
