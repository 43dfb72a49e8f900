//! The HTTP server: a unix socket listener, one task per connection, the version
//! prefix and `/_ping` handled here, everything else passed to the backend.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::error::ApiError;
use crate::version;

/// Request bodies above this are refused (413): JSON bodies of the API are small;
/// archives and image uploads are streamed by their own handlers.
pub const MAX_JSON_BODY: usize = 8 << 20;

/// A request as the backend sees it: version negotiated, path without the prefix.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    /// Every `key=value` pair in order (repeated keys: `changes`, `names`).
    pub query_pairs: Vec<(String, String)>,
    pub api_version: (u32, u32),
    /// Request headers, names lowercased (`x-registry-auth`).
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    /// The body, unbuffered, for the routes that take archives (import, load, copy
    /// into a container, build): read it from a blocking task.
    pub upload: std::sync::Mutex<Option<Upload>>,
}

/// A request body read as a blocking [`std::io::Read`], chunk by chunk as it arrives.
pub struct Upload {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
}

impl Upload {
    fn spawn(body: Incoming) -> Upload {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut body = body;
            loop {
                match body.frame().await {
                    None => break,
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            if tx.send(Ok(data)).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx
                            .send(Err(std::io::Error::other(format!(
                                "reading the request body: {e}"
                            ))))
                            .await;
                        break;
                    }
                }
            }
        });
        Upload {
            rx,
            current: Bytes::new(),
        }
    }

    /// An upload of bytes already in memory (tests, small bodies).
    pub fn from_bytes(data: Bytes) -> Upload {
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        Upload { rx, current: data }
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upload")
    }
}

impl std::io::Read for Upload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Routes whose body is an archive of any size, streamed rather than buffered.
fn streams_body(method: &str, path: &str, query: &HashMap<String, String>) -> bool {
    match method {
        "POST" => {
            path == "/images/load"
                || path == "/build"
                || (path == "/images/create" && query.get("fromSrc").is_some_and(|s| s == "-"))
        }
        "PUT" => path.starts_with("/containers/") && path.ends_with("/archive"),
        _ => false,
    }
}

impl Request {
    /// All values of a repeated query key.
    pub fn query_all(&self, key: &str) -> Vec<String> {
        self.query_pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Takes the streamed body (only once; routes that stream get one).
    pub fn take_upload(&self) -> Option<Upload> {
        self.upload.lock().ok().and_then(|mut u| u.take())
    }

    pub fn query_bool(&self, key: &str) -> bool {
        matches!(
            self.query.get(key).map(String::as_str),
            Some("1" | "true" | "True" | "yes")
        )
    }
}

/// A hijacked connection (attach, exec start): raw bytes both ways.
pub type Hijacked = TokioIo<hyper::upgrade::Upgraded>;

/// What runs on a hijacked connection.
pub type HijackHandler = Box<
    dyn FnOnce(Hijacked) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send,
>;

/// What a handler answers.
pub enum Response {
    Json(u16, serde_json::Value),
    /// JSON already written (from typed records, see [`Response::json_of`]).
    JsonText(u16, String),
    Text(u16, String),
    Empty(u16),
    /// A streamed body (logs, events, pull progress), chunk by chunk.
    Stream {
        status: u16,
        content_type: &'static str,
        body: tokio::sync::mpsc::Receiver<Bytes>,
    },
    /// A streamed (or, with no body, empty) answer with extra headers
    /// (`X-Docker-Container-Path-Stat` of `docker cp`).
    WithHeaders {
        status: u16,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    },
    /// Take over the connection (101 when the client asked for an upgrade).
    Hijack {
        content_type: &'static str,
        handler: HijackHandler,
    },
}

impl Response {
    /// A typed value written as JSON at once, without a `serde_json::Value` between.
    pub fn json_of<T: serde::Serialize>(status: u16, value: &T) -> Result<Response, ApiError> {
        serde_json::to_string(value)
            .map(|t| Response::JsonText(status, t))
            .map_err(|e| ApiError::internal(format!("encode the answer: {e}")))
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Response::Json(s, v) => write!(f, "Json({s}, {v})"),
            Response::JsonText(s, v) => write!(f, "JsonText({s}, {v})"),
            Response::Text(s, t) => write!(f, "Text({s}, {t:?})"),
            Response::Empty(s) => write!(f, "Empty({s})"),
            Response::Stream { status, .. } => write!(f, "Stream({status})"),
            Response::WithHeaders { status, .. } => write!(f, "WithHeaders({status})"),
            Response::Hijack { .. } => write!(f, "Hijack"),
        }
    }
}

/// The engine behind the API.
pub trait Backend: Send + Sync + 'static {
    /// `/version`'s body.
    fn version(&self) -> serde_json::Value;
    /// Everything but `/_ping` and `/version`.
    fn handle(
        &self,
        req: Request,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, ApiError>> + Send + '_>>;
}

/// Serve the API on a unix socket until the listener fails.
pub async fn serve_unix(path: &Path, backend: Arc<dyn Backend>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let backend = backend.clone();
                async move { Ok::<_, Infallible>(dispatch(backend, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    query_pairs(q).into_iter().collect()
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decode `%XX` and `+` as the Go server does for query strings.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;
type HttpResponse = hyper::Response<Body>;

fn full(body: Bytes) -> Body {
    Full::new(body).map_err(|never| match never {}).boxed()
}

fn respond(status: u16, content_type: Option<&str>, body: Bytes) -> HttpResponse {
    let mut builder = hyper::Response::builder()
        .status(status)
        .header("Api-Version", version::format(version::MAX_VERSION))
        .header(
            "Server",
            concat!("Berth/", env!("CARGO_PKG_VERSION"), " (linux)"),
        )
        .header("Docker-Experimental", "false")
        .header("Ostype", "linux");
    if let Some(ct) = content_type {
        builder = builder.header("Content-Type", ct);
    }
    builder
        .body(full(body))
        .unwrap_or_else(|_| hyper::Response::new(full(Bytes::new())))
}

fn error_response(e: &ApiError) -> HttpResponse {
    respond(e.status, Some("application/json"), Bytes::from(e.body()))
}

async fn dispatch(backend: Arc<dyn Backend>, mut req: hyper::Request<Incoming>) -> HttpResponse {
    let wants_upgrade = req
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"));
    let on_upgrade = hyper::upgrade::on(&mut req);
    let method = req.method().as_str().to_string();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect();
    let uri_path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let pairs = query_pairs(req.uri().query());
    let (asked, path) = version::split_path(&uri_path);
    let path = path.to_string();
    let api_version = match asked {
        Some(v) if v > version::MAX_VERSION => {
            return error_response(&ApiError::bad_request(format!(
                "client version {} is too new. Maximum supported API version is {}",
                version::format(v),
                version::format(version::MAX_VERSION)
            )))
        }
        Some(v) if v < version::MIN_VERSION => {
            return error_response(&ApiError::bad_request(format!(
                "client version {} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                version::format(v),
                version::format(version::MIN_VERSION)
            )))
        }
        Some(v) => v,
        None => version::MAX_VERSION,
    };
    if path == "/_ping" && (method == "GET" || method == "HEAD") {
        let mut r = respond(
            200,
            Some("text/plain; charset=utf-8"),
            Bytes::from_static(b"OK"),
        );
        let h = r.headers_mut();
        h.insert(
            "Cache-Control",
            hyper::header::HeaderValue::from_static("no-cache, no-store, must-revalidate"),
        );
        h.insert(
            "Pragma",
            hyper::header::HeaderValue::from_static("no-cache"),
        );
        if method == "HEAD" {
            *r.body_mut() = full(Bytes::new());
        }
        return r;
    }
    if path == "/version" && method == "GET" {
        return respond(
            200,
            Some("application/json"),
            Bytes::from(backend.version().to_string()),
        );
    }
    let (body, upload) = if streams_body(&method, &path, &query) {
        (Bytes::new(), Some(Upload::spawn(req.into_body())))
    } else {
        match Limited::new(req.into_body(), MAX_JSON_BODY).collect().await {
            Ok(b) => (b.to_bytes(), None),
            Err(_) => {
                return error_response(&ApiError::new(
                    413,
                    format!("request body too large (limit {MAX_JSON_BODY} bytes)"),
                ))
            }
        }
    };
    let request = Request {
        method,
        path,
        query,
        query_pairs: pairs,
        api_version,
        headers,
        body,
        upload: std::sync::Mutex::new(upload),
    };
    match backend.handle(request).await {
        Ok(Response::Json(status, v)) => {
            respond(status, Some("application/json"), Bytes::from(v.to_string()))
        }
        Ok(Response::JsonText(status, t)) => {
            respond(status, Some("application/json"), Bytes::from(t))
        }
        Ok(Response::Text(status, t)) => {
            respond(status, Some("text/plain; charset=utf-8"), Bytes::from(t))
        }
        Ok(Response::Empty(status)) => respond(status, None, Bytes::new()),
        Ok(Response::Stream {
            status,
            content_type,
            body,
        }) => {
            let stream = futures_stream(body);
            let mut r = respond(status, Some(content_type), Bytes::new());
            *r.body_mut() = stream.boxed();
            r
        }
        Ok(Response::WithHeaders {
            status,
            content_type,
            headers,
            body,
        }) => {
            let mut r = respond(status, Some(content_type), Bytes::new());
            for (name, value) in headers {
                if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
                    r.headers_mut().insert(name, v);
                }
            }
            if let Some(body) = body {
                *r.body_mut() = futures_stream(body).boxed();
            }
            r
        }
        Ok(Response::Hijack {
            content_type,
            handler,
        }) => {
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    handler(TokioIo::new(upgraded)).await;
                }
            });
            let status = if wants_upgrade { 101 } else { 200 };
            let mut r = respond(status, Some(content_type), Bytes::new());
            if wants_upgrade {
                let h = r.headers_mut();
                h.insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("Upgrade"),
                );
                h.insert(
                    hyper::header::UPGRADE,
                    hyper::header::HeaderValue::from_static("tcp"),
                );
            }
            r
        }
        Err(e) => error_response(&e),
    }
}

/// A streamed body: each chunk received is one data frame; the body ends when
/// every sender is dropped.
fn futures_stream(rx: tokio::sync::mpsc::Receiver<Bytes>) -> ChannelBody {
    ChannelBody { rx }
}

struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(Some(
            "all=1&filters=%7B%22name%22%3A%5B%22x%22%5D%7D&a+b=c%20d",
        ));
        assert_eq!(q.get("all").map(String::as_str), Some("1"));
        assert_eq!(
            q.get("filters").map(String::as_str),
            Some("{\"name\":[\"x\"]}")
        );
        assert_eq!(q.get("a b").map(String::as_str), Some("c d"));
        assert_eq!(percent_decode("100%"), "100%");
    }
}
