//! The container log in Docker's json-file format: one JSON object per line
//! (`{"log":…,"stream":…,"time":…}`), byte-for-byte as dockerd's jsonfilelog writes
//! it, with its size-based rotation (`<log>.1`, `<log>.2`, …).
//!
//! Each entry is one write(2) of the whole line on an O_APPEND file: nothing is
//! held in user space, so an entry is on its way to disk before anyone can ask
//! for it, and a reader never sees half a line unless the disk is full.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::ShimError;
use crate::sys::rfc3339_nano;

/// A line longer than this is logged in pieces of this size, as Docker's log
/// copier does with its 16 KiB buffer.
pub const MAX_PARTIAL: usize = 16 * 1024;

pub struct JsonFileLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_files: u32,
    /// Scratch for one encoded entry, kept between entries.
    entry: Vec<u8>,
}

impl JsonFileLog {
    pub fn open(path: &Path, max_size: Option<u64>, max_files: u32) -> Result<Self, ShimError> {
        let file = open_log(path, false)?;
        let size = file
            .metadata()
            .map_err(|e| ShimError::io(format!("stat {}", path.display()), e))?
            .len();
        Ok(JsonFileLog {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files,
            entry: Vec::new(),
        })
    }

    /// Append one entry; `text` is the line with its newline, or a partial line.
    pub fn write_entry(
        &mut self,
        stream: &str,
        text: &[u8],
        time: SystemTime,
    ) -> Result<(), ShimError> {
        if self.max_size.is_some_and(|max| self.size >= max) {
            self.rotate()?;
        }
        self.entry.clear();
        encode_entry(&mut self.entry, stream, text, time);
        self.file
            .write_all(&self.entry)
            .map_err(|e| ShimError::io(format!("write {}", self.path.display()), e))?;
        self.size += self.entry.len() as u64;
        // A rare very long line should not keep its buffer for the container's life.
        if self.entry.capacity() > 4 * MAX_PARTIAL {
            self.entry = Vec::new();
        }
        Ok(())
    }

    /// As dockerd's LogFile.rotate: shift `<log>.N-1` → `<log>.N` …, `<log>` →
    /// `<log>.1`, start an empty `<log>`; with one file, just truncate it.
    fn rotate(&mut self) -> Result<(), ShimError> {
        if self.max_files >= 2 {
            let numbered = |n: u32| {
                let mut name = self.path.clone().into_os_string();
                name.push(format!(".{n}"));
                PathBuf::from(name)
            };
            for n in (2..self.max_files).rev() {
                match std::fs::rename(numbered(n - 1), numbered(n)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(ShimError::io(format!("rotate {}", self.path.display()), e))
                    }
                }
            }
            std::fs::rename(&self.path, numbered(1))
                .map_err(|e| ShimError::io(format!("rotate {}", self.path.display()), e))?;
        }
        self.file = open_log(&self.path, true)?;
        self.size = 0;
        Ok(())
    }
}

fn open_log(path: &Path, truncate: bool) -> Result<File, ShimError> {
    let mut options = OpenOptions::new();
    if truncate {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    options
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ShimError::io(format!("open log {}", path.display()), e))
}

/// `{"log":"…","stream":"…","time":"…"}\n`, escaped as dockerd escapes: `<`, `>`,
/// `&` and control characters as `\u00XX` (but `\n`, `\r` short), invalid UTF-8
/// as U+FFFD, and U+2028/U+2029 escaped.
pub fn encode_entry(out: &mut Vec<u8>, stream: &str, text: &[u8], time: SystemTime) {
    out.extend_from_slice(b"{\"log\":");
    escape_json_string(out, text);
    out.extend_from_slice(b",\"stream\":");
    escape_json_string(out, stream.as_bytes());
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(rfc3339_nano(time).as_bytes());
    out.extend_from_slice(b"\"}\n");
}

fn escape_json_string(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut rest = s;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(v) => (v, 0),
            Err(e) => {
                let (v, _) = rest.split_at(e.valid_up_to());
                // valid_up_to marks a UTF-8 prefix, so this cannot fail.
                let v = std::str::from_utf8(v).unwrap_or_default();
                (v, e.error_len().unwrap_or(rest.len() - e.valid_up_to()))
            }
        };
        for c in valid.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                    let b = c as u8;
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                _ => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        let consumed = valid.len();
        if bad > 0 {
            // Each invalid byte sequence becomes one replacement character, as Go's
            // utf8.DecodeRune consumes one byte of it at a time.
            for _ in 0..bad {
                out.extend_from_slice(b"\\ufffd");
            }
        }
        rest = &rest[consumed + bad..];
    }
    out.push(b'"');
}

/// Splits one output stream into log entries: each complete line, and a pending
/// partial line once it reaches [`MAX_PARTIAL`] bytes or the stream ends.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8])) {
        while let Some(pos) = data.iter().position(|b| *b == b'\n') {
            let (line, rest) = data.split_at(pos + 1);
            if self.partial.is_empty() {
                emit(line);
            } else {
                let room = MAX_PARTIAL - self.partial.len();
                if line.len() > room {
                    self.partial.extend_from_slice(&line[..room]);
                    emit(&self.partial);
                    self.partial.clear();
                    self.push(&line[room..], emit);
                } else {
                    self.partial.extend_from_slice(line);
                    emit(&self.partial);
                    self.partial.clear();
                }
            }
            data = rest;
        }
        while !data.is_empty() {
            let room = MAX_PARTIAL - self.partial.len();
            let take = room.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() == MAX_PARTIAL {
                emit(&self.partial);
                self.partial.clear();
            }
        }
        if self.partial.is_empty() && self.partial.capacity() > 0 {
            self.partial = Vec::new();
        }
    }

    /// The stream has ended: log what is left, without a newline.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
        }
        self.partial = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn entry(text: &[u8]) -> String {
        let mut out = Vec::new();
        encode_entry(
            &mut out,
            "stdout",
            text,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn docker_escaping() {
        assert_eq!(
            entry(b"hi \"there\"\t<&>\\\n"),
            "{\"log\":\"hi \\\"there\\\"\\u0009\\u003c\\u0026\\u003e\\\\\\n\",\"stream\":\"stdout\",\"time\":\"2023-11-14T22:13:20.123456789Z\"}\n"
        );
        assert_eq!(entry("é\u{2028}".as_bytes()), "{\"log\":\"é\\u2028\",\"stream\":\"stdout\",\"time\":\"2023-11-14T22:13:20.123456789Z\"}\n");
        assert!(entry(b"a\xffb\r").starts_with("{\"log\":\"a\\ufffdb\\r\""));
        // Every line decodes as JSON to the original text.
        let v: serde_json::Value = serde_json::from_str(&entry(b"x\x01y\n")).unwrap();
        assert_eq!(v["log"], "x\u{1}y\n");
    }

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut |l| out.push(l.to_vec()));
        }
        s.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_and_partials() {
        assert_eq!(
            split(&[b"a\nb", b"c\n", b"d"]),
            vec![b"a\n".to_vec(), b"bc\n".to_vec(), b"d".to_vec()]
        );
        let long = vec![b'x'; MAX_PARTIAL + 10];
        let mut with_nl = long.clone();
        with_nl.push(b'\n');
        let out = split(&[&with_nl[..100], &with_nl[100..]]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_PARTIAL);
        assert_eq!(out[1], b"xxxxxxxxxx\n".to_vec());
    }

    #[test]
    fn rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut log = JsonFileLog::open(&path, Some(100), 3).unwrap();
        for i in 0..10 {
            log.write_entry(
                "stdout",
                format!("line {i}\n").as_bytes(),
                SystemTime::now(),
            )
            .unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let numbered = |n| PathBuf::from(format!("{}.{n}", path.display()));
        assert!(read(&path).contains("line 9"));
        assert!(!read(&numbered(1)).is_empty());
        assert!(!read(&numbered(2)).is_empty());
        assert!(!numbered(3).exists());
        // Each file ends with a whole line.
        for p in [path.clone(), numbered(1), numbered(2)] {
            assert!(read(&p).ends_with("}\n"));
        }
        // One file: rotation truncates.
        let single = dir.path().join("one.log");
        let mut log = JsonFileLog::open(&single, Some(100), 1).unwrap();
        for i in 0..10 {
            log.write_entry(
                "stderr",
                format!("line {i}\n").as_bytes(),
                SystemTime::now(),
            )
            .unwrap();
        }
        assert!(read(&single).len() < 200);
        assert!(!PathBuf::from(format!("{}.1", single.display())).exists());
    }
}
