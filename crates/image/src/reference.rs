//! Image references, parsed and normalised exactly as Docker does
//! (`github.com/distribution/reference`: `ParseNormalizedNamed`, `TagNameOnly`,
//! `FamiliarString`): `busybox` is `docker.io/library/busybox:latest`, a first path
//! component with a dot or a port, or `localhost`, is a registry, and so on.
//!
//! The grammar, as that package writes it:
//! ```text
//! reference      := name [ ":" tag ] [ "@" digest ]
//! name           := [domain '/'] remote-name
//! domain         := host [':' port-number]
//! host           := domain-name | IPv4address | '[' IPv6address ']'
//! domain-name    := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! remote-name    := path-component ['/' path-component]*
//! path-component := alpha-numeric [separator alpha-numeric]*
//! alpha-numeric  := /[a-z0-9]+/
//! separator      := /[_.]|__|[-]+/
//! tag            := /[\w][\w.-]{0,127}/
//! ```

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{ImageError, Result};

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A normalised reference: registry domain, repository path, and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn invalid(reference: &str, reason: impl Into<String>) -> ImageError {
    ImageError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

impl Reference {
    /// Parses as `docker pull` does: normalised, and `:latest` added when neither a
    /// tag nor a digest is given.
    pub fn parse(s: &str) -> Result<Self> {
        let mut r = Self::parse_named(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses and normalises without adding a default tag (`ParseNormalizedNamed`):
    /// what `docker images busybox` or `docker pull --all-tags` take.
    pub fn parse_named(s: &str) -> Result<Self> {
        if is_full_hex_id(s) {
            return Err(invalid(
                s,
                "invalid repository name, cannot specify 64-byte hexadecimal strings",
            ));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote = match remainder.find(':') {
            Some(i) => &remainder[..i],
            None => remainder.as_str(),
        };
        if remote.to_lowercase() != remote {
            return Err(invalid(
                s,
                format!("repository name ({remote}) must be lowercase"),
            ));
        }
        let full = format!("{domain}/{remainder}");
        let r = parse_exact(&full).map_err(|reason| invalid(s, reason))?;
        Ok(r)
    }

    /// The registry host as references carry it (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry, as the Distribution API takes it
    /// (`library/busybox` on Docker Hub).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full repository name: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository name as Docker shows it: `busybox`, `user/app`,
    /// `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The reference as `docker images` and `docker inspect` show it:
    /// `busybox:latest`, `busybox@sha256:…`.
    pub fn familiar(&self) -> String {
        self.render(self.familiar_name())
    }

    /// What to ask the registry's manifest endpoint for: the digest when there is one
    /// (it pins the content), else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// This repository with `tag` (any digest dropped).
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        if !is_valid_tag(tag) {
            return Err(invalid(tag, "invalid tag format"));
        }
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// This repository at `digest` (any tag dropped): a RepoDigest.
    pub fn with_digest(&self, digest: &Digest) -> Self {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest.clone()),
        }
    }

    /// The bare repository, no tag nor digest.
    pub fn repository(&self) -> Self {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    fn render(&self, name: String) -> String {
        let mut s = name;
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(self.name()))
    }
}

impl FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

/// `docker images` and friends accept a bare 64-hex string as an image ID.
pub fn is_full_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Docker's `splitDockerDomain`: the first component is a registry if it has a dot
/// or a colon, is `localhost`, or has an upper-case letter (repository paths cannot).
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i) => {
            let first = &name[..i];
            if first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first {
                (first.to_string(), name[i + 1..].to_string())
            } else {
                (DEFAULT_DOMAIN.to_string(), name.to_string())
            }
        }
        None => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

/// Parses `domain/path[:tag][@digest]` against the anchored grammar (Docker's
/// `reference.Parse` after normalisation: the domain is always present here).
fn parse_exact(s: &str) -> std::result::Result<Reference, String> {
    const FORMAT: &str = "invalid reference format";
    if s.is_empty() {
        return Err("repository name must have at least one component".into());
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    let digest = match digest {
        Some(d) => {
            let (algorithm, hex) = d.split_once(':').ok_or(FORMAT)?;
            if algorithm != "sha256" {
                if is_valid_algorithm(algorithm) && !hex.is_empty() {
                    return Err(format!("unsupported digest algorithm {algorithm:?}"));
                }
                return Err(FORMAT.into());
            }
            Some(Digest::from_hex(hex).map_err(|_| "invalid checksum digest format")?)
        }
        None => None,
    };
    // A tag follows the last ':' after the last '/': a ':' before it is a port.
    let last_slash = name_tag.rfind('/');
    let (name, tag) = match name_tag.rfind(':') {
        Some(c) if last_slash.is_none_or(|sl| c > sl) => (&name_tag[..c], Some(&name_tag[c + 1..])),
        _ => (name_tag, None),
    };
    if let Some(t) = tag {
        if !is_valid_tag(t) {
            return Err(FORMAT.into());
        }
    }
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        ));
    }
    let (domain, path) = name.split_once('/').ok_or(FORMAT)?;
    if !is_valid_domain(domain) {
        return Err(FORMAT.into());
    }
    if path.is_empty() || !path.split('/').all(is_valid_path_component) {
        if path
            .split('/')
            .all(|c| is_valid_path_component(&c.to_lowercase()))
        {
            return Err("repository name must be lowercase".into());
        }
        return Err(FORMAT.into());
    }
    Ok(Reference {
        domain: domain.to_string(),
        path: path.to_string(),
        tag: tag.map(str::to_string),
        digest,
    })
}

fn is_valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = t.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `alpha-numeric [separator alpha-numeric]*` with separator `[_.]|__|[-]+`.
fn is_valid_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let mut i = 0;
    let run = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && alnum(bytes[*i]) {
            *i += 1;
        }
        *i > start
    };
    if !run(&mut i) {
        return false;
    }
    while i < bytes.len() {
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let ok =
            matches!(sep, "." | "_" | "__") || (!sep.is_empty() && sep.bytes().all(|b| b == b'-'));
        if !ok || !run(&mut i) {
            return false;
        }
    }
    true
}

/// `host [':' port]`, host a domain name, an IPv4 address (a domain name's
/// shape already covers it) or a bracketed IPv6 address.
fn is_valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let inside = &rest[..end];
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => (None, Some(p)),
            None if after.is_empty() => (None, None),
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(h) => !h.is_empty() && h.split('.').all(is_valid_domain_component),
    }
}

fn is_valid_domain_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `algorithm-component [algorithm-separator algorithm-component]*`, components
/// `[a-z0-9]+` and separators `[+._-]`: syntactically a digest algorithm.
fn is_valid_algorithm(a: &str) -> bool {
    !a.is_empty()
        && a.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalisation_table() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/user/app:v1",
                "docker.io/user/app:v1",
                "user/app:v1",
            ),
            (
                "docker.io/library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
            (
                "127.0.0.1:5000/x",
                "127.0.0.1:5000/x:latest",
                "127.0.0.1:5000/x:latest",
            ),
            ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
            (
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
            ),
            (
                "localhost:5000",
                "docker.io/library/localhost:5000",
                "localhost:5000",
            ),
            (
                "quay.io/org/app",
                "quay.io/org/app:latest",
                "quay.io/org/app:latest",
            ),
            ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
            ("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000/x:y"),
            (
                "a_b.c-d__e---f",
                "docker.io/library/a_b.c-d__e---f:latest",
                "a_b.c-d__e---f:latest",
            ),
            (
                "x:Tag_1.0-rc",
                "docker.io/library/x:Tag_1.0-rc",
                "x:Tag_1.0-rc",
            ),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&r.to_string(), full, "{input}");
            assert_eq!(&r.familiar(), familiar, "{input}");
        }
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.manifest_reference(), D);
        let r = Reference::parse(&format!("busybox:1.36@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1.36"));
        assert_eq!(r.familiar(), format!("busybox:1.36@{D}"));
        assert_eq!(r.manifest_reference(), D);
    }

    #[test]
    fn parts() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.domain(), "docker.io");
        assert_eq!(r.path(), "library/busybox");
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.familiar_name(), "busybox");
        let r = Reference::parse_named("busybox").unwrap();
        assert_eq!(r.tag(), None);
        let r = Reference::parse("127.0.0.1:5000/x/y:z").unwrap();
        assert_eq!(r.domain(), "127.0.0.1:5000");
        assert_eq!(r.path(), "x/y");
        assert_eq!(r.manifest_reference(), "z");
    }

    #[test]
    fn invalid_references() {
        let long = "a".repeat(256);
        let cases = [
            "",
            "Busybox",
            "busybox:",
            "busybox:-tag",
            "busybox:.tag",
            "busybox@sha256:abc",
            "busybox@md5:abc",
            "busybox@",
            "a//b",
            "/busybox",
            "busybox/",
            "a-/b",
            "a..b",
            "a___b",
            "-a",
            "UPPER/lower/Path",
            "localhost:port/x",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "busy box",
            "a:b:c",
            "a@b@c",
            &format!("x:{}", "t".repeat(129)),
            &long,
        ];
        for input in cases {
            let err = Reference::parse(input).err();
            assert!(
                matches!(err, Some(ImageError::InvalidReference { .. })),
                "{input:?} parsed: {err:?}"
            );
        }
        // Upper case in the repository path gets Docker's own message.
        let msg = Reference::parse("Busybox").unwrap_err().to_string();
        assert!(msg.contains("must be lowercase"), "{msg}");
        assert!(msg.starts_with("invalid reference format"), "{msg}");
    }
}
