//! Docker's multiplexed stdio framing: each frame is an 8-byte header — stream type
//! (0 stdin, 1 stdout, 2 stderr), three zero bytes, a big-endian u32 length — then
//! the payload. Used by logs and by attach/exec when the container has no tty.

use std::io::{self, Read, Write};

/// Copies frames from `src` to stdout/stderr until the stream ends.
pub fn demux(mut src: impl Read, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
    let mut header = [0u8; 8];
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if !read_full_or_eof(&mut src, &mut header)? {
            return Ok(());
        }
        let mut left = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let dest: &mut dyn Write = match header[0] {
            2 => &mut *err,
            _ => &mut *out,
        };
        while left > 0 {
            let want = left.min(buf.len());
            let n = src.read(&mut buf[..want])?;
            if n == 0 {
                return Ok(());
            }
            dest.write_all(&buf[..n])?;
            left -= n;
        }
        dest.flush()?;
    }
}

/// Fills `buf`; false if the stream ended before its first byte.
fn read_full_or_eof(src: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame header",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Copies a raw (tty) stream to `out`, flushing as bytes come.
pub fn copy_raw(mut src: impl Read, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames() {
        let mut data = vec![1, 0, 0, 0, 0, 0, 0, 3];
        data.extend_from_slice(b"out");
        data.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        data.extend_from_slice(b"err!");
        let (mut o, mut e) = (Vec::new(), Vec::new());
        demux(&data[..], &mut o, &mut e).expect("demux");
        assert_eq!(o, b"out");
        assert_eq!(e, b"err!");
    }
}
