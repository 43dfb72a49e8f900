//! A small blocking HTTP/1.1 client over a unix socket.
//!
//! Why not hyper: the CLI must start and answer in about a millisecond, and an async
//! runtime costs more than the whole request. The Engine API needs only a few things
//! from HTTP, all here: one request per connection, Content-Length and chunked response
//! bodies read as a stream, request bodies streamed from any reader (chunked), and the
//! connection upgrade ("hijack") that attach and exec use for a raw duplex stream.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// A request body: nothing, bytes in memory, or a stream sent with chunked encoding.
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8], &'a str),
    Stream(&'a mut dyn Read, &'a str),
}

/// Status line and headers of a response, and the reader of its body.
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: BodyReader,
}

enum Framing {
    Length(u64),
    Chunked { left_in_chunk: u64, done: bool },
    UntilClose,
}

struct BodyReader {
    conn: BufReader<UnixStream>,
    framing: Framing,
}

/// A hijacked connection: the daemon's side of the container's stdio, raw.
pub struct Upgraded {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
}

/// Writes all of `buf` to a socket without raising SIGPIPE: berth lets SIGPIPE kill
/// it when its stdout is closed (as Go programs do), but a daemon that hangs up must
/// be an error, not a silent death.
pub fn send_all(stream: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        // SAFETY: the pointer and length describe the live slice `buf`; the fd is
        // owned by `stream`, which outlives the call.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Sends one request and reads the status line and headers of the answer.
pub fn request(
    socket: &Path,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> io::Result<Response> {
    let stream = UnixStream::connect(socket)?;
    let writer = stream.try_clone()?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: berth-cli\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &body {
        Body::Empty => {
            if method == "POST" || method == "PUT" {
                head.push_str("Content-Length: 0\r\n");
            }
        }
        Body::Bytes(b, ct) => {
            head.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        Body::Stream(_, ct) => {
            head.push_str(&format!(
                "Content-Type: {ct}\r\nTransfer-Encoding: chunked\r\n"
            ));
        }
    }
    head.push_str("\r\n");
    match body {
        Body::Empty => send_all(&writer, head.as_bytes())?,
        Body::Bytes(b, _) => {
            let mut all = head.into_bytes();
            all.extend_from_slice(b);
            send_all(&writer, &all)?;
        }
        Body::Stream(reader, _) => {
            send_all(&writer, head.as_bytes())?;
            send_chunked(reader, &writer)?;
        }
    }
    read_response(stream, method == "HEAD")
}

fn send_chunked(reader: &mut dyn Read, writer: &UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut chunk = format!("{n:x}\r\n").into_bytes();
        chunk.extend_from_slice(&buf[..n]);
        chunk.extend_from_slice(b"\r\n");
        send_all(writer, &chunk)?;
    }
    send_all(writer, b"0\r\n\r\n")
}

fn read_line(conn: &mut BufReader<UnixStream>) -> io::Result<String> {
    let mut line = Vec::new();
    conn.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection",
        ));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("a header line is not UTF-8"))
}

fn read_response(stream: UnixStream, head_only: bool) -> io::Result<Response> {
    let mut conn = BufReader::with_capacity(64 * 1024, stream);
    let status_line = read_line(&mut conn)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("not an HTTP answer: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line: {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut conn)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let framing = if head_only || status == 204 || status == 304 || status == 101 {
        Framing::Length(0)
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked {
            left_in_chunk: 0,
            done: false,
        }
    } else if let Some(len) = find("content-length") {
        Framing::Length(
            len.parse()
                .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?,
        )
    } else {
        Framing::UntilClose
    };
    Ok(Response {
        status,
        headers,
        body: BodyReader { conn, framing },
    })
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The whole body (for JSON answers, which are small).
    pub fn bytes(mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to_end(&mut out)?;
        Ok(out)
    }

    /// The raw connection after a 101 Switching Protocols (or a 200 from daemons that
    /// answer attach without upgrading): whatever was buffered past the headers comes first.
    pub fn into_upgraded(self) -> io::Result<Upgraded> {
        let writer = self.body.conn.get_ref().try_clone()?;
        Ok(Upgraded {
            reader: self.body.conn,
            writer,
        })
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

impl BodyReader {
    fn chunk_size(&mut self) -> io::Result<u64> {
        let line = read_line(&mut self.conn)?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        u64::from_str_radix(hex, 16).map_err(|_| invalid(format!("bad chunk size {line:?}")))
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.framing {
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.conn.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the daemon closed the connection mid-body",
                    ));
                }
                self.framing = Framing::Length(left - n as u64);
                Ok(n)
            }
            Framing::UntilClose => self.conn.read(buf),
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked {
                left_in_chunk,
                done: false,
            } => {
                let mut left = left_in_chunk;
                if left == 0 {
                    left = self.chunk_size()?;
                    if left == 0 {
                        // Trailers, then the blank line.
                        while !read_line(&mut self.conn)?.is_empty() {}
                        self.framing = Framing::Chunked {
                            left_in_chunk: 0,
                            done: true,
                        };
                        return Ok(0);
                    }
                }
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.conn.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the daemon closed the connection mid-chunk",
                    ));
                }
                left -= n as u64;
                if left == 0 {
                    let mut crlf = [0u8; 2];
                    self.conn.read_exact(&mut crlf)?;
                }
                self.framing = Framing::Chunked {
                    left_in_chunk: left,
                    done: false,
                };
                Ok(n)
            }
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Escapes a name used as a path segment as Go's url.URL does: `:` and `@` pass
/// (`busybox:latest`, `x@sha256:…`), and so does `/` (`me/app:1`).
pub fn encode_path(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b':'
            | b'@'
            | b'/'
            | b'+'
            | b'='
            | b',' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Builds `?k=v&k2=v2` from pairs (empty when there are none).
pub fn query(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    fn serve_once(answer: &'static [u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer);
            }
        });
        (dir, path)
    }

    #[test]
    fn reads_chunked_body() {
        let (_d, p) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nApi-Version: 1.47\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        );
        let r = request(&p, "GET", "/x", &[], Body::Empty).expect("request");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("API-Version"), Some("1.47"));
        assert_eq!(r.bytes().expect("body"), b"hello world");
    }

    #[test]
    fn reads_length_body() {
        let (_d, p) = serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef");
        let r = request(&p, "GET", "/x", &[], Body::Empty).expect("request");
        assert_eq!(r.status, 404);
        assert_eq!(r.bytes().expect("body"), b"abc");
    }

    #[test]
    fn encodes_query() {
        assert_eq!(
            query(&[("a", "x y".into()), ("f", "{\"a\":1}".into())]),
            "?a=x%20y&f=%7B%22a%22%3A1%7D"
        );
    }
}
