//! `docker commit` at library level: a container snapshot's upper dir becomes the top
//! layer of a new image over its parent.

use std::io::Cursor;

use berth_image::commit::CommitOptions;
use berth_image::model::ContainerConfig;
use berth_image::{Images, ImportOptions};

fn rootfs() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = b"base\n";
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, "base.txt", &data[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn commit_adds_the_upper_dir_as_a_layer_with_history_and_parent() {
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let base = images
        .import(
            &mut Cursor::new(rootfs()),
            &ImportOptions {
                reference: Some("base:1".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let mount = images.prepare_rootfs("c1", &base.id).unwrap();
    std::fs::create_dir_all(mount.upper_dir.join("etc")).unwrap();
    std::fs::write(mount.upper_dir.join("etc/added"), b"by the container\n").unwrap();

    let config = ContainerConfig {
        cmd: Some(vec!["/bin/sh".into()]),
        ..Default::default()
    };
    let committed = images
        .commit(
            "c1",
            &base.id,
            &CommitOptions {
                reference: Some("derived:v2".into()),
                config: Some(config),
                comment: Some("a message".into()),
                author: Some("someone".into()),
                created_by: Some("/bin/sh -c touch".into()),
            },
        )
        .unwrap();
    assert_eq!(committed.parent.as_ref(), Some(&base.id));
    assert_eq!(committed.diff_ids.len(), 2);
    assert_eq!(committed.diff_ids[0], base.diff_ids[0]);
    assert_eq!(committed.repo_tags, vec!["docker.io/library/derived:v2"]);
    let top = images.snapshots().layer_dir(&committed.chain_ids[1]);
    assert_eq!(
        std::fs::read(top.join("etc/added")).unwrap(),
        b"by the container\n"
    );
    let config = images.config(&committed.id).unwrap();
    assert_eq!(config.history.len(), 2);
    assert_eq!(config.history[1].comment.as_deref(), Some("a message"));
    assert_eq!(config.author.as_deref(), Some("someone"));
    assert_eq!(
        config.config.unwrap().cmd,
        Some(vec!["/bin/sh".to_string()])
    );

    // The child saves with both layers and loads with the same ID.
    let mut tar = Vec::new();
    images.save(&["derived:v2".into()], &mut tar).unwrap();
    let other = tempfile::tempdir().unwrap();
    let fresh = Images::open(other.path()).unwrap();
    let loaded = fresh.load(&mut Cursor::new(tar)).unwrap();
    assert_eq!(loaded[0].id, committed.id);
}
