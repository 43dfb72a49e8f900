//! The `Images` facade: import of a rootfs tarball, container snapshots over it, and
//! removal with garbage collection.

use std::io::Cursor;

use berth_image::{Images, ImportOptions};
use tar::{Builder, Header};

fn rootfs_tar(gz: bool) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "bin/", std::io::empty()).unwrap();
    let data = b"#!/bin/sh\necho hi\n";
    let mut h = Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, "bin/hello", &data[..]).unwrap();
    let tar = b.into_inner().unwrap();
    if !gz {
        return tar;
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, &tar).unwrap();
    e.finish().unwrap()
}

#[test]
fn import_names_the_image_and_its_layer_is_unpacked() {
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let opts = ImportOptions {
        reference: Some("busybox".into()),
        ..Default::default()
    };
    let rec = images
        .import(&mut Cursor::new(rootfs_tar(true)), &opts)
        .unwrap();
    assert_eq!(rec.repo_tags, vec!["docker.io/library/busybox:latest"]);
    assert_eq!(rec.diff_ids.len(), 1);
    // The diff ID is the digest of the uncompressed tar.
    assert_eq!(rec.diff_ids[0], berth_image::Digest::of(&rootfs_tar(false)));
    assert_eq!(rec.chain_ids, rec.diff_ids);
    assert_eq!(images.resolve("busybox:latest").unwrap().id, rec.id);
    let layer = images.snapshots().layer_dir(&rec.chain_ids[0]);
    assert_eq!(
        std::fs::read(layer.join("bin/hello")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    let config = images.config(&rec.id).unwrap();
    assert_eq!(config.rootfs.diff_ids, rec.diff_ids);
    assert_eq!(config.os, "linux");
    assert!(rec.size > 0);
    // Survives a reopen.
    drop(images);
    let images = Images::open(dir.path()).unwrap();
    assert_eq!(images.resolve("busybox").unwrap().id, rec.id);
}

#[test]
fn import_of_garbage_leaves_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let mut bad = rootfs_tar(true);
    bad.truncate(bad.len() / 2);
    let err = images
        .import(&mut Cursor::new(bad), &ImportOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(images.list().is_empty());
    assert!(images.snapshots().layers().unwrap().is_empty());
    images.gc().unwrap();
    assert!(images.content().list().unwrap().is_empty());
}

#[test]
fn removing_the_image_collects_blobs_and_layers_not_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let images = Images::open(dir.path()).unwrap();
    let opts = ImportOptions {
        reference: Some("example.com/app:1".into()),
        ..Default::default()
    };
    let rec = images
        .import(&mut Cursor::new(rootfs_tar(false)), &opts)
        .unwrap();
    let mount = images.prepare_rootfs("c1", &rec.id).unwrap();
    assert_eq!(
        mount.lower_dirs,
        vec![images.snapshots().layer_dir(&rec.chain_ids[0])]
    );
    // Idempotent.
    images.prepare_rootfs("c1", &rec.id).unwrap();
    images
        .remove("example.com/app:1", false, &[], true)
        .unwrap();
    assert!(images.list().is_empty());
    // The container still holds its layer.
    assert_eq!(images.snapshots().layers().unwrap(), rec.chain_ids);
    images.snapshots().remove_container("c1").unwrap();
    images.gc().unwrap();
    assert!(images.snapshots().layers().unwrap().is_empty());
    assert!(images.content().list().unwrap().is_empty());
}
