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
    pub api_version: (u32, u32),
    pub body: Bytes,
}

impl Request {
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
    Text(u16, String),
    Empty(u16),
    /// A streamed body (logs, events, pull progress), chunk by chunk.
    Stream {
        status: u16,
        content_type: &'static str,
        body: tokio::sync::mpsc::Receiver<Bytes>,
    },
    /// Take over the connection (101 when the client asked for an upgrade).
    Hijack {
        content_type: &'static str,
        handler: HijackHandler,
    },
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Response::Json(s, v) => write!(f, "Json({s}, {v})"),
            Response::Text(s, t) => write!(f, "Text({s}, {t:?})"),
            Response::Empty(s) => write!(f, "Empty({s})"),
            Response::Stream { status, .. } => write!(f, "Stream({status})"),
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
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
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
    let uri_path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
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
    let body = match Limited::new(req.into_body(), MAX_JSON_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error_response(&ApiError::new(
                413,
                format!("request body too large (limit {MAX_JSON_BODY} bytes)"),
            ))
        }
    };
    let request = Request {
        method,
        path,
        query,
        api_version,
        body,
    };
    match backend.handle(request).await {
        Ok(Response::Json(status, v)) => {
            respond(status, Some("application/json"), Bytes::from(v.to_string()))
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
