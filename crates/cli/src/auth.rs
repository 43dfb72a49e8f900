//! Registry credentials in Docker's config.json (`auths.<server>.auth` =
//! base64("user:password")), and the `X-Registry-Auth` header built from them.
//! Credential helpers (`credsStore`) are not consulted.

use serde_json::{json, Value};

use crate::client::{CliError, Result};
use crate::context::Store;

/// Docker Hub's key in `auths`.
pub const DEFAULT_SERVER: &str = "https://index.docker.io/v1/";

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding; `url` switches to the URL-safe alphabet.
pub fn base64(data: &[u8], url: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let c = ALPHABET[((n >> (18 - 6 * i)) & 63) as usize];
                out.push(match (url, c) {
                    (true, b'+') => '-',
                    (true, b'/') => '_',
                    _ => c as char,
                });
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The `auths` key of the registry a reference lives on.
pub fn server_of(reference: &str) -> String {
    let first = reference.split('/').next().unwrap_or("");
    if reference.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        if first == "docker.io" || first == "index.docker.io" {
            DEFAULT_SERVER.to_string()
        } else {
            first.to_string()
        }
    } else {
        DEFAULT_SERVER.to_string()
    }
}

fn config(store: &Store) -> Value {
    std::fs::read(store.dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}))
}

fn save(store: &Store, cfg: &Value) -> Result<()> {
    std::fs::create_dir_all(&store.dir)?;
    let path = store.dir.join("config.json");
    let tmp = store.dir.join("config.json.tmp");
    std::fs::write(&tmp, crate::commands::system::indent_json_tabs(cfg))?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

pub fn store_credentials(store: &Store, server: &str, user: &str, password: &str) -> Result<()> {
    let mut cfg = config(store);
    let Some(obj) = cfg.as_object_mut() else {
        return Err(CliError::other("config.json is not a JSON object"));
    };
    let auths = obj.entry("auths").or_insert_with(|| json!({}));
    if let Some(a) = auths.as_object_mut() {
        a.insert(
            server.to_string(),
            json!({"auth": base64(format!("{user}:{password}").as_bytes(), false)}),
        );
    }
    save(store, &cfg)
}

/// Removes a server's credentials; false if there were none.
pub fn remove_credentials(store: &Store, server: &str) -> Result<bool> {
    let mut cfg = config(store);
    let removed = cfg
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove(server))
        .is_some();
    if removed {
        save(store, &cfg)?;
    }
    Ok(removed)
}

/// `X-Registry-Auth` for a reference: base64url of Docker's AuthConfig JSON, or of
/// `{}` when nothing is stored.
pub fn registry_header(store: &Store, reference: &str) -> String {
    let server = server_of(reference);
    let cfg = config(store);
    let entry = cfg.pointer(&format!(
        "/auths/{}",
        server.replace('~', "~0").replace('/', "~1")
    ));
    let decoded = entry
        .and_then(|e| e.get("auth"))
        .and_then(Value::as_str)
        .and_then(unbase64)
        .and_then(|b| String::from_utf8(b).ok());
    // Docker's AuthConfig field order (a serde_json map would sort the keys).
    let q = |s: &str| Value::from(s).to_string();
    let body = match decoded.as_deref().and_then(|s| s.split_once(':')) {
        Some((user, password)) => format!(
            "{{\"username\":{},\"password\":{},\"serveraddress\":{}}}",
            q(user),
            q(password),
            q(&server)
        ),
        None => "{}".to_string(),
    };
    base64(body.as_bytes(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64(b"{}", false), "e30=");
        assert_eq!(base64(b"user:pass", false), "dXNlcjpwYXNz");
        assert_eq!(unbase64("dXNlcjpwYXNz").as_deref(), Some(&b"user:pass"[..]));
        assert_eq!(base64(&[0xfb, 0xff], true), "-_8=");
    }

    #[test]
    fn servers() {
        assert_eq!(server_of("busybox"), DEFAULT_SERVER);
        assert_eq!(server_of("me/app"), DEFAULT_SERVER);
        assert_eq!(server_of("localhost:5000/app"), "localhost:5000");
        assert_eq!(server_of("docker.io/library/x"), DEFAULT_SERVER);
    }

    #[test]
    fn credentials_in_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store {
            dir: dir.path().to_path_buf(),
        };
        std::fs::write(dir.path().join("config.json"), r#"{"currentContext":"x"}"#)
            .expect("seed config");
        store_credentials(&store, "reg.example:5000", "u", "p").expect("store");
        let header = registry_header(&store, "reg.example:5000/app:1");
        let json = String::from_utf8(unbase64(&header).expect("b64")).expect("utf-8");
        assert_eq!(
            json,
            r#"{"username":"u","password":"p","serveraddress":"reg.example:5000"}"#
        );
        let text = std::fs::read_to_string(dir.path().join("config.json")).expect("read");
        assert!(text.contains("currentContext"), "{text}");
        assert!(remove_credentials(&store, "reg.example:5000").expect("rm"));
        assert_eq!(registry_header(&store, "reg.example:5000/app"), "e30=");
    }
}
