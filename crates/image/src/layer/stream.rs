//! The reading side of an unpack: compression detection by magic bytes, the
//! decompressor, the diff-ID hash and the size bound, stacked into one `Read` that the
//! tar parser consumes. Failures of the stream itself (truncated gzip, bomb bound) are
//! recorded in [`StreamState`] so that they are reported as what they are even when
//! the tar parser wraps the I/O error in its own.

use std::cell::RefCell;
use std::io::{self, Cursor, Read};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::digest::{Hasher, HashingReader};

/// The compression of a layer blob.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of the blob; `media_type` is only a
    /// hint for what the bytes cannot tell (the bytes win when they disagree, as a
    /// registry that mislabels a blob is more common than a tar starting with a magic).
    pub fn detect(head: &[u8], media_type: Option<&str>) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            return Compression::Gzip;
        }
        if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Compression::Zstd;
        }
        match media_type {
            // A zstd label without zstd magic: let the decoder report the bad stream.
            Some(mt) if !head.is_empty() && (mt.ends_with("+zstd") || mt.ends_with(".zstd")) => {
                Compression::Zstd
            }
            _ => Compression::None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Stream failures and timings, shared between the reader stack and the unpacker.
#[derive(Default)]
pub(crate) struct StreamState {
    /// The decompressor's own error, e.g. "unexpected end of file".
    pub decode_error: Option<String>,
    /// Set when the uncompressed stream passed the bound.
    pub limit_exceeded: bool,
    pub decompress_time: Duration,
    pub hash_time: Duration,
}

/// Decompressed bytes → hash + count + bound, timing each stage.
pub(crate) struct StageReader {
    inner: Box<dyn Read>,
    pub hasher: Hasher,
    limit: u64,
    state: Rc<RefCell<StreamState>>,
}

impl Read for StageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = Instant::now();
        let result = self.inner.read(buf);
        let mid = Instant::now();
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                self.state.borrow_mut().decode_error = Some(e.to_string());
                return Err(e);
            }
        };
        self.hasher.update(&buf[..n]);
        let mut state = self.state.borrow_mut();
        state.decompress_time += mid - start;
        state.hash_time += mid.elapsed();
        if self.hasher.len() > self.limit {
            state.limit_exceeded = true;
            return Err(io::Error::other("uncompressed size limit exceeded"));
        }
        Ok(n)
    }
}

/// The compressed side, kept so its digest and byte count can be read at the end.
pub(crate) type Source<R> = Rc<RefCell<HashingReader<R>>>;

struct SharedSource<R>(Source<R>);

impl<R: Read> Read for SharedSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// Builds the reader stack over `source`. Returns the detected compression and the
/// stage reader whose output is the uncompressed tar.
pub(crate) fn open<R: Read + 'static>(
    source: Source<R>,
    media_type: Option<&str>,
    limit: u64,
    state: Rc<RefCell<StreamState>>,
) -> io::Result<(Compression, StageReader)> {
    let mut head = Vec::with_capacity(4);
    let mut shared = SharedSource(source);
    // A short first read must not hide a magic, so read until 4 bytes or EOF.
    (&mut shared).take(4).read_to_end(&mut head)?;
    let compression = Compression::detect(&head, media_type);
    let joined = Cursor::new(head).chain(shared);
    let inner: Box<dyn Read> = match compression {
        Compression::None => Box::new(joined),
        // Multi-member gzip is valid (pigz, concatenated streams); Go's reader, which
        // Docker uses, accepts it too.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(256 << 10, joined),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(joined)?),
    };
    Ok((
        compression,
        StageReader {
            inner,
            hasher: Hasher::new(),
            limit,
            state,
        },
    ))
}
