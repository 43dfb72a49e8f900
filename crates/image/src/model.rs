//! The image model: descriptors, manifests, indexes (manifest lists), image configs
//! and platforms, in both OCI and Docker (manifest v2 schema 2) media types. Field
//! names are the wire names; blobs are kept as the bytes we received (digests are
//! over those bytes), these types are only for reading them.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};

pub mod media_type {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_LAYER_NONDIST_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
    }
    pub fn is_manifest(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema 2: the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The image configuration blob, as Docker writes it (a superset of OCI's).
/// Unknown fields are kept so that nothing is lost when we re-serialize one we made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The run-time defaults an image carries (Docker's `Config` inside the image config).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<HashMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

/// Chain IDs of a layer stack, as the OCI image spec defines them:
/// chain(L0) = diff(L0); chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(prev) => {
                let mut h = Hasher::new();
                h.update(format!("{prev} {diff}").as_bytes());
                h.finish()
            }
        };
        out.push(next);
    }
    out
}

/// The platform this host runs (linux/amd64 here), in OCI's names.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    Platform {
        architecture: arch.to_string(),
        os: "linux".to_string(),
        variant: if arch == "arm64" {
            Some("v8".into())
        } else {
            None
        },
        ..Default::default()
    }
}

/// Normalises an OS name and an architecture with its variant as containerd's
/// `platforms.Normalize` does: `x86_64` is `amd64`, `aarch64` is `arm64`, arm64's
/// default variant `v8` is no variant, plain `arm` is `arm/v7`.
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "i386" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => {
            let v = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".into(), v)
        }
        "aarch64" | "arm64" => {
            let v = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".into(),
                _ => variant,
            };
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), v)
        }
        _ => (arch, variant),
    }
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
];

impl Platform {
    /// The platform with OS and architecture names normalised (see `normalize_arch`).
    pub fn normalized(&self) -> Platform {
        let (architecture, variant) =
            normalize_arch(&self.architecture, self.variant.as_deref().unwrap_or(""));
        Platform {
            architecture,
            os: self.os.to_ascii_lowercase(),
            variant: (!variant.is_empty()).then_some(variant),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
        }
    }

    /// Parses `--platform` as containerd's `platforms.Parse` does: `os/arch[/variant]`,
    /// or a lone OS (this host's architecture) or a lone architecture (this host's OS).
    pub fn parse(spec: &str) -> crate::error::Result<Platform> {
        let bad = |why: &str| {
            crate::error::ImageError::invalid(format!("platform {spec:?}"), why.to_string())
        };
        let parts: Vec<&str> = spec.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(bad("expected os/arch[/variant]"));
        }
        let host = host_platform();
        let p = match parts.as_slice() {
            [one] => {
                let lower = one.to_ascii_lowercase();
                if KNOWN_OS.contains(&lower.as_str()) {
                    Platform { os: lower, ..host }
                } else {
                    Platform {
                        os: host.os,
                        architecture: lower,
                        ..Default::default()
                    }
                }
            }
            [os, arch] => Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                ..Default::default()
            },
            [os, arch, variant] => Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
                ..Default::default()
            },
            _ => return Err(bad("expected os/arch[/variant]")),
        };
        Ok(p.normalized())
    }

    /// Whether an image built for `image` serves where `self` is asked for (as an
    /// index entry would be chosen): same OS, the architecture or a compatible one.
    pub fn accepts(&self, image: &Platform) -> bool {
        let image = image.normalized();
        self.compatible().iter().any(|want| want.same(&image))
    }

    fn same(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && self.variant == other.variant
    }

    /// The platforms that run on this one, best first (containerd's `platforms.Only`):
    /// the platform itself, then older variants of its architecture, and for arm64
    /// hosts, 32-bit arm.
    fn compatible(&self) -> Vec<Platform> {
        let p = self.normalized();
        let with = |arch: &str, variant: Option<&str>| Platform {
            os: p.os.clone(),
            architecture: arch.to_string(),
            variant: variant.map(str::to_string),
            ..Default::default()
        };
        let mut out = vec![with(&p.architecture, p.variant.as_deref())];
        let arm_from = |n: u32| (5..=n).rev().map(|v| format!("v{v}")).collect::<Vec<_>>();
        match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => {
                for v in arm_from(8) {
                    out.push(with("arm", Some(&v)));
                }
            }
            ("arm64", Some("v9")) => {
                out.push(with("arm64", None));
                for v in arm_from(8) {
                    out.push(with("arm", Some(&v)));
                }
            }
            ("arm", Some(v)) => {
                if let Some(n) = v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()) {
                    for older in arm_from(n).into_iter().skip(1) {
                        out.push(with("arm", Some(&older)));
                    }
                }
            }
            ("amd64", Some(v)) => {
                if let Some(n) = v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()) {
                    for older in (2..n).rev() {
                        out.push(with("amd64", Some(&format!("v{older}"))));
                    }
                    out.push(with("amd64", None));
                }
            }
            _ => {}
        }
        out
    }
}

/// Picks the manifest of an index (manifest list) for `wanted` (this host's platform
/// when `None`), as containerd's ordered platform matcher does: an exact match
/// (after normalisation) first, then the best compatible one, ties going to the
/// entry listed first. Entries without a platform (attestations) never match.
pub fn select_manifest<'a>(
    index: &'a Index,
    wanted: Option<&Platform>,
    reference: &str,
) -> crate::error::Result<&'a Descriptor> {
    let wanted = wanted.cloned().unwrap_or_else(host_platform);
    let candidates: Vec<(Platform, &Descriptor)> = index
        .manifests
        .iter()
        .filter(|d| media_type::is_manifest(&d.media_type))
        .filter_map(|d| d.platform.as_ref().map(|p| (p.normalized(), d)))
        .collect();
    for want in wanted.compatible() {
        if let Some((_, d)) = candidates.iter().find(|(p, _)| p.same(&want)) {
            return Ok(d);
        }
    }
    Err(crate::error::ImageError::NoMatchingPlatform {
        reference: reference.to_string(),
        platform: wanted.normalized().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_of_two_layers() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
    }

    fn entry(arch: &str, variant: Option<&str>, byte: u8) -> Descriptor {
        Descriptor {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: Digest::of(&[byte]),
            size: 1,
            urls: None,
            annotations: None,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(str::to_string),
                ..Default::default()
            }),
        }
    }

    fn index(entries: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.into()),
            manifests: entries,
            annotations: None,
        }
    }

    #[test]
    fn platform_selection() {
        let mut attestation = entry("unknown", None, 9);
        attestation.platform.as_mut().unwrap().os = "unknown".into();
        let idx = index(vec![
            attestation,
            entry("arm", Some("v6"), 1),
            entry("arm", Some("v7"), 2),
            entry("arm64", Some("v8"), 3),
            entry("amd64", None, 4),
            entry("386", None, 5),
            entry("amd64", None, 6),
        ]);
        let pick = |spec: &str| {
            select_manifest(&idx, Some(&Platform::parse(spec).unwrap()), "r")
                .map(|d| d.digest.clone())
        };
        // First of two equal matches wins.
        assert_eq!(pick("linux/amd64").unwrap(), Digest::of(&[4]));
        assert_eq!(pick("linux/x86_64").unwrap(), Digest::of(&[4]));
        assert_eq!(pick("linux/amd64/v3").unwrap(), Digest::of(&[4]));
        assert_eq!(pick("linux/arm64").unwrap(), Digest::of(&[3]));
        assert_eq!(pick("linux/arm64/v8").unwrap(), Digest::of(&[3]));
        assert_eq!(pick("linux/aarch64").unwrap(), Digest::of(&[3]));
        assert_eq!(pick("linux/arm").unwrap(), Digest::of(&[2]));
        assert_eq!(pick("linux/arm/v7").unwrap(), Digest::of(&[2]));
        assert_eq!(pick("linux/arm/v6").unwrap(), Digest::of(&[1]));
        assert_eq!(pick("linux/armhf").unwrap(), Digest::of(&[2]));
        assert_eq!(pick("linux/386").unwrap(), Digest::of(&[5]));
        assert!(matches!(
            pick("linux/arm/v5"),
            Err(crate::error::ImageError::NoMatchingPlatform { .. })
        ));
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(err.contains("linux/s390x"), "{err}");
        assert!(pick("windows/amd64").is_err());
        // The default is this host.
        let host = select_manifest(&idx, None, "r").unwrap();
        assert_eq!(
            host.platform.as_ref().unwrap().normalized().architecture,
            host_platform().normalized().architecture
        );
        // An arm64 host takes 32-bit arm when nothing better exists.
        let arm_only = index(vec![
            entry("arm", Some("v6"), 1),
            entry("arm", Some("v7"), 2),
        ]);
        let got = select_manifest(
            &arm_only,
            Some(&Platform::parse("linux/arm64").unwrap()),
            "r",
        );
        assert_eq!(got.unwrap().digest, Digest::of(&[2]));
    }

    #[test]
    fn platform_parse() {
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/arm").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(Platform::parse("linux").unwrap().os, "linux");
        assert_eq!(Platform::parse("arm64").unwrap().to_string(), "linux/arm64");
        assert!(Platform::parse("linux//").is_err());
        assert!(Platform::parse("").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }
}
