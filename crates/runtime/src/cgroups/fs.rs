//! Reading and writing cgroup interface files, with errors that name the file.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::CgroupError;

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> CgroupError {
    CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `value` to `dir/file` in one write(2), as cgroup files expect.
pub(crate) fn write(dir: &Path, file: &str, value: impl AsRef<str>) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value.as_ref()).map_err(|e| io_error(&path, e))
}

pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))
}

/// The file's content, or `None` when the file does not exist.
pub(crate) fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&path, e)),
    }
}

pub(crate) fn parse_error(dir: &Path, file: &str, content: &str) -> CgroupError {
    CgroupError::Parse {
        path: dir.join(file),
        content: content.trim().to_string(),
    }
}

/// A single number; `max` reads as `u64::MAX` (runc's convention for "no limit").
pub(crate) fn parse_u64(dir: &Path, file: &str, content: &str) -> Result<u64, CgroupError> {
    let text = content.trim();
    if text == "max" {
        return Ok(u64::MAX);
    }
    text.parse().map_err(|_| parse_error(dir, file, content))
}

/// A single-number file; 0 when the file does not exist (a missing controller
/// feature is reported as zero usage, as runc does).
pub(crate) fn read_u64_or_zero(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    match read_optional(dir, file)? {
        Some(content) => parse_u64(dir, file, &content),
        None => Ok(0),
    }
}

/// A flat keyed file (`key value` per line), as `memory.stat` and `cpu.stat`.
pub(crate) fn read_keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
    let Some(content) = read_optional(dir, file)? else {
        return Ok(BTreeMap::new());
    };
    parse_keyed(&content).ok_or_else(|| parse_error(dir, file, &content))
}

pub(crate) fn parse_keyed(content: &str) -> Option<BTreeMap<String, u64>> {
    let mut map = BTreeMap::new();
    for line in content.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let key = fields.next()?;
        let value = fields.next()?;
        let value = if value == "max" {
            u64::MAX
        } else {
            value.parse().ok()?
        };
        map.insert(key.to_string(), value);
    }
    Some(map)
}

/// Every directory under `dir` (itself included), children before parents, so that
/// removing them in order never meets a non-empty directory.
pub(crate) fn dirs_leaf_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect_dirs(dir, &mut out);
    out
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
    if dir.is_dir() {
        out.push(dir.to_path_buf());
    }
}
