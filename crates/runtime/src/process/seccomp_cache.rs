//! On-disk cache of compiled seccomp filters, keyed by the profile's content.
//!
//! Compiling Docker's default profile for three architectures costs libseccomp 5–20 ms
//! on these machines, on every container start; reading the cached program costs tens
//! of microseconds. An entry holds the exact profile it was compiled from and is used
//! only when that matches byte for byte, so a hash collision can cost a compile but
//! never load the wrong filter. The cache directory must be writable by root alone
//! (a filter written there by someone else would be loaded into containers): entries
//! are ignored unless the directory is ours and not writable by group or others.
//!
//! File layout: magic, flags (u64 LE), profile length (u64 LE), profile, BPF program.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;

use super::seccomp::{self, SeccompFilter};
use crate::error::{Result, RuntimeError};

const MAGIC: &[u8; 8] = b"BERTHSC1";
const HEADER_LEN: usize = MAGIC.len() + 16;

/// [`seccomp::compile`], through the cache in `dir` (created if missing). Cache read
/// or write failures fall back to compiling; only a bad profile is an error.
pub fn compile_cached(profile: &LinuxSeccomp, dir: &Path) -> Result<SeccompFilter> {
    let key = cache_key(profile)?;
    let path = dir.join(format!("{:016x}.bpf", fnv1a(&key)));
    if trusted_dir(dir) {
        if let Some(filter) = read_entry(&path, &key) {
            return Ok(filter);
        }
    }
    let filter = seccomp::compile(profile)?;
    let _ = write_entry(dir, &path, &key, &filter);
    Ok(filter)
}

/// What the program depends on: the profile, the libseccomp that compiles it and the
/// architecture it is native to.
fn cache_key(profile: &LinuxSeccomp) -> Result<Vec<u8>> {
    let version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut key = format!("{} libseccomp {version}\n", std::env::consts::ARCH).into_bytes();
    serde_json::to_writer(&mut key, profile)
        .map_err(|e| RuntimeError::Seccomp(format!("seccomp: serialize profile: {e}")))?;
    Ok(key)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn trusted_dir(dir: &Path) -> bool {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(dir)
        .map(|m| m.is_dir() && m.uid() == euid && m.mode() & 0o022 == 0)
        .unwrap_or(false)
}

fn read_entry(path: &Path, key: &[u8]) -> Option<SeccompFilter> {
    let data = std::fs::read(path).ok()?;
    let header = data.get(..HEADER_LEN)?;
    if &header[..8] != MAGIC {
        return None;
    }
    let flags = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let key_len = usize::try_from(u64::from_le_bytes(header[16..24].try_into().ok()?)).ok()?;
    let rest = &data[HEADER_LEN..];
    if rest.get(..key_len)? != key {
        return None;
    }
    SeccompFilter::from_bytes(&rest[key_len..], flags).ok()
}

fn write_entry(dir: &Path, path: &Path, key: &[u8], filter: &SeccompFilter) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&filter.flags().to_le_bytes())?;
        file.write_all(&(key.len() as u64).to_le_bytes())?;
        file.write_all(key)?;
        file.write_all(&filter.to_bytes())?;
        // No fsync: a torn entry after a crash fails the checks and is recompiled.
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};

    use super::*;

    fn profile(errno: u32) -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(vec!["getcwd".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(errno)
                .build()
                .unwrap()])
            .build()
            .unwrap()
    }

    fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn second_compile_is_served_from_the_cache() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("seccomp");
        let first = compile_cached(&profile(42), &dir).unwrap();
        let files = entries(&dir);
        assert_eq!(files.len(), 1, "{files:?}");
        let key = cache_key(&profile(42)).unwrap();
        let cached = read_entry(&files[0], &key).expect("entry readable");
        assert_eq!(cached.to_bytes(), first.to_bytes());
        let second = compile_cached(&profile(42), &dir).unwrap();
        assert_eq!(second.to_bytes(), first.to_bytes());
        // A different profile is another entry with another program.
        let other = compile_cached(&profile(43), &dir).unwrap();
        assert_ne!(other.to_bytes(), first.to_bytes());
        assert_eq!(entries(&dir).len(), 2);
    }

    #[test]
    fn entry_for_another_profile_or_damaged_is_not_used() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("seccomp");
        let wanted = compile_cached(&profile(42), &dir).unwrap();
        let path = entries(&dir).remove(0);
        // Same file name, but it holds the program of another profile.
        let other = seccomp::compile(&profile(7)).unwrap();
        write_entry(&dir, &path, &cache_key(&profile(7)).unwrap(), &other).unwrap();
        let got = compile_cached(&profile(42), &dir).unwrap();
        assert_eq!(got.to_bytes(), wanted.to_bytes());
        // Truncated entry.
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&path, &data[..data.len() - 3]).unwrap();
        let got = compile_cached(&profile(42), &dir).unwrap();
        assert_eq!(got.to_bytes(), wanted.to_bytes());
    }

    #[test]
    fn world_writable_directory_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("seccomp");
        let wanted = compile_cached(&profile(42), &dir).unwrap();
        let path = entries(&dir).remove(0);
        let other = seccomp::compile(&profile(7)).unwrap();
        // Forge an entry that claims to be for profile 42.
        write_entry(&dir, &path, &cache_key(&profile(42)).unwrap(), &other).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let got = compile_cached(&profile(42), &dir).unwrap();
        assert_eq!(got.to_bytes(), wanted.to_bytes());
    }
}
