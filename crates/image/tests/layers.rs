//! Layer unpacking, overlay snapshots and diffs, as root: every entry type, whiteouts
//! seen through a real overlay mount, hostile layers, a long layer chain, and a diff of
//! an upper dir round-tripped through unpack.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_image::layer::{
    changes, export, remove_partial, unpack_layer, write_diff, Change, ChangeKind, Compression,
    DevicePolicy, UnpackOptions,
};
use berth_image::snapshot::{OverlayMount, Snapshotter};
use berth_image::{Digest, ImageError};
use tar::{Builder, EntryType, Header};

fn opts() -> UnpackOptions {
    UnpackOptions::new("test/image:latest", "sha256:layer")
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Appends an entry with raw name and link bytes, bypassing the tar crate's own path
/// checks, as a hostile layer would.
fn raw_entry(b: &mut Builder<Vec<u8>>, kind: EntryType, name: &str, link: &str, data: &[u8]) {
    let mut h = header(kind, 0o644, data.len() as u64);
    {
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn file(b: &mut Builder<Vec<u8>>, name: &str, mode: u32, data: &[u8]) {
    let mut h = header(EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, name, data).unwrap();
}

fn dir(b: &mut Builder<Vec<u8>>, name: &str, mode: u32) {
    let mut h = header(EntryType::Directory, mode, 0);
    b.append_data(&mut h, name, std::io::empty()).unwrap();
}

fn pax(b: &mut Builder<Vec<u8>>, records: &[(&str, &[u8])]) {
    let mut body = Vec::new();
    for (k, v) in records {
        let rec_len = k.len() + v.len() + 3;
        let mut len = rec_len + rec_len.to_string().len();
        if len.to_string().len() != rec_len.to_string().len() {
            len += 1;
        }
        body.extend_from_slice(format!("{len} {k}=").as_bytes());
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    let mut h = header(EntryType::XHeader, 0o644, body.len() as u64);
    h.set_path("PaxHeader").unwrap();
    h.set_cksum();
    b.append(&h, body.as_slice()).unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn sha(data: &[u8]) -> Digest {
    Digest::of(data)
}

/// Every path below `root`, for "nothing was written outside the target" checks.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// The full layer of the round-trip test: every entry type tar can carry.
fn every_type_layer(sparse_src: &Path) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    dir(&mut b, "etc", 0o755);
    file(&mut b, "etc/hosts", 0o644, b"127.0.0.1 localhost\n");
    pax(
        &mut b,
        &[
            ("SCHILY.xattr.user.note", b"hello"),
            ("SCHILY.xattr.trusted.berth", b"t"),
            ("mtime", b"1600000000.25"),
            ("uid", b"3000000"),
        ],
    );
    file(&mut b, "bin/suid", 0o4755, b"#!/bin/sh\n");
    dir(&mut b, "tmp", 0o1777);
    let mut h = header(EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "etc/passwd-link", "/etc/passwd")
        .unwrap();
    let mut h = header(EntryType::Link, 0o644, 0);
    b.append_link(&mut h, "etc/hosts-hard", "etc/hosts")
        .unwrap();
    for (kind, name, major, minor) in [
        (EntryType::Char, "dev/null", 1, 3),
        (EntryType::Block, "dev/loop9", 7, 9),
        (EntryType::Fifo, "dev/fifo", 0, 0),
    ] {
        let mut h = header(kind, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    }
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    file(&mut b, &long, 0o600, b"long");
    // A symlink whose target climbs: allowed, it is resolved only inside a container.
    let mut h = header(EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "up", "../../../../etc").unwrap();
    // GNU sparse file written by the tar crate from a file with a hole.
    b.sparse(true);
    let mut h = header(EntryType::Regular, 0o644, 0);
    h.set_size(std::fs::metadata(sparse_src).unwrap().len());
    b.append_path_with_name(sparse_src, "sparse").unwrap();
    b.sparse(false);
    // Whiteouts and AUFS metadata.
    file(&mut b, ".wh.gone", 0o600, b"");
    dir(&mut b, "opq", 0o755);
    file(&mut b, "opq/.wh..wh..opq", 0o600, b"");
    file(&mut b, "opq/new", 0o644, b"new");
    dir(&mut b, ".wh..wh.plnk", 0o700);
    file(&mut b, ".wh..wh.plnk/123.456", 0o644, b"x");
    b.into_inner().unwrap()
}

fn overlay_is_whiteout(p: &Path) -> bool {
    let m = std::fs::symlink_metadata(p).unwrap();
    m.file_type().is_char_device() && m.rdev() == 0
}

#[test]
fn unpack_every_entry_type_then_overlay_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let sparse_src = tmp.path().join("sparse-src");
    {
        let f = std::fs::File::create(&sparse_src).unwrap();
        f.set_len(8 << 20).unwrap();
        let mut f = f;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(4 << 20)).unwrap();
        f.write_all(&[7u8; 4096]).unwrap();
    }
    let tar_bytes = every_type_layer(&sparse_src);
    let gz = gzip(&tar_bytes);

    let snaps = Snapshotter::open(tmp.path().join("snapshots")).unwrap();

    // Lower layer: what the whiteouts hide.
    let mut lower = Builder::new(Vec::new());
    file(&mut lower, "gone", 0o644, b"old");
    file(&mut lower, "opq/a", 0o644, b"a");
    file(&mut lower, "opq/b", 0o644, b"b");
    file(&mut lower, "kept", 0o644, b"kept");
    let lower = lower.into_inner().unwrap();
    let lower_diff = sha(&lower);
    let chain0 = lower_diff.clone();
    let prep = snaps.prepare_layer(&chain0).unwrap();
    let stats = unpack_layer(std::io::Cursor::new(lower), &prep.fs_dir(), &opts()).unwrap();
    assert_eq!(stats.compression, Compression::None);
    assert_eq!(stats.diff_id.as_ref(), Some(&lower_diff));
    assert!(snaps.commit_layer(prep).unwrap());

    let chain1 = Digest::of(b"chain1");
    let prep = snaps.prepare_layer(&chain1).unwrap();
    let mut o = opts();
    o.expected_diff_id = Some(sha(&tar_bytes));
    o.expected_digest = Some(sha(&gz));
    let stats = unpack_layer(std::io::Cursor::new(gz.clone()), &prep.fs_dir(), &o).unwrap();
    assert_eq!(stats.compression, Compression::Gzip);
    assert_eq!(stats.uncompressed_bytes, tar_bytes.len() as u64);
    assert_eq!(stats.compressed_bytes, gz.len() as u64);
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(stats.devices, 3);
    let fs = prep.fs_dir();

    // Files, modes, ownership, xattrs, times.
    assert_eq!(
        std::fs::read(fs.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    let suid = std::fs::metadata(fs.join("bin/suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!(suid.uid(), 3_000_000);
    assert_eq!(suid.mtime(), 1_600_000_000);
    assert_eq!(suid.mtime_nsec(), 250_000_000);
    assert_eq!(
        xattr(&fs.join("bin/suid"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        xattr(&fs.join("bin/suid"), "trusted.berth").as_deref(),
        Some(&b"t"[..])
    );
    assert_eq!(
        std::fs::metadata(fs.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    // Directory mtimes survive their contents being written.
    assert_eq!(
        std::fs::metadata(fs.join("etc")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(
        std::fs::read_link(fs.join("etc/passwd-link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        std::fs::read_link(fs.join("up")).unwrap(),
        Path::new("../../../../etc")
    );
    assert_eq!(
        std::fs::metadata(fs.join("etc/hosts-hard")).unwrap().ino(),
        std::fs::metadata(fs.join("etc/hosts")).unwrap().ino()
    );
    let null = std::fs::metadata(fs.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert!(std::fs::metadata(fs.join("dev/loop9"))
        .unwrap()
        .file_type()
        .is_block_device());
    assert!(std::fs::metadata(fs.join("dev/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let long = fs.join("d".repeat(120)).join("f".repeat(150));
    assert_eq!(std::fs::read(long).unwrap(), b"long");
    let sparse = std::fs::metadata(fs.join("sparse")).unwrap();
    assert_eq!(sparse.len(), 8 << 20);
    assert!(sparse.blocks() * 512 < 1 << 20, "holes stayed holes");
    let mut content = Vec::new();
    std::fs::File::open(fs.join("sparse"))
        .unwrap()
        .read_to_end(&mut content)
        .unwrap();
    assert_eq!(content, std::fs::read(&sparse_src).unwrap());
    // Whiteouts in overlay form; AUFS metadata skipped.
    assert!(overlay_is_whiteout(&fs.join("gone")));
    assert!(!fs.join(".wh.gone").exists());
    assert_eq!(
        xattr(&fs.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!fs.join("opq/.wh..wh..opq").exists());
    assert!(!fs.join(".wh..wh.plnk").exists());
    assert!(snaps.commit_layer(prep).unwrap());

    // A real overlay mount shows the deletion and the emptied directory.
    let mount = snaps
        .prepare_container("ctr1", &[chain0.clone(), chain1.clone()])
        .unwrap();
    assert_eq!(mount.lower_dirs[0], snaps.layer_dir(&chain1));
    let data = mount.graph_driver_data();
    assert!(data["LowerDir"].contains(chain0.hex()));
    assert!(data["UpperDir"].ends_with("ctr1/fs"));
    mount.mount(&mount.merged_dir).unwrap();
    let merged = mount.merged_dir.clone();
    let gone_visible = merged.join("gone").exists();
    let kept = std::fs::read(merged.join("kept")).ok();
    let seen: BTreeSet<String> = std::fs::read_dir(merged.join("opq"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    OverlayMount::unmount(&merged).unwrap();
    assert!(!gone_visible);
    assert_eq!(kept.as_deref(), Some(&b"kept"[..]));
    assert_eq!(seen, BTreeSet::from(["new".to_string()]));
    snaps.remove_container("ctr1").unwrap();
    assert!(snaps.usage("ctr1").is_err());
}

fn xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let k = std::ffi::CString::new(key).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and buffer.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// Unpacks a hostile layer into `<tmp>/target` next to `<tmp>/outside`; returns the
/// error and asserts nothing outside the target changed.
fn hostile(tar_bytes: Vec<u8>, o: &UnpackOptions) -> ImageError {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&target).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    let before: BTreeSet<_> = tree(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("target"))
        .collect();
    let err = unpack_layer(std::io::Cursor::new(tar_bytes), &target, o)
        .expect_err("hostile layer must be refused");
    let after: BTreeSet<_> = tree(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("target"))
        .collect();
    assert_eq!(before, after, "nothing outside the target: {err}");
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
    remove_partial(&target).unwrap();
    assert!(!target.exists());
    err
}

fn outside_path(name: &str) -> String {
    // hostile() puts `outside` beside `target`; the layer reaches it by `..`.
    format!("../outside/{name}")
}

#[test]
fn dotdot_entry_is_refused() {
    let mut b = Builder::new(Vec::new());
    raw_entry(&mut b, EntryType::Regular, &outside_path("pwned"), "", b"x");
    let err = hostile(b.into_inner().unwrap(), &opts());
    assert!(matches!(err, ImageError::UnsafeLayerEntry { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("test/image:latest") && msg.contains("sha256:layer"),
        "{msg}"
    );
    assert!(msg.contains("../outside/pwned"), "{msg}");
}

#[test]
fn absolute_path_lands_inside_target() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let mut b = Builder::new(Vec::new());
    raw_entry(&mut b, EntryType::Regular, "/berth-abs-test/file", "", b"x");
    unpack_layer(
        std::io::Cursor::new(b.into_inner().unwrap()),
        &target,
        &opts(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(target.join("berth-abs-test/file")).unwrap(),
        b"x"
    );
    assert!(!Path::new("/berth-abs-test").exists());
}

#[test]
fn write_through_layer_symlink_is_refused() {
    for link in ["../outside", "/etc"] {
        let mut b = Builder::new(Vec::new());
        let mut h = header(EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, "a", link).unwrap();
        raw_entry(&mut b, EntryType::Regular, "a/berth-pwned", "", b"x");
        let err = hostile(b.into_inner().unwrap(), &opts());
        assert!(matches!(err, ImageError::UnsafeLayerEntry { .. }), "{err}");
        assert!(!Path::new("/etc/berth-pwned").exists());
    }
    // Through a symlinked directory as the final component of a directory entry.
    let mut b = Builder::new(Vec::new());
    let mut h = header(EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "d", "/etc").unwrap();
    raw_entry(&mut b, EntryType::Directory, "d/berth-pwned-dir/", "", b"");
    let err = hostile(b.into_inner().unwrap(), &opts());
    assert!(matches!(err, ImageError::UnsafeLayerEntry { .. }), "{err}");
    assert!(!Path::new("/etc/berth-pwned-dir").exists());
}

#[test]
fn hardlink_outside_is_refused() {
    let mut b = Builder::new(Vec::new());
    raw_entry(
        &mut b,
        EntryType::Link,
        "stolen",
        &outside_path("secret"),
        b"",
    );
    let err = hostile(b.into_inner().unwrap(), &opts());
    assert!(matches!(err, ImageError::UnsafeLayerEntry { .. }), "{err}");

    // An absolute link name is cleaned to a path inside the target, where it does not
    // exist: refused rather than linked to the host's file.
    let mut b = Builder::new(Vec::new());
    raw_entry(&mut b, EntryType::Link, "passwd", "/etc/passwd", b"");
    let err = hostile(b.into_inner().unwrap(), &opts());
    assert!(err.to_string().contains("passwd"), "{err}");

    // Through a symlink of the layer.
    let mut b = Builder::new(Vec::new());
    let mut h = header(EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "s", "../outside").unwrap();
    raw_entry(&mut b, EntryType::Link, "stolen", "s/secret", b"");
    let err = hostile(b.into_inner().unwrap(), &opts());
    assert!(matches!(err, ImageError::UnsafeLayerEntry { .. }), "{err}");
}

#[test]
fn device_node_as_non_root_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut b = Builder::new(Vec::new());
    file(&mut b, "ok", 0o644, b"fine");
    let mut h = header(EntryType::Char, 0o666, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    b.append_data(&mut h, "dev/null", std::io::empty()).unwrap();
    let tar_bytes = b.into_inner().unwrap();

    let (mut rd, wr) = std::io::pipe().unwrap();
    // SAFETY: the child only drops privileges, runs the unpack and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut wr = wr;
        drop(rd);
        // SAFETY: plain syscalls in the child.
        let dropped = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setgid(65534) == 0
                && libc::setuid(65534) == 0
        };
        let msg = if !dropped {
            "could not drop privileges".to_string()
        } else {
            // Defaults as non-root: devices refused with a clear error.
            let o = opts();
            let default_err = unpack_layer(std::io::Cursor::new(tar_bytes.clone()), &target, &o)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            // Asking for devices anyway gives the same clear error.
            let mut o = opts();
            o.devices = DevicePolicy::Create;
            let create_err = unpack_layer(std::io::Cursor::new(tar_bytes.clone()), &target, &o)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            // Skipping them unpacks the rest.
            let mut o = opts();
            o.devices = DevicePolicy::Skip;
            let skipped = unpack_layer(std::io::Cursor::new(tar_bytes), &target, &o)
                .map(|s| s.skipped_devices)
                .unwrap_or(99);
            format!("{default_err}\n{create_err}\n{skipped}")
        };
        let _ = wr.write_all(msg.as_bytes());
        drop(wr);
        // SAFETY: end the forked child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    drop(wr);
    let mut out = String::new();
    rd.read_to_string(&mut out).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("dev/null") && lines[0].contains("device node"),
        "{out}"
    );
    assert!(lines[1].contains("non-root"), "{out}");
    assert_eq!(lines[2], "1", "{out}");
    assert!(!target.join("dev/null").exists());
    assert_eq!(std::fs::read(target.join("ok")).unwrap(), b"fine");
}

#[test]
fn truncated_gzip_is_a_clear_error() {
    let mut b = Builder::new(Vec::new());
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    file(&mut b, "big", 0o644, &data);
    let gz = gzip(&b.into_inner().unwrap());
    let err = hostile(gz[..gz.len() / 2].to_vec(), &opts());
    let msg = err.to_string();
    assert!(msg.contains("gzip") && msg.contains("truncated"), "{msg}");
}

#[test]
fn diff_id_and_digest_mismatch_are_refused() {
    let mut b = Builder::new(Vec::new());
    file(&mut b, "f", 0o644, b"content");
    let tar_bytes = b.into_inner().unwrap();
    let mut o = opts();
    o.expected_diff_id = Some(Digest::of(b"something else"));
    let err = hostile(gzip(&tar_bytes), &o);
    assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err}");
    let mut o = opts();
    o.expected_digest = Some(Digest::of(b"something else"));
    let err = hostile(tar_bytes, &o);
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
}

#[test]
fn decompression_bomb_is_stopped() {
    let mut b = Builder::new(Vec::new());
    let mut h = header(EntryType::Regular, 0o644, 64 << 20);
    b.append_data(&mut h, "zeros", std::io::repeat(0).take(64 << 20))
        .unwrap();
    let tar_bytes = b.into_inner().unwrap();
    let gz = gzip(&tar_bytes);
    assert!(gz.len() < 1 << 20);
    let mut o = opts();
    o.max_uncompressed_size = 4 << 20;
    let err = hostile(gz, &o);
    assert!(err.to_string().contains("limit of 4194304 bytes"), "{err}");
}

#[test]
fn zstd_layer_unpacks() {
    let mut b = Builder::new(Vec::new());
    file(&mut b, "z", 0o644, b"zstd");
    let tar_bytes = b.into_inner().unwrap();
    let z = zstd::encode_all(tar_bytes.as_slice(), 3).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let stats = unpack_layer(std::io::Cursor::new(z), tmp.path(), &opts()).unwrap();
    assert_eq!(stats.compression, Compression::Zstd);
    assert_eq!(stats.diff_id.unwrap(), sha(&tar_bytes));
    assert_eq!(std::fs::read(tmp.path().join("z")).unwrap(), b"zstd");
}

#[test]
fn long_layer_chain_mounts_through_short_links() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = tmp.path().join("x".repeat(100)).join("y".repeat(100));
    let snaps = Snapshotter::open(deep.join("snapshots")).unwrap();
    let mut chain = Vec::new();
    for i in 0..150u32 {
        let id = Digest::of(format!("chain {i}").as_bytes());
        let prep = snaps.prepare_layer(&id).unwrap();
        std::fs::write(prep.fs_dir().join(format!("layer{i}")), i.to_string()).unwrap();
        std::fs::write(prep.fs_dir().join("top"), i.to_string()).unwrap();
        assert!(snaps.commit_layer(prep).unwrap());
        chain.push(id);
    }
    let mount = snaps.prepare_container("long", &chain).unwrap();
    assert!(mount.options().len() > 4096);
    assert!(mount.short_options().len() < 4096);
    mount.mount(&mount.merged_dir).unwrap();
    let merged = mount.merged_dir.clone();
    let first = std::fs::read_to_string(merged.join("layer0"));
    let last = std::fs::read_to_string(merged.join("layer149"));
    let top = std::fs::read_to_string(merged.join("top"));
    std::fs::write(merged.join("written"), b"w").unwrap();
    OverlayMount::unmount(&merged).unwrap();
    assert_eq!(first.unwrap(), "0");
    assert_eq!(last.unwrap(), "149");
    assert_eq!(top.unwrap(), "149");
    assert_eq!(
        std::fs::read(mount.upper_dir.join("written")).unwrap(),
        b"w"
    );
    assert!(snaps.usage("long").unwrap().inodes >= 1);
    snaps.remove_container("long").unwrap();
    for id in &chain {
        snaps.remove_layer(id).unwrap();
    }
    assert!(snaps.layers().unwrap().is_empty());
}

#[test]
fn diff_of_upper_round_trips_through_unpack() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(tmp.path().join("snapshots")).unwrap();
    let mut b = Builder::new(Vec::new());
    dir(&mut b, "etc", 0o755);
    file(&mut b, "etc/hosts", 0o644, b"old hosts");
    file(&mut b, "etc/remove-me", 0o644, b"bye");
    dir(&mut b, "var", 0o755);
    file(&mut b, "var/a", 0o644, b"a");
    file(&mut b, "var/b", 0o644, b"b");
    let base = b.into_inner().unwrap();
    let base_id = sha(&base);
    let prep = snaps.prepare_layer(&base_id).unwrap();
    unpack_layer(std::io::Cursor::new(base), &prep.fs_dir(), &opts()).unwrap();
    snaps.commit_layer(prep).unwrap();

    let mount = snaps
        .prepare_container("c", std::slice::from_ref(&base_id))
        .unwrap();
    let m = mount.merged_dir.clone();
    mount.mount(&m).unwrap();
    let changed = (|| -> std::io::Result<()> {
        std::fs::write(m.join("etc/hosts"), b"new hosts")?;
        std::fs::remove_file(m.join("etc/remove-me"))?;
        std::fs::write(m.join("added"), b"added")?;
        std::fs::hard_link(m.join("added"), m.join("added-link"))?;
        std::os::unix::fs::symlink("/etc/hosts", m.join("sym"))?;
        // Removing a lower directory and making it again makes it opaque.
        std::fs::remove_dir_all(m.join("var"))?;
        std::fs::create_dir(m.join("var"))?;
        std::fs::write(m.join("var/c"), b"c")?;
        Ok(())
    })();
    OverlayMount::unmount(&m).unwrap();
    changed.unwrap();

    let list = changes(&mount.upper_dir, &mount.lower_dirs).unwrap();
    let want = [
        ("/added", ChangeKind::Added),
        ("/added-link", ChangeKind::Added),
        ("/etc", ChangeKind::Modified),
        ("/etc/hosts", ChangeKind::Modified),
        ("/etc/remove-me", ChangeKind::Deleted),
        ("/sym", ChangeKind::Added),
        ("/var", ChangeKind::Modified),
        ("/var/a", ChangeKind::Deleted),
        ("/var/b", ChangeKind::Deleted),
        ("/var/c", ChangeKind::Added),
    ];
    let want: Vec<Change> = want
        .iter()
        .map(|(p, k)| Change {
            path: p.to_string(),
            kind: *k,
        })
        .collect();
    assert_eq!(list, want);
    let json = serde_json::to_string(&list[0]).unwrap();
    assert_eq!(json, r#"{"Path":"/added","Kind":1}"#);

    // The upper dir as a layer tar, unpacked again as a layer over the same base.
    let diff_tar = write_diff(&mount.upper_dir, Vec::new()).unwrap();
    let names: BTreeSet<String> = tar::Archive::new(diff_tar.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains("etc/.wh.remove-me"), "{names:?}");
    assert!(names.contains("var/.wh..wh..opq"), "{names:?}");
    let diff_id = sha(&diff_tar);
    let top = Digest::of(b"committed");
    let prep = snaps.prepare_layer(&top).unwrap();
    let stats = unpack_layer(
        std::io::Cursor::new(gzip(&diff_tar)),
        &prep.fs_dir(),
        &opts(),
    )
    .unwrap();
    assert_eq!(stats.diff_id.unwrap(), diff_id);
    assert_eq!(stats.hardlinks, 1);
    snaps.commit_layer(prep).unwrap();
    snaps.remove_container("c").unwrap();

    let view = snaps.prepare_container("v", &[base_id, top]).unwrap();
    let v = view.merged_dir.clone();
    view.mount(&v).unwrap();
    let read = |p: &str| std::fs::read(v.join(p)).ok();
    let seen = (
        read("etc/hosts"),
        v.join("etc/remove-me").exists(),
        read("added"),
        std::fs::read_link(v.join("sym")).ok(),
        std::fs::read_dir(v.join("var"))
            .map(|d| d.count())
            .unwrap_or(0),
        read("var/c"),
    );
    // Exporting the merged view is `docker export`.
    let exported = export(&v, Vec::new());
    OverlayMount::unmount(&v).unwrap();
    assert_eq!(seen.0.as_deref(), Some(&b"new hosts"[..]));
    assert!(!seen.1);
    assert_eq!(seen.2.as_deref(), Some(&b"added"[..]));
    assert_eq!(seen.3.as_deref(), Some(Path::new("/etc/hosts")));
    assert_eq!(seen.4, 1);
    assert_eq!(seen.5.as_deref(), Some(&b"c"[..]));
    let exported = exported.unwrap();
    let names: BTreeSet<String> = tar::Archive::new(exported.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    for n in ["etc/hosts", "added", "var/c", "sym"] {
        assert!(names.contains(n), "{n} in {names:?}");
    }
    assert!(!names
        .iter()
        .any(|n| n.contains(".wh.") || n.contains("var/a")));
    snaps.remove_container("v").unwrap();
}

#[test]
fn container_snapshot_with_a_lost_chain_is_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(tmp.path().join("snapshots")).unwrap();
    let mut b = Builder::new(Vec::new());
    file(&mut b, "a", 0o644, b"a");
    let base = b.into_inner().unwrap();
    let base_id = sha(&base);
    let prep = snaps.prepare_layer(&base_id).unwrap();
    unpack_layer(std::io::Cursor::new(base), &prep.fs_dir(), &opts()).unwrap();
    snaps.commit_layer(prep).unwrap();
    let chain = std::slice::from_ref(&base_id);
    let first = snaps.prepare_container("c", chain).unwrap();
    std::fs::write(first.upper_dir.join("kept"), b"upper").unwrap();

    // What a power loss can leave of the chain file, written without an fsync.
    std::fs::write(tmp.path().join("snapshots/c/parent"), b"").unwrap();
    assert!(snaps.container_mount("c").is_err());
    assert!(snaps.prepare_container("c", chain).is_err());
    let repaired = snaps.repair_container("c", chain).unwrap();
    assert_eq!(repaired.lower_dirs, first.lower_dirs);
    assert_eq!(snaps.container_chain("c").unwrap(), chain.to_vec());
    assert_eq!(
        std::fs::read(repaired.upper_dir.join("kept")).unwrap(),
        b"upper"
    );
    // No snapshot, nothing to repair.
    assert!(snaps.repair_container("other", chain).is_err());
}
