//! The Engine API client: which daemon (host selection), which API version
//! (negotiated from `/_ping`), and Docker's way of reporting errors.

use std::io::{self, Read};
use std::path::PathBuf;

use serde_json::Value;

use crate::http::{self, Body, Response, Upgraded};

/// berthd's default socket. Docker's CLI defaults to /var/run/docker.sock; berth talks
/// to berthd unless told otherwise (`-H`, `BERTH_HOST`, `DOCKER_HOST`).
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// The newest Engine API version this client speaks.
pub const CLIENT_API_VERSION: (u32, u32) = (1, 50);

/// What went wrong, and so what the user sees and which exit code follows.
#[derive(Debug)]
pub enum CliError {
    /// The daemon's socket could not be reached.
    Connect { host: String },
    /// The daemon answered with an error status.
    Daemon { status: u16, message: String },
    /// Anything else: a message printed as is.
    Other(String),
    /// Exit silently with this code (the container's status, for example).
    Exit(i32),
}

impl CliError {
    pub fn other(msg: impl Into<String>) -> CliError {
        CliError::Other(msg.into())
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> CliError {
        CliError::Other(e.to_string())
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Connect { host } => {
                let socket = host.strip_prefix("unix://").unwrap_or(host);
                write!(
                    f,
                    "Cannot connect to the berth daemon at {host}. Is the daemon running? (start it with: berthd -H unix://{socket})"
                )
            }
            CliError::Daemon { message, .. } => write!(f, "Error response from daemon: {message}"),
            CliError::Other(m) => f.write_str(m),
            CliError::Exit(code) => write!(f, "exit status {code}"),
        }
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

#[derive(Clone)]
pub struct Client {
    host: String,
    socket: PathBuf,
    /// `/v1.NN`, decided on the first request.
    prefix: Option<String>,
    /// The Docker config directory (credentials for pull and push).
    pub config_dir: PathBuf,
}

impl Client {
    pub fn new(host: &str) -> Result<Client> {
        let socket = match host.strip_prefix("unix://") {
            Some(p) => PathBuf::from(p),
            None if host.starts_with('/') => PathBuf::from(host),
            None => {
                return Err(CliError::other(format!(
                    "unable to parse docker host `{host}`: berth speaks to unix sockets only (unix:///path)"
                )))
            }
        };
        Ok(Client {
            host: host.to_string(),
            socket,
            prefix: None,
            config_dir: PathBuf::new(),
        })
    }

    fn connect_error(&self, e: io::Error) -> CliError {
        match e.kind() {
            io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::PermissionDenied => CliError::Connect {
                host: self.host.clone(),
            },
            _ => CliError::Other(format!("error during connect: {e}")),
        }
    }

    /// Negotiates the API version once: min(ours, the daemon's `API-Version`).
    fn prefix(&mut self) -> Result<String> {
        if let Some(p) = &self.prefix {
            return Ok(p.clone());
        }
        let resp = http::request(&self.socket, "GET", "/_ping", &[], Body::Empty)
            .map_err(|e| self.connect_error(e))?;
        let server = resp.header("API-Version").and_then(parse_version);
        let version = match server {
            Some(v) if v < CLIENT_API_VERSION => v,
            _ => CLIENT_API_VERSION,
        };
        let p = format!("/v{}.{}", version.0, version.1);
        self.prefix = Some(p.clone());
        Ok(p)
    }

    pub fn api_version(&mut self) -> Result<String> {
        Ok(self.prefix()?.trim_start_matches("/v").to_string())
    }

    /// Sends a request; an error status becomes `CliError::Daemon`.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Response> {
        // The first request goes out at our own version, without a `/_ping` first
        // (one round trip less on every command); a daemon that is older says so
        // (400, "... is too new") before doing anything, and the request is sent again
        // at the version it supports. A streamed body cannot be sent twice: it waits
        // for the negotiation.
        let body = match (&self.prefix, body) {
            (None, Body::Empty) => match self.try_ours(method, path, headers, Body::Empty)? {
                Ok(resp) => return self.checked(resp),
                Err(()) => Body::Empty,
            },
            (None, Body::Bytes(b, t)) => {
                match self.try_ours(method, path, headers, Body::Bytes(b, t))? {
                    Ok(resp) => return self.checked(resp),
                    Err(()) => Body::Bytes(b, t),
                }
            }
            (_, body) => body,
        };
        let target = format!("{}{}", self.prefix()?, path);
        let resp = http::request(&self.socket, method, &target, headers, body)
            .map_err(|e| self.connect_error(e))?;
        self.checked(resp)
    }

    /// One request at our API version. `Err(())`: the daemon is older; negotiate.
    fn try_ours(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<std::result::Result<Response, ()>> {
        let ours = format!("/v{}.{}", CLIENT_API_VERSION.0, CLIENT_API_VERSION.1);
        let resp = http::request(
            &self.socket,
            method,
            &format!("{ours}{path}"),
            headers,
            body,
        )
        .map_err(|e| self.connect_error(e))?;
        if resp.status == 400 {
            let bytes = resp.bytes().unwrap_or_default();
            let message = error_message(&bytes);
            if message.contains("is too new") {
                return Ok(Err(()));
            }
            return Err(CliError::Daemon {
                status: 400,
                message,
            });
        }
        let version = match resp.header("API-Version").and_then(parse_version) {
            Some(v) if v < CLIENT_API_VERSION => v,
            _ => CLIENT_API_VERSION,
        };
        self.prefix = Some(format!("/v{}.{}", version.0, version.1));
        Ok(Ok(resp))
    }

    /// An error status becomes `CliError::Daemon`.
    fn checked(&self, resp: Response) -> Result<Response> {
        if resp.status >= 400 {
            let status = resp.status;
            let bytes = resp.bytes().unwrap_or_default();
            return Err(CliError::Daemon {
                status,
                message: error_message(&bytes),
            });
        }
        Ok(resp)
    }

    /// The body of a GET as the daemon sent it, and parsed.
    pub fn get_raw(&mut self, path: &str) -> Result<(Vec<u8>, Value)> {
        let bytes = self.send("GET", path, &[], Body::Empty)?.bytes()?;
        let v = serde_json::from_slice(&bytes)
            .map_err(|e| CliError::other(format!("cannot decode the daemon's answer: {e}")))?;
        Ok((bytes, v))
    }

    pub fn get_json(&mut self, path: &str) -> Result<Value> {
        let resp = self.send("GET", path, &[], Body::Empty)?;
        parse_json(resp)
    }

    pub fn post_json(&mut self, path: &str, body: Option<&Value>) -> Result<Value> {
        let text;
        let b = match body {
            Some(v) => {
                text = v.to_string();
                Body::Bytes(text.as_bytes(), "application/json")
            }
            None => Body::Empty,
        };
        let resp = self.send("POST", path, &[], b)?;
        parse_json(resp)
    }

    /// POST or DELETE whose answer body does not matter.
    pub fn call(&mut self, method: &str, path: &str) -> Result<()> {
        let mut resp = self.send(method, path, &[], Body::Empty)?;
        io::copy(&mut resp, &mut io::sink())?;
        Ok(())
    }

    /// Opens a hijacked connection (attach, exec start).
    pub fn upgrade(&mut self, path: &str, body: Option<&Value>) -> Result<Upgraded> {
        let text = body.map(|v| v.to_string()).unwrap_or_default();
        let b = if body.is_some() {
            Body::Bytes(text.as_bytes(), "application/json")
        } else {
            Body::Empty
        };
        let resp = self.send(
            "POST",
            path,
            &[("Connection", "Upgrade"), ("Upgrade", "tcp")],
            b,
        )?;
        if resp.status != 101 && resp.status != 200 {
            return Err(CliError::other(format!(
                "unexpected status {} on upgrade",
                resp.status
            )));
        }
        Ok(resp.into_upgraded()?)
    }
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The daemon's `{"message": …}`, or the body text when it is not JSON.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            return m.to_string();
        }
    }
    String::from_utf8_lossy(body).trim().to_string()
}

pub fn parse_json(resp: Response) -> Result<Value> {
    let bytes = resp.bytes()?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| CliError::other(format!("cannot decode the daemon's answer: {e}")))
}

/// Reads a stream of JSON messages (pull progress, events, load), one at a time.
pub struct JsonStream<R: Read> {
    inner: serde_json::StreamDeserializer<'static, serde_json::de::IoRead<R>, Value>,
}

impl<R: Read> JsonStream<R> {
    pub fn new(r: R) -> JsonStream<R> {
        JsonStream {
            inner: serde_json::Deserializer::from_reader(r).into_iter(),
        }
    }
}

impl<R: Read> Iterator for JsonStream<R> {
    type Item = Result<Value>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|r| {
            r.map_err(|e| CliError::other(format!("cannot decode the daemon's stream: {e}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.47"), Some((1, 47)));
        assert_eq!(parse_version("x"), None);
        assert!((1, 9) < (1, 50));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(br#"{"message":"No such container: x"}"#),
            "No such container: x"
        );
        assert_eq!(error_message(b"plain\n"), "plain");
    }
}
