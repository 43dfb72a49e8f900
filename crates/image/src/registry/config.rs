//! What the engine tells the registry client about registries: which ones speak plain
//! HTTP (`insecure-registries`), which mirrors stand in for Docker Hub
//! (`registry-mirrors`), and the credentials of a Docker `config.json`.
//! Nothing here touches the network except the host lookup Docker also does to match an
//! insecure CIDR.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use crate::error::{ImageError, Result};

/// Docker Hub's name as references carry it after normalisation.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's Distribution API is really served.
pub const DOCKER_HUB_ORIGIN: &str = "registry-1.docker.io";
/// The key under which `docker login` stores Docker Hub credentials.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// User name and password (or a personal access token used as password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Keep passwords out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An address block of `insecure-registries`, e.g. `127.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let network: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Registry settings of one engine instance.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    insecure_hosts: Vec<String>,
    insecure_cidrs: Vec<Cidr>,
    mirrors: Vec<String>,
    credentials: HashMap<String, Credentials>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_hosts: Vec::new(),
            // dockerd always treats loopback registries as insecure.
            insecure_cidrs: vec![Cidr {
                network: IpAddr::from([127, 0, 0, 0]),
                prefix: 8,
            }],
            mirrors: Vec::new(),
            credentials: HashMap::new(),
        }
    }
}

impl RegistryConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `insecure-registries` entries: CIDRs (`10.0.0.0/8`) or `host[:port]`.
    /// A scheme prefix is tolerated and dropped, as dockerd does.
    pub fn with_insecure_registries<S: AsRef<str>>(mut self, entries: &[S]) -> Result<Self> {
        for entry in entries {
            let entry = strip_scheme(entry.as_ref().trim()).trim_end_matches('/');
            if entry.contains('/') {
                let cidr = Cidr::parse(entry).ok_or_else(|| {
                    ImageError::invalid("insecure-registries", format!("bad CIDR {entry:?}"))
                })?;
                self.insecure_cidrs.push(cidr);
            } else if entry.is_empty() {
                return Err(ImageError::invalid("insecure-registries", "empty entry"));
            } else {
                self.insecure_hosts
                    .push(canonical_registry(entry).to_string());
            }
        }
        Ok(self)
    }

    /// Adds `registry-mirrors` entries (URLs with `http://` or `https://`); they are
    /// tried in order for Docker Hub pulls before Docker Hub itself.
    pub fn with_mirrors<S: AsRef<str>>(mut self, mirrors: &[S]) -> Result<Self> {
        for mirror in mirrors {
            let mirror = mirror.as_ref().trim().trim_end_matches('/');
            let rest = mirror
                .strip_prefix("https://")
                .or_else(|| mirror.strip_prefix("http://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains(['?', '#', '@']) => {
                    self.mirrors.push(mirror.to_string())
                }
                _ => {
                    return Err(ImageError::invalid(
                        "registry-mirrors",
                        format!("invalid mirror {mirror:?}: must be an http(s) URL"),
                    ))
                }
            }
        }
        Ok(self)
    }

    /// Sets credentials for one registry directly (e.g. from an API `X-Registry-Auth`).
    pub fn with_credentials(mut self, registry: &str, credentials: Credentials) -> Self {
        self.credentials.insert(
            canonical_registry(&auth_key_host(registry)).to_string(),
            credentials,
        );
        self
    }

    /// Reads the `auths` of a Docker `config.json` (DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json, chosen by the caller). A missing file means no
    /// credentials; a malformed one is an error naming the file.
    /// Credential helpers (`credsStore`, `credHelpers`) are not consulted.
    pub fn with_docker_config(mut self, path: &Path) -> Result<Self> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self),
            Err(e) => return Err(ImageError::io(format!("reading {}", path.display()), e)),
        };
        let context = || path.display().to_string();
        let file: DockerConfigFile =
            serde_json::from_slice(&text).map_err(|e| ImageError::invalid(context(), e))?;
        for (key, entry) in file.auths {
            let credentials = match entry.credentials() {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(message) => {
                    return Err(ImageError::invalid(
                        context(),
                        format!("auths[{key:?}]: {message}"),
                    ))
                }
            };
            let host = canonical_registry(&auth_key_host(&key)).to_string();
            self.credentials.insert(host, credentials);
        }
        Ok(self)
    }

    pub fn mirrors(&self) -> &[String] {
        &self.mirrors
    }

    /// The credentials stored for a registry (`docker.io`, `localhost:5000`).
    pub fn credentials(&self, registry: &str) -> Option<&Credentials> {
        self.credentials.get(canonical_registry(registry))
    }

    /// Docker's rule: a registry is insecure if its `host:port` is listed, or if one of
    /// the addresses its host resolves to lies in a listed CIDR (loopback by default).
    pub fn is_insecure(&self, registry: &str) -> bool {
        let registry = canonical_registry(registry);
        if self.insecure_hosts.iter().any(|h| h == registry) {
            return true;
        }
        if self.insecure_cidrs.is_empty() {
            return false;
        }
        let host = host_of(registry);
        let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            // A name that does not resolve is treated as secure, as dockerd does.
            Err(_) => match (host, 0u16).to_socket_addrs() {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                Err(_) => Vec::new(),
            },
        };
        addresses
            .iter()
            .any(|ip| self.insecure_cidrs.iter().any(|c| c.contains(*ip)))
    }
}

/// Folds the names Docker Hub goes by into `docker.io`.
pub fn canonical_registry(registry: &str) -> &str {
    match registry {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB,
        other => other,
    }
}

/// The host part of `host[:port]`, IPv6 brackets removed.
pub(crate) fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    }
}

fn strip_scheme(s: &str) -> &str {
    s.strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s)
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `localhost:5000` stays.
fn auth_key_host(key: &str) -> String {
    let rest = strip_scheme(key.trim());
    rest.split('/').next().unwrap_or(rest).to_string()
}

#[derive(Deserialize, Default)]
struct DockerConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl AuthEntry {
    fn credentials(&self) -> std::result::Result<Option<Credentials>, String> {
        if let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("auth is not base64: {e}"))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| "auth is not UTF-8".to_string())?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| "auth is not user:password".to_string())?;
            return Ok(Some(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        match (&self.username, &self.password) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            })),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_rules() {
        let config = RegistryConfig::new()
            .with_insecure_registries(&["10.1.0.0/16", "myregistry:5000", "http://other:80"])
            .unwrap();
        assert!(config.is_insecure("127.0.0.1:5000"));
        assert!(config.is_insecure("127.5.6.7"));
        assert!(config.is_insecure("localhost:5000"));
        assert!(config.is_insecure("10.1.200.3:443"));
        assert!(!config.is_insecure("10.2.0.1:443"));
        assert!(config.is_insecure("myregistry:5000"));
        assert!(!config.is_insecure("myregistry:5001"));
        assert!(config.is_insecure("other:80"));
        assert!(!config.is_insecure("docker.io"));
        assert!(!config.is_insecure("[::1]:5000"));
        assert!(RegistryConfig::new()
            .with_insecure_registries(&["1.2.3.4/40"])
            .is_err());
    }

    #[test]
    fn cidr_edges() {
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
        let one = Cidr::parse("::1/128").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("::2".parse().unwrap()));
    }

    #[test]
    fn docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{}"}},
                    "localhost:5000": {{"auth": "{}"}},
                    "http://r.example:8080/v2/": {{"username": "u", "password": "p"}},
                    "empty.example": {{}}
                }}, "credsStore": "desktop"}}"#,
                b64("hub:secret:with:colons"),
                b64("local:pw")
            ),
        )
        .unwrap();
        let config = RegistryConfig::new().with_docker_config(&path).unwrap();
        let hub = config.credentials("docker.io").unwrap();
        assert_eq!(hub.username, "hub");
        assert_eq!(hub.password, "secret:with:colons");
        assert_eq!(
            config.credentials("registry-1.docker.io").unwrap().username,
            "hub"
        );
        assert_eq!(config.credentials("localhost:5000").unwrap().password, "pw");
        assert_eq!(config.credentials("r.example:8080").unwrap().username, "u");
        assert!(config.credentials("empty.example").is_none());
        assert!(!format!("{hub:?}").contains("secret"));

        let missing = RegistryConfig::new()
            .with_docker_config(&dir.path().join("nope.json"))
            .unwrap();
        assert!(missing.credentials("docker.io").is_none());
        std::fs::write(&path, r#"{"auths": {"x": {"auth": "!!!"}}}"#).unwrap();
        assert!(RegistryConfig::new().with_docker_config(&path).is_err());
    }

    #[test]
    fn mirrors_must_be_urls() {
        assert!(RegistryConfig::new()
            .with_mirrors(&["mirror.example"])
            .is_err());
        let c = RegistryConfig::new()
            .with_mirrors(&["https://mirror.example/"])
            .unwrap();
        assert_eq!(c.mirrors(), ["https://mirror.example"]);
    }
}
