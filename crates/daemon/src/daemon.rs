//! The daemon process: pidfile, directories, listeners, shutdown on SIGTERM/SIGINT.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::distribution::RegistrySettings;
use berth_api::{ApiError, Backend, Request, Response};

use berth_engine::engine::{Engine, EngineConfig};
use berth_engine::local_images::LocalImages;
use berth_image::Images;

use crate::config::DaemonConfig;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("pid file found, ensure berthd is not running or delete {0}")]
    AlreadyRunning(PathBuf),
    #[error("{0}")]
    Start(String),
    #[error("unsupported host {0:?}: use unix:///path (TCP needs TLS, not supported yet)")]
    UnsupportedHost(String),
}

fn io(context: impl Into<String>, source: std::io::Error) -> DaemonError {
    DaemonError::Io {
        context: context.into(),
        source,
    }
}

/// Take the pidfile: refuse to start if it names a live process (another berthd on
/// the same exec-root), replace it if stale.
pub fn take_pidfile(path: &Path) -> Result<(), DaemonError> {
    if let Ok(text) = fs::read_to_string(path) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            // SAFETY: kill with signal 0 only checks that the process exists.
            // A zombie (killed, not yet reaped by its parent) is no running daemon.
            let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false);
            if pid > 0
                && unsafe { libc::kill(pid, 0) } == 0
                && !zombie
                && pid != std::process::id() as i32
            {
                return Err(DaemonError::AlreadyRunning(path.to_path_buf()));
            }
        }
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| io(format!("write {}", path.display()), e))?;
    writeln!(f, "{}", std::process::id()).map_err(|e| io("write pidfile", e))?;
    Ok(())
}

/// The daemon's API backend: routes requests to the engine and the image side.
pub struct DaemonBackend {
    /// Replaced on SIGHUP (the keys dockerd reloads), as is `registry`.
    pub config: std::sync::RwLock<DaemonConfig>,
    pub engine: Arc<Engine>,
    pub images: Arc<Images>,
    pub registry: std::sync::RwLock<Arc<RegistrySettings>>,
}

impl Backend for DaemonBackend {
    fn version(&self) -> serde_json::Value {
        let api = berth_api::version::format(berth_api::version::MAX_VERSION);
        let min = berth_api::version::format(berth_api::version::MIN_VERSION);
        let v = env!("CARGO_PKG_VERSION");
        serde_json::json!({
            "Platform": {"Name": "berth"},
            "Components": [
                {
                    "Name": "Engine",
                    "Version": v,
                    "Details": {
                        "ApiVersion": api,
                        "MinAPIVersion": min,
                        "Os": "linux",
                        "Arch": "amd64",
                        "KernelVersion": kernel_version(),
                        "GitCommit": "berth",
                    }
                },
                {"Name": "berth-shim", "Version": v, "Details": {"GitCommit": "berth"}},
                {"Name": "berth-runtime", "Version": v, "Details": {"GitCommit": "berth"}},
                {"Name": "init", "Version": init_version(&self.engine.config.init_path), "Details": {"GitCommit": ""}},
            ],
            "Version": v,
            "ApiVersion": api,
            "MinAPIVersion": min,
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": kernel_version(),
            "GoVersion": "n/a (Rust)",
            "GitCommit": "berth",
            "BuildTime": "",
        })
    }

    fn handle(
        &self,
        req: Request,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, ApiError>> + Send + '_>>
    {
        Box::pin(async move {
            let path = req.path.trim_start_matches('/').to_string();
            let (top, rest) = path.split_once('/').unwrap_or((path.as_str(), ""));
            match (req.method.as_str(), top) {
                ("GET", "info") if rest.is_empty() => {
                    let this = self;
                    Ok(Response::Json(200, this.info()))
                }
                (_, "containers") => {
                    let parts: Vec<&str> = rest.split('/').collect();
                    berth_api::containers::handle(&self.engine, &req, &parts).await
                }
                (_, "exec") => berth_api::exec::handle(&self.engine, &req, rest).await,
                (_, "networks") => berth_api::networks::handle(&self.engine, &req, rest).await,
                ("POST", "commit") if rest.is_empty() => {
                    berth_api::container_ops::commit(&self.engine, &self.images, &req).await
                }
                ("GET", "system") if rest == "df" => {
                    berth_api::system::disk_usage(&self.engine, &self.images).await
                }
                (_, "volumes") => berth_api::volumes::handle(&self.engine, &req, rest).await,
                // No builder yet: an empty build cache, nothing to prune.
                ("POST", "build") if rest == "prune" => Ok(Response::Json(
                    200,
                    serde_json::json!({"CachesDeleted": null, "SpaceReclaimed": 0}),
                )),
                ("GET", "events") if rest.is_empty() => {
                    berth_api::system::events(&self.engine, &req).await
                }
                (_, "images") => {
                    let registry = self.registry();
                    berth_api::images::handle(&self.engine, &self.images, &registry, &req, rest)
                        .await
                }
                ("POST", "auth") if rest.is_empty() => {
                    berth_api::distribution::auth(&self.registry(), &req).await
                }
                _ => Err(ApiError::not_found(format!(
                    "page not found: {} {}",
                    req.method, req.path
                ))),
            }
        })
    }
}

/// The init binary's version line (`tini version 0.19.0`), as dockerd shows docker-init's.
/// Asked once (the binary does not change under a running daemon): `version` is a
/// command people and scripts run often, and a process per call costs a millisecond.
fn init_version(path: &Option<PathBuf>) -> String {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION
        .get_or_init(|| {
            let Some(path) = path else {
                return String::new();
            };
            std::process::Command::new(path)
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.split_whitespace().nth(2).map(|v| v.to_string()))
                .unwrap_or_default()
        })
        .clone()
}

impl DaemonBackend {
    fn registry(&self) -> Arc<RegistrySettings> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// SIGHUP: the keys dockerd reloads take their new values from the file; the
    /// others (paths, hosts, storage) keep theirs until a restart. A file that does not
    /// load changes nothing.
    pub fn reload(&self, new: Result<DaemonConfig, String>) {
        let new = match new {
            Ok(n) => n,
            Err(e) => {
                eprintln!("berthd: reload: {e}; the configuration is unchanged");
                return;
            }
        };
        let registry = match registry_settings(&new) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("berthd: reload: {e}; the configuration is unchanged");
                return;
            }
        };
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(registry);
        let mut c = self.config.write().unwrap_or_else(|p| p.into_inner());
        c.debug = new.debug;
        c.insecure_registries = new.insecure_registries;
        c.registry_mirrors = new.registry_mirrors;
        c.live_restore = new.live_restore;
        c.max_concurrent_downloads = new.max_concurrent_downloads;
        c.max_concurrent_uploads = new.max_concurrent_uploads;
        c.default_runtime = new.default_runtime;
        c.runtimes = new.runtimes;
        c.file = new.file;
        eprintln!("berthd: configuration reloaded");
    }

    fn info(&self) -> serde_json::Value {
        let guard = self.config.read().unwrap_or_else(|p| p.into_inner());
        let c = &*guard;
        let containers = self.engine.list().unwrap_or_default();
        let running = containers
            .iter()
            .filter(|c| c.state.running && !c.state.paused)
            .count();
        let paused = containers.iter().filter(|c| c.state.paused).count();
        serde_json::json!({
            "Name": hostname(),
            "DockerRootDir": c.data_root,
            "LoggingDriver": c.log_driver,
            "CgroupDriver": c.cgroup_driver,
            "CgroupVersion": if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "2" } else { "1" },
            "KernelVersion": kernel_version(),
            "OperatingSystem": operating_system(),
            "OSType": "linux",
            "Architecture": "x86_64",
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": mem_total(),
            "LiveRestoreEnabled": c.live_restore,
            "DefaultRuntime": c.default_runtime,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "Containers": containers.len(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": containers.len() - running - paused,
            "Images": self.images.list().len(),
            "InsecureRegistries": c.insecure_registries,
            "RegistryConfig": berth_api::distribution::registry_info(&c.insecure_registries, &c.registry_mirrors),
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Runtimes": {"berth": {"path": "berth-runtime"}},
            "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
            "InitBinary": self.engine.config.init_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "ContainerdCommit": {"ID": concat!("berth-shim ", env!("CARGO_PKG_VERSION"))},
            "RuncCommit": {"ID": concat!("berth-runtime ", env!("CARGO_PKG_VERSION"))},
            "InitCommit": {"ID": init_version(&self.engine.config.init_path)},
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"], ["Native Overlay Diff", "true"], ["userxattr", "false"]],
            "ID": daemon_id(&c.data_root),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Log": ["json-file"]},
        })
    }
}

/// A stable identity for this data-root (dockerd keeps one in engine-id).
fn daemon_id(data_root: &Path) -> String {
    let path = data_root.join("engine-id");
    if let Ok(id) = fs::read_to_string(&path) {
        return id.trim().to_string();
    }
    let mut buf = [0u8; 16];
    let _ = fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf));
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    let _ = fs::write(&path, &id);
    id
}

/// The size in bytes of a Docker size string (`10m`, `1g`, `512k`, `100`).
pub fn parse_size(s: &str) -> Option<u64> {
    berth_engine::engine::parse_log_size(s)
}

/// Held for the daemon's life: the default bridge device is this instance's alone.
static BRIDGE_LOCK: std::sync::OnceLock<fs::File> = std::sync::OnceLock::new();

/// Takes the default bridge for this instance, or says which instance has it.
fn claim_bridge(name: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let dir = PathBuf::from("/run/berth-bridges");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(dir.join(format!("{name}.lock")))
        .map_err(|e| e.to_string())?;
    // SAFETY: flock on an fd this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let owner = fs::read_to_string(dir.join(format!("{name}.owner"))).unwrap_or_default();
        return Err(format!(
            "bridge {name} is in use by another berthd ({})",
            owner.trim()
        ));
    }
    let _ = fs::write(
        dir.join(format!("{name}.owner")),
        format!("pid {}", std::process::id()),
    );
    let _ = BRIDGE_LOCK.set(f);
    Ok(())
}

/// The table name: stable for a data-root, so a restart replaces its own rules.
fn instance_table(data_root: &Path) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in data_root.as_os_str().as_encoded_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("berth-{h:08x}")
}

fn network_config(c: &DaemonConfig) -> Result<berth_network::NetConfig, DaemonError> {
    let mut bridge = match c.bridge.as_str() {
        "none" => None,
        "" => Some("berth0".to_string()),
        b => Some(b.to_string()),
    };
    if let Some(b) = &bridge {
        if let Err(e) = claim_bridge(b) {
            eprintln!("berthd: {e}: containers of this instance get no default bridge; set \"bridge\" in daemon.json");
            bridge = None;
        }
    }
    let mut pools = Vec::new();
    for p in &c.default_address_pools {
        let base: berth_network::ipam::Cidr = p
            .base
            .parse()
            .map_err(|e: String| DaemonError::Start(format!("default-address-pools: {e}")))?;
        pools.push(berth_network::ipam::Pool { base, size: p.size });
    }
    if pools.is_empty() {
        pools = berth_network::ipam::default_pools();
    }
    let mut upstreams: Vec<std::net::SocketAddr> = c
        .dns
        .iter()
        .filter_map(|d| d.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .collect();
    if upstreams.is_empty() {
        let text = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        upstreams = text
            .lines()
            .filter_map(|l| l.strip_prefix("nameserver"))
            .filter_map(|s| s.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| std::net::SocketAddr::new(ip, 53))
            .collect();
    }
    Ok(berth_network::NetConfig {
        data_dir: c.data_root.join("network"),
        netns_dir: c.exec_root.join("netns"),
        bridge,
        bip: c.bip.clone(),
        fixed_cidr: c.file.fixed_cidr.clone(),
        pools,
        mtu: (c.mtu != 1500).then_some(c.mtu),
        ip_masq: c.ip_masq,
        ip_forward: c.file.ip_forward.unwrap_or(true),
        icc: c.icc,
        ipv6: c.ipv6,
        fixed_cidr_v6: c.fixed_cidr_v6.clone(),
        table: instance_table(&c.data_root),
        dns_upstreams: upstreams,
    })
}

fn engine_config(c: &DaemonConfig) -> Result<EngineConfig, DaemonError> {
    let exe = std::env::current_exe().map_err(|e| io("locate berthd", e))?;
    let shim_path = exe
        .parent()
        .map(|d| d.join("berth-shim"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("berth-shim"));
    let init_path = c.init_path.clone().or_else(|| {
        [
            "/usr/bin/tini-static",
            "/usr/bin/docker-init",
            "/usr/bin/tini",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    });
    Ok(EngineConfig {
        data_root: c.data_root.clone(),
        exec_root: c.exec_root.clone(),
        shim_path,
        cgroup_parent: c.cgroup_parent.clone(),
        systemd_cgroup: c.cgroup_driver == "systemd",
        init_path,
        log_max_size: c.log_opts.get("max-size").and_then(|s| parse_size(s)),
        log_max_file: c.log_opts.get("max-file").and_then(|s| s.parse().ok()),
        default_ulimits: c
            .default_ulimits
            .iter()
            .map(|(name, u)| berth_engine::types::Ulimit {
                name: if u.name.is_empty() {
                    name.clone()
                } else {
                    u.name.clone()
                },
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
        default_init: c.init,
        default_dns: c.dns.clone(),
        default_dns_search: c.file.dns_search.clone().unwrap_or_default(),
        default_dns_options: c.file.dns_opts.clone().unwrap_or_default(),
    })
}

/// The registry client's settings from `insecure-registries`, `registry-mirrors`,
/// `max-concurrent-downloads` and `max-concurrent-uploads`.
fn registry_settings(c: &DaemonConfig) -> Result<RegistrySettings, DaemonError> {
    let config = berth_image::registry::RegistryConfig::new()
        .with_insecure_registries(&c.insecure_registries)
        .and_then(|r| r.with_mirrors(&c.registry_mirrors))
        .map_err(|e| DaemonError::Start(e.to_string()))?;
    Ok(RegistrySettings::new(
        config,
        c.max_concurrent_downloads as usize,
        c.max_concurrent_uploads as usize,
    ))
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn kernel_version() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn operating_system() -> String {
    let text = fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Runs berthd until SIGTERM or SIGINT; `reload` loads the configuration again for
/// SIGHUP.
pub async fn run(
    config: DaemonConfig,
    reload: impl Fn() -> Result<DaemonConfig, String>,
) -> Result<(), DaemonError> {
    for dir in [&config.data_root, &config.exec_root] {
        fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
    }
    take_pidfile(&config.pidfile)?;
    let mut sockets = Vec::new();
    for host in &config.hosts {
        let path = host
            .strip_prefix("unix://")
            .ok_or_else(|| DaemonError::UnsupportedHost(host.clone()))?;
        sockets.push(PathBuf::from(path));
    }
    let pidfile = config.pidfile.clone();
    let images =
        Arc::new(Images::open(&config.data_root).map_err(|e| DaemonError::Start(e.to_string()))?);
    let engine = Arc::new(
        Engine::open(
            engine_config(&config)?,
            Arc::new(LocalImages::new(images.clone())),
        )
        .map_err(|e| DaemonError::Start(e.to_string()))?,
    );
    let networks = berth_network::Networks::open(network_config(&config)?)
        .map_err(|e| DaemonError::Start(format!("networking: {e}")))?;
    engine.set_networks(Arc::new(networks));
    engine
        .restore()
        .map_err(|e| DaemonError::Start(e.to_string()))?;
    // What a crash left of pulls and loads (blobs and layers no image or container
    // uses) goes now.
    images
        .gc()
        .map_err(|e| DaemonError::Start(format!("image garbage collection: {e}")))?;
    let registry = Arc::new(registry_settings(&config)?);
    let daemon = Arc::new(DaemonBackend {
        config: std::sync::RwLock::new(config),
        engine,
        images,
        registry: std::sync::RwLock::new(registry),
    });
    let backend: Arc<dyn Backend> = daemon.clone();
    let mut tasks = Vec::new();
    for path in &sockets {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
        }
        let backend = backend.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            berth_api::serve_unix(&path, backend).await
        }));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| io("install SIGTERM handler", e))?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| io("install SIGHUP handler", e))?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => daemon.reload(reload()),
        }
    }
    for t in tasks {
        t.abort();
    }
    for path in &sockets {
        let _ = fs::remove_file(path);
    }
    let _ = fs::remove_file(&pidfile);
    Ok(())
}
