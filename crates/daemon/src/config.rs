//! Daemon configuration: dockerd's flags and `daemon.json` keys, merged as dockerd
//! merges them. An unknown key, or a key given both as a flag and in the file, is an
//! error at start (dockerd refuses both), so a typo never silently means a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unable to read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unable to configure the daemon from file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the following directives don't match any configuration option: {0}")]
    UnknownKeys(String),
    #[error(
        "the following directives are specified both as a flag and in the configuration file: {0}"
    )]
    Conflict(String),
    #[error("invalid value for {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// An address pool for networks (`default-address-pools`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPool {
    pub base: String,
    pub size: u8,
}

/// A runtime registered with `runtimes` / `--add-runtime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    pub path: String,
    #[serde(rename = "runtimeArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_args: Vec<String>,
}

/// A ulimit as daemon.json spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Hard")]
    pub hard: i64,
    #[serde(rename = "Soft")]
    pub soft: i64,
}

/// Every key berthd understands, named as in dockerd's daemon.json. All optional:
/// `None` means "not set here", so that file and flags can be merged and defaulted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub data_root: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub hosts: Option<Vec<String>>,
    pub bridge: Option<String>,
    pub bip: Option<String>,
    pub fixed_cidr: Option<String>,
    pub fixed_cidr_v6: Option<String>,
    pub default_address_pools: Option<Vec<AddressPool>>,
    pub ipv6: Option<bool>,
    pub mtu: Option<u32>,
    pub ip_masq: Option<bool>,
    pub ip_forward: Option<bool>,
    pub icc: Option<bool>,
    pub iptables: Option<bool>,
    pub ip: Option<String>,
    pub dns: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub dns_opts: Option<Vec<String>>,
    pub userland_proxy: Option<bool>,
    pub insecure_registries: Option<Vec<String>>,
    pub registry_mirrors: Option<Vec<String>>,
    pub log_driver: Option<String>,
    pub log_opts: Option<BTreeMap<String, String>>,
    pub log_level: Option<String>,
    pub debug: Option<bool>,
    pub cgroup_parent: Option<String>,
    pub exec_opts: Option<Vec<String>>,
    pub live_restore: Option<bool>,
    pub default_ulimits: Option<BTreeMap<String, Ulimit>>,
    pub init: Option<bool>,
    pub init_path: Option<PathBuf>,
    pub default_runtime: Option<String>,
    pub runtimes: Option<BTreeMap<String, RuntimeConfig>>,
    pub storage_driver: Option<String>,
    pub storage_opts: Option<Vec<String>>,
    pub max_concurrent_downloads: Option<u32>,
    pub max_concurrent_uploads: Option<u32>,
    pub max_download_attempts: Option<u32>,
    pub shutdown_timeout: Option<u32>,
    pub labels: Option<Vec<String>>,
    pub experimental: Option<bool>,
    pub default_shm_size: Option<String>,
    pub no_new_privileges: Option<bool>,
    pub seccomp_profile: Option<String>,
    pub selinux_enabled: Option<bool>,
    pub userns_remap: Option<String>,
    pub features: Option<BTreeMap<String, bool>>,
    pub builder: Option<serde_json::Value>,
    pub group: Option<String>,
    /// dockerd's containerd keys (seed 000's engines set them to keep their
    /// containerd state apart). berth has no containerd: each berthd's state is apart
    /// by its data-root and exec-root already, so they are accepted and have no effect.
    pub containerd: Option<String>,
    pub containerd_namespace: Option<String>,
    pub containerd_plugins_namespace: Option<String>,
}

/// dockerd's command line, for the keys it shares with the file.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "berthd",
    about = "A Docker-compatible container engine",
    version
)]
pub struct Flags {
    /// Daemon configuration file
    #[arg(long = "config-file", default_value = "/etc/berth/daemon.json")]
    pub config_file: PathBuf,
    /// Root directory of persistent state
    #[arg(long = "data-root")]
    pub data_root: Option<PathBuf>,
    /// Root directory for execution state files
    #[arg(long = "exec-root")]
    pub exec_root: Option<PathBuf>,
    /// Path to use for the daemon PID file
    #[arg(short = 'p', long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    /// Daemon socket(s) to connect to
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// Attach containers to a network bridge ("none" disables it)
    #[arg(short = 'b', long = "bridge")]
    pub bridge: Option<String>,
    /// Network bridge IP
    #[arg(long = "bip")]
    pub bip: Option<String>,
    /// Enable IPv6 networking
    #[arg(long = "ipv6")]
    pub ipv6: bool,
    /// IPv6 subnet for fixed IPs
    #[arg(long = "fixed-cidr-v6")]
    pub fixed_cidr_v6: Option<String>,
    /// Set the containers network MTU
    #[arg(long = "mtu")]
    pub mtu: Option<u32>,
    /// Enable insecure registry communication
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Preferred registry mirror
    #[arg(long = "registry-mirror")]
    pub registry_mirrors: Vec<String>,
    /// Default driver for container logs
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Default log driver options for containers (key=value)
    #[arg(long = "log-opt")]
    pub log_opts: Vec<String>,
    /// Set the logging level
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,
    /// Set parent cgroup for all containers
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Runtime execution options
    #[arg(long = "exec-opt")]
    pub exec_opts: Vec<String>,
    /// Enable live restore of containers when the daemon stops
    #[arg(long = "live-restore")]
    pub live_restore: bool,
    /// Path to the docker-init binary
    #[arg(long = "init-path")]
    pub init_path: Option<PathBuf>,
    /// Run an init in the container to forward signals and reap processes
    #[arg(long = "init")]
    pub init: bool,
    /// Default OCI runtime for containers
    #[arg(long = "default-runtime")]
    pub default_runtime: Option<String>,
    /// Register an additional OCI compatible runtime (name=path)
    #[arg(long = "add-runtime")]
    pub add_runtimes: Vec<String>,
    /// Storage driver to use
    #[arg(short = 's', long = "storage-driver")]
    pub storage_driver: Option<String>,
    /// Set the max concurrent downloads
    #[arg(long = "max-concurrent-downloads")]
    pub max_concurrent_downloads: Option<u32>,
    /// Set the max concurrent uploads
    #[arg(long = "max-concurrent-uploads")]
    pub max_concurrent_uploads: Option<u32>,
    /// Enable addition of iptables/nftables rules
    #[arg(long = "iptables", num_args = 0..=1, default_missing_value = "true")]
    pub iptables: Option<bool>,
    /// Enable inter-container communication
    #[arg(long = "icc", num_args = 0..=1, default_missing_value = "true")]
    pub icc: Option<bool>,
    /// Enable IP masquerading
    #[arg(long = "ip-masq", num_args = 0..=1, default_missing_value = "true")]
    pub ip_masq: Option<bool>,
    /// DNS server to use
    #[arg(long = "dns")]
    pub dns: Vec<String>,
}

/// The configuration in force: file and flags merged, defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    pub hosts: Vec<String>,
    pub bridge: String,
    pub bip: Option<String>,
    pub default_address_pools: Vec<AddressPool>,
    pub ipv6: bool,
    pub fixed_cidr_v6: Option<String>,
    pub mtu: u32,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    pub log_driver: String,
    pub log_opts: BTreeMap<String, String>,
    pub debug: bool,
    pub cgroup_parent: String,
    pub cgroup_driver: String,
    pub live_restore: bool,
    pub default_ulimits: BTreeMap<String, Ulimit>,
    pub init: bool,
    pub init_path: Option<PathBuf>,
    pub default_runtime: String,
    pub runtimes: BTreeMap<String, RuntimeConfig>,
    pub storage_driver: String,
    pub max_concurrent_downloads: u32,
    pub max_concurrent_uploads: u32,
    pub iptables: bool,
    pub icc: bool,
    pub ip_masq: bool,
    pub dns: Vec<String>,
    /// The file as loaded, for SIGHUP reload and `info`.
    pub file: FileConfig,
}

pub const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";
pub const DEFAULT_EXEC_ROOT: &str = "/run/berth";
pub const DEFAULT_RUNTIME: &str = "berth";

/// Docker's default address pools.
pub fn default_address_pools() -> Vec<AddressPool> {
    vec![
        AddressPool {
            base: "172.17.0.0/16".into(),
            size: 16,
        },
        AddressPool {
            base: "172.18.0.0/16".into(),
            size: 16,
        },
        AddressPool {
            base: "172.19.0.0/16".into(),
            size: 16,
        },
        AddressPool {
            base: "172.20.0.0/14".into(),
            size: 16,
        },
        AddressPool {
            base: "172.24.0.0/14".into(),
            size: 16,
        },
        AddressPool {
            base: "172.28.0.0/14".into(),
            size: 16,
        },
        AddressPool {
            base: "192.168.0.0/16".into(),
            size: 20,
        },
    ]
}

/// Parse daemon.json text; unknown keys are named in the error.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    // Report every unknown key at once, as dockerd does, before typed parsing.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let known = serde_json::to_value(FileConfig::default()).unwrap_or_default();
    if let (Some(obj), Some(known)) = (value.as_object(), known.as_object()) {
        let unknown: Vec<&str> = obj
            .keys()
            .filter(|k| !known.contains_key(k.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ConfigError::UnknownKeys(unknown.join(", ")));
        }
    }
    serde_json::from_value(value).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Load the file (a missing default file is fine, a missing named one is not) and
/// merge it with the flags.
pub fn load(flags: &Flags, file_was_given: bool) -> Result<DaemonConfig, ConfigError> {
    let file = match std::fs::read_to_string(&flags.config_file) {
        Ok(text) => parse_file(&flags.config_file, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !file_was_given => {
            FileConfig::default()
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: flags.config_file.clone(),
                source,
            })
        }
    };
    merge(flags, file)
}

pub fn merge(flags: &Flags, file: FileConfig) -> Result<DaemonConfig, ConfigError> {
    let mut conflicts = Vec::new();
    fn pick<T: Clone + std::fmt::Debug>(
        key: &str,
        flag: Option<T>,
        file: &Option<T>,
        conflicts: &mut Vec<String>,
    ) -> Option<T> {
        match (flag, file) {
            (Some(f), Some(v)) => {
                conflicts.push(format!("{key}: (from flag: {f:?}, from file: {v:?})"));
                Some(f)
            }
            (Some(f), None) => Some(f),
            (None, v) => v.clone(),
        }
    }
    let some_vec = |v: &Vec<String>| if v.is_empty() { None } else { Some(v.clone()) };
    let some_bool = |b: bool| if b { Some(true) } else { None };
    let c = &mut conflicts;
    let data_root = pick("data-root", flags.data_root.clone(), &file.data_root, c);
    let exec_root = pick("exec-root", flags.exec_root.clone(), &file.exec_root, c);
    let pidfile = pick("pidfile", flags.pidfile.clone(), &file.pidfile, c);
    let hosts = pick("hosts", some_vec(&flags.hosts), &file.hosts, c);
    let bridge = pick("bridge", flags.bridge.clone(), &file.bridge, c);
    let bip = pick("bip", flags.bip.clone(), &file.bip, c);
    let ipv6 = pick("ipv6", some_bool(flags.ipv6), &file.ipv6, c);
    let fixed_cidr_v6 = pick(
        "fixed-cidr-v6",
        flags.fixed_cidr_v6.clone(),
        &file.fixed_cidr_v6,
        c,
    );
    let mtu = pick("mtu", flags.mtu, &file.mtu, c);
    let insecure = pick(
        "insecure-registries",
        some_vec(&flags.insecure_registries),
        &file.insecure_registries,
        c,
    );
    let mirrors = pick(
        "registry-mirrors",
        some_vec(&flags.registry_mirrors),
        &file.registry_mirrors,
        c,
    );
    let log_driver = pick("log-driver", flags.log_driver.clone(), &file.log_driver, c);
    let log_opts_flag = if flags.log_opts.is_empty() {
        None
    } else {
        let mut m = BTreeMap::new();
        for kv in &flags.log_opts {
            let (k, v) = kv.split_once('=').ok_or_else(|| ConfigError::Invalid {
                key: "log-opt",
                message: format!("{kv:?} is not key=value"),
            })?;
            m.insert(k.to_string(), v.to_string());
        }
        Some(m)
    };
    let log_opts = pick("log-opts", log_opts_flag, &file.log_opts, c);
    let debug = pick("debug", some_bool(flags.debug), &file.debug, c);
    let cgroup_parent = pick(
        "cgroup-parent",
        flags.cgroup_parent.clone(),
        &file.cgroup_parent,
        c,
    );
    let exec_opts = pick("exec-opts", some_vec(&flags.exec_opts), &file.exec_opts, c);
    let live_restore = pick(
        "live-restore",
        some_bool(flags.live_restore),
        &file.live_restore,
        c,
    );
    let init = pick("init", some_bool(flags.init), &file.init, c);
    let init_path = pick("init-path", flags.init_path.clone(), &file.init_path, c);
    let default_runtime = pick(
        "default-runtime",
        flags.default_runtime.clone(),
        &file.default_runtime,
        c,
    );
    let storage_driver = pick(
        "storage-driver",
        flags.storage_driver.clone(),
        &file.storage_driver,
        c,
    );
    let mcd = pick(
        "max-concurrent-downloads",
        flags.max_concurrent_downloads,
        &file.max_concurrent_downloads,
        c,
    );
    let mcu = pick(
        "max-concurrent-uploads",
        flags.max_concurrent_uploads,
        &file.max_concurrent_uploads,
        c,
    );
    let iptables = pick("iptables", flags.iptables, &file.iptables, c);
    let icc = pick("icc", flags.icc, &file.icc, c);
    let ip_masq = pick("ip-masq", flags.ip_masq, &file.ip_masq, c);
    let dns = pick("dns", some_vec(&flags.dns), &file.dns, c);
    // Runtimes from flags and file are merged (dockerd refuses a name given twice).
    let mut runtimes = file.runtimes.clone().unwrap_or_default();
    for spec in &flags.add_runtimes {
        let (name, path) = spec.split_once('=').ok_or_else(|| ConfigError::Invalid {
            key: "add-runtime",
            message: format!("{spec:?} is not name=path"),
        })?;
        if runtimes.contains_key(name) {
            conflicts.push(format!("runtimes: {name}"));
        }
        runtimes.insert(
            name.to_string(),
            RuntimeConfig {
                path: path.to_string(),
                runtime_args: Vec::new(),
            },
        );
    }
    if !conflicts.is_empty() {
        return Err(ConfigError::Conflict(conflicts.join(", ")));
    }
    let exec_root = exec_root.unwrap_or_else(|| PathBuf::from(DEFAULT_EXEC_ROOT));
    let mut cgroup_driver = "cgroupfs".to_string();
    for opt in exec_opts.iter().flatten() {
        match opt.split_once('=') {
            Some(("native.cgroupdriver", v)) if v == "cgroupfs" || v == "systemd" => {
                cgroup_driver = v.to_string()
            }
            _ => {
                return Err(ConfigError::Invalid {
                    key: "exec-opts",
                    message: format!("{opt:?}: only native.cgroupdriver=cgroupfs|systemd"),
                })
            }
        }
    }
    let storage_driver = storage_driver.unwrap_or_else(|| "overlay2".into());
    if storage_driver != "overlay2" && storage_driver != "overlay" {
        return Err(ConfigError::Invalid {
            key: "storage-driver",
            message: format!("{storage_driver:?}: berth supports overlay2"),
        });
    }
    let log_driver = log_driver.unwrap_or_else(|| "json-file".into());
    if !matches!(
        log_driver.as_str(),
        "json-file" | "local" | "none" | "journald"
    ) {
        return Err(ConfigError::Invalid {
            key: "log-driver",
            message: format!("{log_driver:?}: berth supports json-file, local, journald and none"),
        });
    }
    if log_driver == "journald" {
        // Logs must not be lost, and `docker logs` must keep working: they are kept
        // in json-file form (what `docker logs` reads) until a journald writer exists.
        eprintln!("berthd: log-driver journald: container logs are kept as json-file");
    }
    Ok(DaemonConfig {
        data_root: data_root.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT)),
        pidfile: pidfile.unwrap_or_else(|| exec_root.join("berthd.pid")),
        hosts: hosts
            .unwrap_or_else(|| vec![format!("unix://{}", exec_root.join("berth.sock").display())]),
        exec_root,
        bridge: bridge.unwrap_or_else(|| "berth0".into()),
        bip,
        default_address_pools: file
            .default_address_pools
            .clone()
            .unwrap_or_else(default_address_pools),
        ipv6: ipv6.unwrap_or(false),
        fixed_cidr_v6,
        mtu: mtu.unwrap_or(1500),
        insecure_registries: insecure.unwrap_or_default(),
        registry_mirrors: mirrors.unwrap_or_default(),
        log_driver,
        log_opts: log_opts.unwrap_or_default(),
        debug: debug.unwrap_or(false),
        cgroup_parent: cgroup_parent.unwrap_or_else(|| "/berth".into()),
        cgroup_driver,
        live_restore: live_restore.unwrap_or(false),
        default_ulimits: file.default_ulimits.clone().unwrap_or_default(),
        init: init.unwrap_or(false),
        init_path,
        default_runtime: default_runtime.unwrap_or_else(|| DEFAULT_RUNTIME.into()),
        runtimes,
        storage_driver,
        max_concurrent_downloads: mcd.unwrap_or(3),
        max_concurrent_uploads: mcu.unwrap_or(5),
        iptables: iptables.unwrap_or(true),
        icc: icc.unwrap_or(true),
        ip_masq: ip_masq.unwrap_or(true),
        dns: dns.unwrap_or_default(),
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut all = vec!["berthd"];
        all.extend_from_slice(args);
        Flags::parse_from(all)
    }

    #[test]
    fn seed_style_file() {
        let text = r#"{
            "data-root": "/lzcsys/var/lib/pg-docker",
            "exec-root": "/run/pg-docker",
            "pidfile": "/run/pg-docker.pid",
            "hosts": ["unix:///run/pg-docker.sock"],
            "bridge": "pg-br0",
            "default-address-pools": [{"base": "172.40.0.0/16", "size": 24}],
            "insecure-registries": ["registry.local:5000"],
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "3"},
            "live-restore": true
        }"#;
        let file = parse_file(Path::new("daemon.json"), text).expect("parses");
        let cfg = merge(&flags(&[]), file).expect("merges");
        assert_eq!(cfg.data_root, PathBuf::from("/lzcsys/var/lib/pg-docker"));
        assert_eq!(cfg.hosts, vec!["unix:///run/pg-docker.sock".to_string()]);
        assert_eq!(cfg.bridge, "pg-br0");
        assert_eq!(cfg.default_address_pools[0].size, 24);
        assert!(cfg.live_restore);
        assert_eq!(cfg.log_opts.get("max-file").map(String::as_str), Some("3"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse_file(
            Path::new("d.json"),
            r#"{"data-rot": "/x", "bridge": "b", "foo": 1}"#,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("data-rot") && err.contains("foo"), "{err}");
        assert!(!err.contains("bridge"), "{err}");
    }

    #[test]
    fn flag_and_file_conflict() {
        let file = parse_file(Path::new("d.json"), r#"{"data-root": "/a"}"#).expect("parses");
        let err = merge(&flags(&["--data-root", "/b"]), file)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("data-root"), "{err}");
    }

    #[test]
    fn defaults() {
        let cfg = merge(&flags(&[]), FileConfig::default()).expect("merges");
        assert_eq!(cfg.data_root, PathBuf::from("/var/lib/berth"));
        assert_eq!(cfg.pidfile, PathBuf::from("/run/berth/berthd.pid"));
        assert_eq!(cfg.hosts, vec!["unix:///run/berth/berth.sock".to_string()]);
        assert_eq!(cfg.bridge, "berth0");
        assert_eq!(cfg.max_concurrent_downloads, 3);
        assert_eq!(cfg.default_address_pools[0].base, "172.17.0.0/16");
    }

    #[test]
    fn runtimes_merge() {
        let cfg = merge(
            &flags(&["--add-runtime", "runc=/usr/sbin/runc"]),
            FileConfig::default(),
        )
        .expect("merges");
        assert_eq!(cfg.runtimes["runc"].path, "/usr/sbin/runc");
        let bad = merge(&flags(&["--storage-driver", "vfs"]), FileConfig::default());
        assert!(bad.is_err());
    }
}
