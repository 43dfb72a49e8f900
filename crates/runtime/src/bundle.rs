//! Loading an OCI bundle: config.json parsed with errors that name the field, and the
//! checks that must pass before anything is created on the host.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Result, RuntimeError};

pub struct Bundle {
    /// Absolute bundle directory.
    pub path: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    pub spec: Spec,
}

/// Parse a config.json document; an error names the JSON path of the bad field.
pub fn parse_config(data: &[u8]) -> Result<Spec> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let spec: Spec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let field = if field == "." {
            "(document)".to_string()
        } else {
            field
        };
        RuntimeError::invalid(field, inner.to_string())
    })?;
    Ok(spec)
}

pub fn load(bundle: &Path) -> Result<Bundle> {
    if !bundle.is_absolute() {
        return Err(RuntimeError::RelativeBundle(bundle.to_path_buf()));
    }
    let config = bundle.join("config.json");
    let data = std::fs::read(&config).map_err(|source| RuntimeError::ReadConfig {
        path: config.clone(),
        source,
    })?;
    let spec = parse_config(&data)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| RuntimeError::invalid("root", "is required"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(RuntimeError::MissingRootfs(rootfs));
    }
    validate(&spec)?;
    Ok(Bundle {
        path: bundle.to_path_buf(),
        rootfs,
        spec,
    })
}

/// Checks that the types alone do not express.
pub fn validate(spec: &Spec) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::invalid("process", "is required"))?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => {
            return Err(RuntimeError::invalid(
                "process.args",
                "must name the program to run",
            ))
        }
    }
    if !process.cwd().is_absolute() {
        return Err(RuntimeError::invalid(
            "process.cwd",
            format!("{:?} is not an absolute path", process.cwd()),
        ));
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    let mut has_user_ns = false;
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(RuntimeError::invalid(
                format!("linux.namespaces[{i}]"),
                format!("duplicate namespace {}", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(RuntimeError::invalid(
                    format!("linux.namespaces[{i}].path"),
                    format!("{p:?} is not absolute"),
                ));
            }
        }
        if ns.typ() == oci_spec::runtime::LinuxNamespaceType::User {
            has_user_ns = true;
        }
        if ns.typ() == oci_spec::runtime::LinuxNamespaceType::Time {
            return Err(RuntimeError::invalid(
                format!("linux.namespaces[{i}].type"),
                "time namespaces are not supported",
            ));
        }
    }
    let has_ns = |typ: oci_spec::runtime::LinuxNamespaceType| {
        linux.namespaces().iter().flatten().any(|n| n.typ() == typ)
    };
    for key in linux.sysctl().iter().flatten().map(|(k, _)| k) {
        use oci_spec::runtime::LinuxNamespaceType as T;
        let ipc = matches!(
            key.as_str(),
            "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
                | "kernel.shmall"
                | "kernel.shmmax"
                | "kernel.shmmni"
                | "kernel.shm_rmid_forced"
        ) || key.starts_with("fs.mqueue.");
        let needed = if ipc {
            Some((T::Ipc, "ipc"))
        } else if key.starts_with("net.") {
            Some((T::Network, "network"))
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            Some((T::Uts, "uts"))
        } else {
            None
        };
        match needed {
            Some((typ, _)) if has_ns(typ) => {}
            Some((_, name)) => {
                return Err(RuntimeError::invalid(
                    format!("linux.sysctl.{key}"),
                    format!("sysctl is not in a separate kernel namespace: the spec needs a {name} namespace"),
                ))
            }
            None => {
                return Err(RuntimeError::invalid(
                    format!("linux.sysctl.{key}"),
                    "not a namespaced sysctl: setting it would change the host",
                ))
            }
        }
    }
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_maps && !has_user_ns {
        return Err(RuntimeError::invalid(
            "linux.uidMappings",
            "mappings are set but there is no user namespace",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_field_is_named() {
        let err = parse_config(br#"{"ociVersion":"1.0.2","process":{"args":5}}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("process.args"), "{err}");
    }

    #[test]
    fn unknown_namespace_is_named() {
        let err = parse_config(
            br#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("linux.namespaces[1]"), "{err}");
    }
}
