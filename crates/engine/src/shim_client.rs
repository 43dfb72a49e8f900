//! The engine's side of the berth-shim protocol: one JSON request line, one JSON
//! response line, then (for attach and exec) the connection is the stream.
//! Blocking calls: the engine runs them on blocking threads.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("shim of container {id} is not reachable at {path}: {source}")]
    Unreachable {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shim of container {id}: {message}")]
    Protocol { id: String, message: String },
    #[error("{0}")]
    Refused(String),
}

/// The container's state as the shim reports it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ShimState {
    pub pid: i32,
    pub running: bool,
    pub exit_code: Option<i32>,
    pub exited_at: Option<String>,
    #[serde(default)]
    pub oom_killed: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ExecState {
    pub pid: i32,
    pub running: bool,
    pub exit_code: Option<i32>,
}

/// Connects to a unix socket whatever the length of its path: a path over the
/// 108-byte `sun_path` limit (a deep exec-root) is reached through its directory,
/// opened and named as `/proc/self/fd/N/<socket>`.
pub fn connect(path: &Path) -> std::io::Result<UnixStream> {
    use std::os::fd::AsRawFd;
    if path.as_os_str().len() < 100 {
        return UnixStream::connect(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return UnixStream::connect(path);
    };
    let dir = std::fs::File::open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    UnixStream::connect(short)
}

pub struct ShimClient {
    id: String,
    socket: PathBuf,
}

impl ShimClient {
    pub fn new(id: &str, state_dir: &Path) -> Self {
        ShimClient {
            id: id.to_string(),
            socket: state_dir.join("shim.sock"),
        }
    }

    fn unreachable(&self, source: std::io::Error) -> ShimError {
        ShimError::Unreachable {
            id: self.id.clone(),
            path: self.socket.clone(),
            source,
        }
    }

    /// Send one request; return the response line and the connection.
    fn call(
        &self,
        request: &Value,
        timeout: Option<Duration>,
    ) -> Result<(Value, UnixStream), ShimError> {
        let mut stream = connect(&self.socket).map_err(|e| self.unreachable(e))?;
        stream
            .set_read_timeout(timeout)
            .map_err(|e| self.unreachable(e))?;
        let mut line = request.to_string();
        line.push('\n');
        stream
            .write_all(line.as_bytes())
            .map_err(|e| self.unreachable(e))?;
        // Read the response line byte by byte: anything after it belongs to the stream.
        let mut reader =
            BufReader::with_capacity(1, stream.try_clone().map_err(|e| self.unreachable(e))?);
        let mut response = String::new();
        reader
            .read_line(&mut response)
            .map_err(|e| self.unreachable(e))?;
        if response.is_empty() {
            return Err(ShimError::Protocol {
                id: self.id.clone(),
                message: "connection closed before a response".into(),
            });
        }
        let value: Value = serde_json::from_str(&response).map_err(|e| ShimError::Protocol {
            id: self.id.clone(),
            message: format!("bad response {response:?}: {e}"),
        })?;
        if let Some(err) = value.get("error").and_then(Value::as_str) {
            return Err(ShimError::Refused(err.to_string()));
        }
        stream
            .set_read_timeout(None)
            .map_err(|e| self.unreachable(e))?;
        Ok((value, stream))
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, v: Value) -> Result<T, ShimError> {
        serde_json::from_value(v).map_err(|e| ShimError::Protocol {
            id: self.id.clone(),
            message: e.to_string(),
        })
    }

    pub fn state(&self) -> Result<ShimState, ShimError> {
        let (v, _) = self.call(&json!({"op": "state"}), Some(Duration::from_secs(5)))?;
        self.parse(v)
    }

    /// Blocks until the container exits.
    pub fn wait(&self) -> Result<ShimState, ShimError> {
        let (v, _) = self.call(&json!({"op": "wait"}), None)?;
        self.parse(v)
    }

    pub fn kill(&self, signal: i32, all: bool) -> Result<(), ShimError> {
        self.call(
            &json!({"op": "kill", "signal": signal, "all": all}),
            Some(Duration::from_secs(5)),
        )?;
        Ok(())
    }

    pub fn resize(&self, height: u16, width: u16, exec_id: Option<&str>) -> Result<(), ShimError> {
        let mut req = json!({"op": "resize", "height": height, "width": width});
        if let Some(e) = exec_id {
            req["exec_id"] = json!(e);
        }
        self.call(&req, Some(Duration::from_secs(5)))?;
        Ok(())
    }

    /// After this, the stream carries the container's output (framed unless tty) and
    /// takes its stdin.
    pub fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> Result<UnixStream, ShimError> {
        let (_, stream) = self.call(
            &json!({"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}),
            Some(Duration::from_secs(5)),
        )?;
        Ok(stream)
    }

    pub fn exec(
        &self,
        exec_id: &str,
        process: &Value,
        tty: bool,
        stdin: bool,
    ) -> Result<(i32, UnixStream), ShimError> {
        let (v, stream) = self.call(
            &json!({"op": "exec", "exec_id": exec_id, "process": process, "tty": tty, "stdin": stdin}),
            Some(Duration::from_secs(30)),
        )?;
        let pid = v.get("pid").and_then(Value::as_i64).unwrap_or(0) as i32;
        Ok((pid, stream))
    }

    pub fn exec_state(&self, exec_id: &str) -> Result<ExecState, ShimError> {
        let (v, _) = self.call(
            &json!({"op": "exec_state", "exec_id": exec_id}),
            Some(Duration::from_secs(5)),
        )?;
        self.parse(v)
    }
}

/// The exit record a shim leaves in its state dir when the container has exited
/// (read when the shim is gone, e.g. after a daemon restart).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub exited_at: String,
    #[serde(default)]
    pub oom_killed: bool,
}

pub fn read_exit_record(state_dir: &Path) -> Option<ExitRecord> {
    let data = std::fs::read(state_dir.join("exit")).ok()?;
    serde_json::from_slice(&data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn request_response_and_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = UnixListener::bind(dir.path().join("shim.sock")).expect("bind");
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut conn, _) = listener.accept().expect("accept");
                let mut line = String::new();
                BufReader::new(conn.try_clone().expect("clone"))
                    .read_line(&mut line)
                    .expect("read");
                let req: Value = serde_json::from_str(&line).expect("json");
                match req["op"].as_str() {
                    Some("state") => {
                        conn.write_all(b"{\"pid\":42,\"running\":true,\"exit_code\":null,\"exited_at\":null}\n")
                            .expect("write");
                    }
                    Some("attach") => {
                        conn.write_all(b"{\"ok\":true}\n\x01\x00\x00\x00\x00\x00\x00\x02hi")
                            .expect("write");
                    }
                    _ => conn.write_all(b"{\"error\":\"nope\"}\n").expect("write"),
                }
            }
        });
        let client = ShimClient::new("c1", dir.path());
        let st = client.state().expect("state");
        assert_eq!((st.pid, st.running), (42, true));
        let mut stream = client.attach(false, true, true).expect("attach");
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut buf).expect("read");
        assert_eq!(buf, b"\x01\x00\x00\x00\x00\x00\x00\x02hi");
        server.join().expect("server");
        assert!(matches!(client.state(), Err(ShimError::Unreachable { .. })));
    }
}
