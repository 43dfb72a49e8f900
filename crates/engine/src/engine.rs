//! The engine: container create, start, stop, kill, wait, remove, list, inspect.
//! Synchronous and thread-safe; the API layer calls it from blocking tasks.
//! Per container, one lock serialises state changes; the store is the truth.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::container::{Container, State};
use crate::images::{ImageService, ImageServiceError};
use crate::shim_client::{read_exit_record, ShimClient, ShimError};
use crate::spec::{self, NetworkNamespace, SpecError, SpecInput};
use crate::store::{Store, StoreError};
use crate::types::{ContainerConfig, HostConfig};
use crate::{names, user};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not modified")]
    NotModified,
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => EngineError::NotFound(e.to_string()),
            StoreError::NameInUse { .. } => EngineError::Conflict(e.to_string()),
            StoreError::Ambiguous(_) => EngineError::Invalid(e.to_string()),
            other => EngineError::Internal(other.to_string()),
        }
    }
}

impl From<ImageServiceError> for EngineError {
    fn from(e: ImageServiceError) -> Self {
        match e {
            ImageServiceError::NotFound(_) => EngineError::NotFound(e.to_string()),
            ImageServiceError::Other(m) => EngineError::Internal(m),
        }
    }
}

impl From<SpecError> for EngineError {
    fn from(e: SpecError) -> Self {
        EngineError::Invalid(e.to_string())
    }
}

impl From<ShimError> for EngineError {
    fn from(e: ShimError) -> Self {
        EngineError::Internal(e.to_string())
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub shim_path: PathBuf,
    pub cgroup_parent: String,
    pub systemd_cgroup: bool,
    pub init_path: Option<PathBuf>,
    pub log_max_size: Option<u64>,
    pub log_max_file: Option<u32>,
    /// daemon.json `default-ulimits`: for containers that do not set the same one.
    pub default_ulimits: Vec<crate::types::Ulimit>,
    /// daemon.json `init`: `--init` for containers that do not say.
    pub default_init: bool,
    /// daemon.json `dns`, `dns-search`, `dns-opts`: for containers that do not set them.
    pub default_dns: Vec<String>,
    pub default_dns_search: Vec<String>,
    pub default_dns_options: Vec<String>,
}

impl EngineConfig {
    fn container_dir(&self, id: &str) -> PathBuf {
        self.data_root.join("containers").join(id)
    }
    /// Shim socket, exit record, bundle: under exec-root (tmpfs, gone at reboot).
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("containers").join(id)
    }
    pub(crate) fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runtime")
    }
}

pub struct Engine {
    pub config: EngineConfig,
    store: Store,
    images: Arc<dyn ImageService>,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Signalled whenever a container's state changes (wait, stop).
    changed: Arc<(Mutex<u64>, Condvar)>,
    /// Per container: how many times it has exited, and its last exit code (kept
    /// after removal so that `wait --condition removed` can report it).
    exits: Mutex<HashMap<String, (u64, i32)>>,
    /// Per container: attach requests made before it started, which its next start
    /// waits for (see [`Engine::expect_attach`]).
    pending_attach: Mutex<HashMap<String, Vec<u64>>>,
    next_ticket: std::sync::atomic::AtomicU64,
    /// Exec instances by ID (in memory, as dockerd keeps them).
    execs: Mutex<HashMap<String, crate::exec::Exec>>,
    /// Per container: restarts since its last stable run (the back-off's exponent).
    restart_attempts: Mutex<HashMap<String, u32>>,
    pub events: crate::events::Events,
    /// Bridges, addresses, ports (absent in unit tests and without privileges).
    networks: std::sync::OnceLock<Arc<berth_network::Networks>>,
    /// Every container record, decoded, for list (`ps -a` of a thousand containers
    /// would otherwise decode a thousand JSON records per call). Filled at the first
    /// list; each write goes to the store first and then here, under this lock, so
    /// the copy is never older than the store.
    records: std::sync::RwLock<Option<HashMap<String, Arc<Container>>>>,
}

/// `docker wait`'s conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::Invalid(format!(
                "invalid condition: {other:?}"
            ))),
        }
    }
}

pub(crate) fn now() -> String {
    berth_runtime::state::now_rfc3339()
}

fn random_id() -> Result<String> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| EngineError::Internal(format!("read /dev/urandom: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn internal(context: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("{context}: {e}"))
}

impl Engine {
    pub fn open(config: EngineConfig, images: Arc<dyn ImageService>) -> Result<Self> {
        for dir in [
            config.data_root.join("containers"),
            config.exec_root.join("containers"),
            config.runtime_root(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| internal(&format!("create {}", dir.display()), e))?;
        }
        let store = Store::open(&config.data_root.join("berth.db"))?;
        Ok(Engine {
            config,
            store,
            images,
            locks: Mutex::new(HashMap::new()),
            changed: Arc::new((Mutex::new(0), Condvar::new())),
            exits: Mutex::new(HashMap::new()),
            pending_attach: Mutex::new(HashMap::new()),
            next_ticket: std::sync::atomic::AtomicU64::new(1),
            execs: Mutex::new(HashMap::new()),
            restart_attempts: Mutex::new(HashMap::new()),
            events: Default::default(),
            networks: std::sync::OnceLock::new(),
            records: std::sync::RwLock::new(None),
        })
    }

    /// Hands the engine its network manager (once, before restore).
    pub fn set_networks(&self, networks: Arc<berth_network::Networks>) {
        let _ = self.networks.set(networks);
    }

    pub fn networks(&self) -> Option<&Arc<berth_network::Networks>> {
        self.networks.get()
    }

    pub(crate) fn lock_for(&self, id: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    fn notify(&self) {
        let (m, cv) = &*self.changed;
        let mut n = m.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        cv.notify_all();
    }

    pub fn resolve(&self, key: &str) -> Result<String> {
        self.store.resolve(key).map_err(|e| match e {
            StoreError::NotFound(k) => EngineError::NotFound(format!("No such container: {k}")),
            other => other.into(),
        })
    }

    pub fn get(&self, key: &str) -> Result<Container> {
        let id = self.resolve(key)?;
        Ok(self.store.get(&id)?)
    }

    pub fn create(
        &self,
        name: Option<&str>,
        config: ContainerConfig,
        host: HostConfig,
    ) -> Result<Container> {
        self.create_full(name, config, host, None)
    }

    /// `create` with the request's `NetworkingConfig`.
    pub fn create_full(
        &self,
        name: Option<&str>,
        config: ContainerConfig,
        host: HostConfig,
        networking: Option<&serde_json::Value>,
    ) -> Result<Container> {
        if let Some(n) = name {
            let n = n.trim_start_matches('/');
            if !names::valid(n) {
                return Err(EngineError::Invalid(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
        }
        if config.image.is_empty() {
            return Err(EngineError::Invalid("config.Image: no image given".into()));
        }
        validate_host_config(&host)?;
        let wanted = crate::net::plan(
            self.networks.get().map(|n| n.as_ref()),
            &config,
            &host,
            networking,
        )?;
        crate::net::port_specs(&config, &host)?;
        let image = self.images.resolve(&config.image).map_err(|e| match e {
            ImageServiceError::NotFound(_) => {
                EngineError::NotFound(format!("No such image: {}", config.image))
            }
            other => other.into(),
        })?;
        let id = random_id()?;
        let mut host = host;
        // The daemon's defaults, as dockerd applies them at create.
        for u in &self.config.default_ulimits {
            if !host.ulimits.iter().any(|x| x.name == u.name) {
                host.ulimits.push(u.clone());
            }
        }
        if host.init.is_none() && self.config.default_init {
            host.init = Some(true);
        }
        if host.log_config.typ.is_empty() {
            // The daemon's driver, as dockerd fills it in (clients read it: docker-py
            // only collects the output of `run` when it says json-file).
            host.log_config.typ = "json-file".into();
        }
        // Render once with a placeholder root to report bad settings now, as a 400,
        // rather than at start.
        let mut cfg = config.clone();
        if cfg.user.is_empty() {
            cfg.user = image.user.clone();
        }
        if cfg.stop_signal.is_none() {
            cfg.stop_signal = image.stop_signal.clone();
        }
        cfg.healthcheck = crate::health::merge(cfg.healthcheck.take(), image.healthcheck.as_ref());
        if !image.exposed_ports.is_empty() {
            let ports = cfg.exposed_ports.get_or_insert_with(Default::default);
            for p in &image.exposed_ports {
                ports
                    .entry(p.clone())
                    .or_insert_with(|| serde_json::json!({}));
            }
        }
        let probe = SpecInput {
            id: &id,
            config: &cfg,
            host: &host,
            image: &image.defaults,
            rootfs: Path::new("/"),
            user: Default::default(),
            cgroup_parent: &self.config.cgroup_parent,
            systemd_cgroup: self.config.systemd_cgroup,
            etc_files: vec![],
            init_path: self
                .config
                .init_path
                .as_deref()
                .or(Some(Path::new("/sbin/docker-init"))),
            network: NetworkNamespace::New,
            ipc_path: None,
            pid_path: None,
        };
        let rendered = spec::build(&probe)?;
        let mut mount_points = self.plan_mounts(&cfg, &host, &image.volumes)?;
        let args: Vec<String> =
            serde_json::from_value(rendered["process"]["args"].clone()).unwrap_or_default();
        let dir = self.config.container_dir(&id);
        std::fs::create_dir_all(&dir).map_err(|e| internal("create container dir", e))?;
        let mut record = Container {
            id: id.clone(),
            name: String::new(),
            created: now(),
            path: args.first().cloned().unwrap_or_default(),
            args: args.iter().skip(1).cloned().collect(),
            config: cfg,
            host_config: host,
            image: image.id.clone(),
            state: State::created(),
            log_path: dir.join(format!("{id}-json.log")).display().to_string(),
            hostname_path: dir.join("hostname").display().to_string(),
            hosts_path: dir.join("hosts").display().to_string(),
            resolv_conf_path: dir.join("resolv.conf").display().to_string(),
            network: crate::net::ContainerNetwork {
                wanted,
                attached: None,
            },
            ..Default::default()
        };
        let made_volumes = match self.create_volumes(&mut mount_points) {
            Ok(made) => made,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        record.mount_points = mount_points;
        let result = match name {
            Some(n) => {
                let n = n.trim_start_matches('/');
                record.name = format!("/{n}");
                self.insert_record(&id, n, &record)
            }
            None => {
                let seed = u64::from_str_radix(&id[..12], 16).unwrap_or(0);
                let mut attempt = 0;
                loop {
                    let n =
                        names::generate(seed.wrapping_add(attempt as u64 * 7919), attempt.min(1));
                    record.name = format!("/{n}");
                    match self.insert_record(&id, &n, &record) {
                        Err(StoreError::NameInUse { .. }) if attempt < 20 => attempt += 1,
                        other => break other,
                    }
                }
            }
        };
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&dir);
            self.undo_volumes(&made_volumes);
            return Err(e.into());
        }
        self.container_event(&record, "create", &[]);
        Ok(record)
    }

    pub(crate) fn save(&self, c: &Container) -> Result<()> {
        {
            let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
            self.store.update(&c.id, c)?;
            if let Some(m) = records.as_mut() {
                m.insert(c.id.clone(), Arc::new(c.clone()));
            }
        }
        self.notify();
        Ok(())
    }

    /// Inserts a new record into the store (and the list cache).
    fn insert_record(&self, id: &str, name: &str, record: &Container) -> Result<(), StoreError> {
        let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
        self.store.insert(id, name, record)?;
        if let Some(m) = records.as_mut() {
            m.insert(id.to_string(), Arc::new(record.clone()));
        }
        Ok(())
    }

    /// Files the container sees as /etc/hostname, /etc/hosts, /etc/resolv.conf.
    fn write_etc_files(
        &self,
        c: &Container,
        hostname: &str,
        attached: Option<&berth_network::Attached>,
    ) -> Result<()> {
        let w = |path: &str, text: String| {
            std::fs::write(path, text).map_err(|e| internal(&format!("write {path}"), e))
        };
        w(&c.hostname_path, format!("{hostname}\n"))?;
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        let gateway = attached
            .and_then(|a| a.endpoints.iter().find_map(|e| e.gateway))
            .map(|g| g.to_string());
        for extra in &c.host_config.extra_hosts {
            if let Some((host, ip)) = extra.split_once(':').or_else(|| extra.split_once('=')) {
                let ip = if ip == "host-gateway" {
                    gateway.clone().unwrap_or_else(|| ip.to_string())
                } else {
                    ip.to_string()
                };
                hosts.push_str(&format!("{ip}\t{host}\n"));
            }
        }
        // Legacy links (default bridge): the linked container under its alias.
        for (alias, other, ip) in self.links_of(c) {
            let oname = other.name.trim_start_matches('/');
            hosts.push_str(&format!("{ip}\t{alias} {} {oname}\n", other.short_id()));
        }
        if let Some(a) = attached {
            for e in &a.endpoints {
                if let Some(ip) = e.ip {
                    hosts.push_str(&format!("{ip}\t{hostname}\n"));
                }
            }
        }
        w(&c.hosts_path, hosts)?;
        let embedded_dns = attached.is_some_and(|a| {
            a.endpoints.iter().any(|e| {
                self.networks
                    .get()
                    .and_then(|n| n.get(&e.network_id).ok())
                    .is_some_and(|n| n.has_dns())
            })
        });
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut servers = Vec::new();
        let mut search: Vec<String> = Vec::new();
        let mut options: Vec<String> = Vec::new();
        for line in host_resolv.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                // Loopback resolvers of the host are unreachable from the container.
                Some("nameserver") => {
                    if let Some(ns) = words.next() {
                        if !(ns.starts_with("127.") || ns == "::1") {
                            servers.push(ns.to_string());
                        }
                    }
                }
                Some("search") | Some("domain") => search = words.map(str::to_string).collect(),
                Some("options") => options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        let pick = |own: &Vec<String>, daemon: &Vec<String>| -> Option<Vec<String>> {
            if !own.is_empty() {
                Some(own.clone())
            } else if !daemon.is_empty() {
                Some(daemon.clone())
            } else {
                None
            }
        };
        if let Some(v) = pick(&c.host_config.dns, &self.config.default_dns) {
            servers = v;
        }
        if let Some(v) = pick(&c.host_config.dns_search, &self.config.default_dns_search) {
            search = v;
        }
        if let Some(v) = pick(&c.host_config.dns_options, &self.config.default_dns_options) {
            options = v;
        }
        if embedded_dns {
            // The embedded resolver forwards to the servers above, from the host.
            servers = vec!["127.0.0.11".into()];
            if !options.iter().any(|o| o.starts_with("ndots:")) {
                options.push("ndots:0".into());
            }
        } else if servers.is_empty() && attached.is_some() {
            // As Docker: with no usable resolver of the host's, public ones.
            servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
        }
        let mut resolv = String::new();
        for s in &servers {
            resolv.push_str(&format!("nameserver {s}\n"));
        }
        if !search.is_empty() {
            resolv.push_str(&format!("search {}\n", search.join(" ")));
        }
        if !options.is_empty() {
            resolv.push_str(&format!("options {}\n", options.join(" ")));
        }
        w(&c.resolv_conf_path, resolv)
    }

    pub fn start(self: &Arc<Self>, key: &str) -> Result<()> {
        let id = self.resolve(key)?;
        let result = self.start_resolved(&id);
        if result.is_ok() {
            // After start_resolved has let go of the container's lock.
            if let Ok(c) = self.get(&id) {
                self.monitor_health(&c);
            }
        }
        if let Err(e) = &result {
            // A container that could not start is removed at once when it was made
            // with --rm (the client waits for its removal), as dockerd does.
            let auto_remove = self
                .store
                .get::<Container>(&id)
                .is_ok_and(|c| c.host_config.auto_remove && !c.state.running);
            if auto_remove && !matches!(e, EngineError::NotModified) {
                let _ = self.remove_with_volumes(&id, true, true);
            }
        }
        result
    }

    fn start_resolved(self: &Arc<Self>, id: &str) -> Result<()> {
        let id = id.to_string();
        let lock = self.lock_for(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c: Container = self.store.get(&id)?;
        if c.state.running {
            return Err(EngineError::NotModified);
        }
        let image = self.images.resolve(&c.image)?;
        let rootfs = self
            .images
            .mount_rootfs(&id, &c.image, c.host_config.auto_remove)?;
        let merged = PathBuf::from(&rootfs.merged_dir);
        let resolved = user::resolve(&merged, &c.config.user, &c.host_config.group_add)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let hostname = if c.config.hostname.is_empty() {
            c.short_id().to_string()
        } else {
            c.config.hostname.clone()
        };
        let network = match c.host_config.network_mode.as_str() {
            "host" => NetworkNamespace::Host,
            m if m.starts_with("container:") => {
                let other = self.get(&m["container:".len()..])?;
                if !other.state.running {
                    return Err(EngineError::Conflict(format!(
                        "cannot join network of a non running container: {}",
                        other.id
                    )));
                }
                NetworkNamespace::Path(PathBuf::from(format!("/proc/{}/ns/net", other.state.pid)))
            }
            _ => NetworkNamespace::New,
        };
        // Bridge networks: the namespace is made and wired before the container exists.
        let attached = match (&network, self.networks.get()) {
            (NetworkNamespace::New, Some(nets)) if !c.network.wanted.is_empty() => {
                let attach = || -> Result<berth_network::Attached> {
                    let specs = crate::net::endpoint_specs(
                        &c.network.wanted,
                        crate::net::primary_name(&c.host_config),
                    )?;
                    let ports = crate::net::port_specs(&c.config, &c.host_config)?;
                    Ok(nets.attach(&berth_network::AttachSpec {
                        container_id: &id,
                        name: c.name.trim_start_matches('/'),
                        networks: specs,
                        ports,
                    })?)
                };
                match attach() {
                    Ok(a) => Some(a),
                    Err(e) => {
                        let _ = self.images.unmount_rootfs(&id);
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        let network = match &attached {
            Some(a) => NetworkNamespace::Path(PathBuf::from(&a.sandbox_key)),
            None => network,
        };
        let release = |engine: &Engine| {
            if attached.is_some() {
                if let Some(nets) = engine.networks.get() {
                    nets.release(&id);
                }
            }
            let _ = engine.images.unmount_rootfs(&id);
        };
        if let Err(e) = self.write_etc_files(&c, &hostname, attached.as_ref()) {
            release(self);
            return Err(e);
        }
        // Legacy links add the linked containers' addresses and ports to the environment.
        let with_links;
        let config = if c.host_config.links.is_empty() {
            &c.config
        } else {
            let mut linked = c.config.clone();
            linked.env.extend(self.link_env(&c));
            with_links = linked;
            &with_links
        };
        let input = SpecInput {
            id: &id,
            config,
            host: &c.host_config,
            image: &image.defaults,
            rootfs: &merged,
            user: resolved,
            cgroup_parent: &self.config.cgroup_parent,
            systemd_cgroup: self.config.systemd_cgroup,
            etc_files: vec![
                (PathBuf::from(&c.hostname_path), "/etc/hostname"),
                (PathBuf::from(&c.hosts_path), "/etc/hosts"),
                (PathBuf::from(&c.resolv_conf_path), "/etc/resolv.conf"),
            ],
            init_path: self.config.init_path.as_deref(),
            network,
            ipc_path: None,
            pid_path: None,
        };
        let state_dir = self.config.state_dir(&id);
        let bundle = state_dir.join("bundle");
        let prepared = spec::build(&input)
            .map_err(EngineError::from)
            .and_then(|rendered| self.attach_mounts(&c, &merged, rendered))
            .and_then(|rendered| {
                self.wait_old_shim(&id);
                let _ = std::fs::remove_dir_all(&state_dir);
                std::fs::create_dir_all(&bundle).map_err(|e| internal("create bundle", e))?;
                std::fs::write(bundle.join("config.json"), rendered.to_string())
                    .map_err(|e| internal("write config.json", e))
            });
        if let Err(e) = prepared {
            release(self);
            return Err(e);
        }
        let pid = match self.spawn_shim(&c, &bundle, &state_dir) {
            Ok(pid) => pid,
            Err(e) => {
                release(self);
                c.state.error = e.to_string();
                let _ = self.save(&c);
                return Err(e);
            }
        };
        c.rootfs = rootfs;
        if let (Some(nets), Some(a)) = (self.networks.get(), &attached) {
            for e in &a.endpoints {
                if let Ok(n) = nets.get(&e.network_id) {
                    self.network_event(&n, "connect", &id);
                }
            }
        }
        c.network.attached = attached;
        c.state = State {
            status: "running".into(),
            running: true,
            pid,
            started_at: now(),
            finished_at: c.state.finished_at.clone(),
            ..Default::default()
        };
        c.manually_stopped = false;
        self.save(&c)?;
        self.container_event(&c, "start", &[]);
        self.watch(id);
        Ok(())
    }

    /// Start berth-shim detached and wait for its readiness line on fd 3.
    fn spawn_shim(&self, c: &Container, bundle: &Path, state_dir: &Path) -> Result<i32> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two fds into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(internal("pipe", std::io::Error::last_os_error()));
        }
        // SAFETY: both fds were just created and are owned here.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut cmd = Command::new(&self.config.shim_path);
        cmd.arg("--id")
            .arg(&c.id)
            .arg("--bundle")
            .arg(bundle)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--runtime-root")
            .arg(self.config.runtime_root())
            .arg("--log-path")
            .arg(&c.log_path);
        // The container's --log-opt wins over the daemon's log-opts.
        let opts = &c.host_config.log_config.config;
        let max_size = opts
            .get("max-size")
            .and_then(|s| parse_log_size(s))
            .or(self.config.log_max_size);
        let max_file = opts
            .get("max-file")
            .and_then(|s| s.parse::<u32>().ok())
            .or(self.config.log_max_file);
        if let Some(size) = max_size {
            cmd.arg("--log-max-size").arg(size.to_string());
        }
        if let Some(n) = max_file {
            cmd.arg("--log-max-file").arg(n.to_string());
        }
        if c.config.tty {
            cmd.arg("--tty");
        }
        if c.config.open_stdin {
            cmd.arg("--stdin");
        }
        if c.config.stdin_once {
            cmd.arg("--stdin-once");
        }
        if self.config.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        if let (true, Some([h, w])) = (
            c.config.tty,
            c.host_config
                .console_size
                .as_deref()
                .and_then(|s| <[u16; 2]>::try_from(s).ok()),
        ) {
            if h > 0 && w > 0 {
                cmd.arg("--console-size").arg(format!("{h}x{w}"));
            }
        }
        let attachers = self.take_pending_attach(&c.id);
        if attachers > 0 {
            cmd.arg("--attach-wait").arg(attachers.to_string());
        }
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir.join("shim.log"))
            .map_err(|e| internal("open shim.log", e))?;
        // The readiness pipe goes as the shim's stdout: with no pre_exec hook, std
        // starts the shim with posix_spawn (a vfork), not a fork of berthd's whole
        // address space — a few milliseconds on every start.
        cmd.arg("--ready-stdout")
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end))
            .stderr(stderr);
        let mut child = cmd
            .spawn()
            .map_err(|e| internal(&format!("start {}", self.config.shim_path.display()), e))?;
        // The Command holds our copy of the write end: drop it, or EOF never comes.
        drop(cmd);
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(std::fs::File::from(read_end));
        let read = reader.read_line(&mut line);
        // The shim's first process exits as soon as it has forked the real shim.
        let _ = child.wait();
        read.map_err(|e| internal("read shim readiness", e))?;
        let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|_| {
            let log = std::fs::read_to_string(state_dir.join("shim.log")).unwrap_or_default();
            EngineError::Internal(format!("shim failed to start: {}", log.trim()))
        })?;
        if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
            return Err(EngineError::Invalid(format!(
                "failed to create task for container: {err}"
            )));
        }
        Ok(v.get("pid").and_then(|p| p.as_i64()).unwrap_or(0) as i32)
    }

    /// For the container operations in [`crate::ops`].
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn image_service(&self) -> &Arc<dyn ImageService> {
        &self.images
    }

    /// A container event, with the attributes Docker gives it (image, name, labels).
    pub fn container_event(&self, c: &Container, action: &str, extra: &[(&str, String)]) {
        let mut attrs: std::collections::BTreeMap<String, String> = c
            .config
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        attrs.insert("image".into(), c.config.image.clone());
        attrs.insert("name".into(), c.name.trim_start_matches('/').to_string());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        self.events.publish("container", action, &c.id, attrs);
    }

    pub(crate) fn restart_attempts(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.restart_attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Changes a stored container under its lock (no-op when it is gone).
    pub(crate) fn update_record(&self, id: &str, change: impl FnOnce(&mut Container)) {
        let lock = self.lock_for(id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(mut c) = self.store.get::<Container>(id) {
            change(&mut c);
            let _ = self.save(&c);
        }
    }

    pub(crate) fn mark_restarting(&self, id: &str) {
        self.update_record(id, |c| {
            c.state.restarting = true;
            c.state.status = "restarting".into();
        });
    }

    pub(crate) fn clear_restarting(&self, id: &str) {
        self.update_record(id, |c| {
            c.state.restarting = false;
            c.state.status = "exited".into();
        });
    }

    pub(crate) fn count_restart(&self, id: &str) {
        self.update_record(id, |c| c.restart_count += 1);
    }

    pub(crate) fn execs(&self) -> std::sync::MutexGuard<'_, HashMap<String, crate::exec::Exec>> {
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An attach made before start (`docker run`, `docker start -a`): the next start
    /// holds the program until this client has connected to the shim, so it sees
    /// every byte. Returns a ticket for [`Engine::attach_settled`].
    pub fn expect_attach(&self, id: &str) -> u64 {
        let ticket = self
            .next_ticket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pending_attach
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .push(ticket);
        ticket
    }

    /// The attach client has connected, or given up: a later start need not wait.
    pub fn attach_settled(&self, id: &str, ticket: u64) {
        let mut pending = self
            .pending_attach
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(t) = pending.get_mut(id) {
            t.retain(|x| *x != ticket);
            if t.is_empty() {
                pending.remove(id);
            }
        }
    }

    fn take_pending_attach(&self, id: &str) -> usize {
        self.pending_attach
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .map_or(0, |t| t.len())
    }

    /// At daemon start: re-adopt the containers whose shim still runs, record the
    /// others as exited with the code their shim wrote (or 255 when none survived), and
    /// remove what a crash left half-created.
    pub fn restore(self: &Arc<Self>) -> Result<()> {
        for c in self.list()? {
            if !c.state.running {
                // A crash between mounting the rootfs and starting (or after an exit
                // that was never recorded) leaves a mount nobody uses.
                let _ = self.images.unmount_rootfs(&c.id);
                continue;
            }
            let client = ShimClient::new(&c.id, &self.config.state_dir(&c.id));
            match client.state() {
                Ok(s) if s.exit_code.is_none() => {
                    if let (Some(nets), Some(a)) = (self.networks.get(), &c.network.attached) {
                        nets.restore(&c.id, c.name.trim_start_matches('/'), a);
                    }
                    self.monitor_health(&c);
                    self.watch(c.id.clone())
                }
                Ok(s) => {
                    let code = s.exit_code.unwrap_or(255);
                    self.on_exit(&c.id, (code, s.exited_at.unwrap_or_else(now), s.oom_killed));
                }
                Err(_) => {
                    let exit = read_exit_record(&self.config.state_dir(&c.id))
                        .map(|r| (r.exit_code, r.exited_at, r.oom_killed))
                        .unwrap_or((255, now(), false));
                    self.on_exit(&c.id, exit);
                }
            }
        }
        if let Some(nets) = self.networks.get() {
            nets.finish_restore()?;
        }
        self.sweep_orphans()?;
        self.reconcile_volumes();
        self.restart_on_daemon_start();
        Ok(())
    }

    /// A thread that waits for the container to exit and records it.
    pub fn watch(self: &Arc<Self>, id: String) {
        let engine = self.clone();
        let _ = std::thread::Builder::new()
            .name(format!("wait-{}", &id[..12.min(id.len())]))
            // Virtual size only: the pages a wait touches (SQLite, unmount) are what it costs.
            .stack_size(1 << 20)
            .spawn(move || {
                let client = ShimClient::new(&id, &engine.config.state_dir(&id));
                let exit = client.wait().ok().and_then(|s| {
                    s.exit_code
                        .map(|code| (code, s.exited_at.unwrap_or_else(now), s.oom_killed))
                });
                let exit = exit.or_else(|| {
                    read_exit_record(&engine.config.state_dir(&id))
                        .map(|r| (r.exit_code, r.exited_at, r.oom_killed))
                });
                engine.on_exit(&id, exit.unwrap_or((255, now(), false)));
            });
    }

    fn on_exit(self: &Arc<Self>, id: &str, (code, at, oom): (i32, String, bool)) {
        let lock = self.lock_for(id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(mut c) = self.store.get::<Container>(id) else {
            return;
        };
        c.state = State {
            status: "exited".into(),
            exit_code: code,
            oom_killed: oom,
            started_at: c.state.started_at.clone(),
            finished_at: at,
            ..Default::default()
        };
        if let Some(nets) = self.networks.get() {
            nets.release(id);
            for e in c.network.attached.iter().flat_map(|a| a.endpoints.iter()) {
                if let Ok(n) = nets.get(&e.network_id) {
                    self.network_event(&n, "disconnect", id);
                }
            }
        }
        c.network.attached = None;
        {
            let mut exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
            let e = exits.entry(id.to_string()).or_insert((0, 0));
            e.0 += 1;
            e.1 = code;
        }
        let _ = self.save(&c);
        // After the record, which wakes the waiters: the unmount of a lasting
        // overlay syncs its upper filesystem, which on a busy disk takes a while
        // the exit should not wait for. Under the lock, so that a start, a
        // removal or a copy that follows finds it done.
        let _ = self.images.unmount_rootfs(id);
        drop(_guard);
        self.release_volumes();
        if oom {
            self.container_event(&c, "oom", &[]);
        }
        self.container_event(&c, "die", &[("exitCode", code.to_string())]);
        if c.host_config.auto_remove {
            // `--rm` takes the container's anonymous volumes with it, as Docker does.
            let _ = self.remove_with_volumes(id, true, true);
        } else {
            self.schedule_restart(&c, code);
        }
    }

    pub fn kill(&self, key: &str, signal: i32) -> Result<()> {
        let c = self.get(key)?;
        if !c.state.running {
            return Err(EngineError::Conflict(format!(
                "Cannot kill container: {}: Container {} is not running",
                key, c.id
            )));
        }
        ShimClient::new(&c.id, &self.config.state_dir(&c.id)).kill(signal, false)?;
        if signal == libc::SIGKILL {
            self.thaw_after_signal(&c);
        }
        self.container_event(&c, "kill", &[("signal", signal.to_string())]);
        Ok(())
    }

    /// `POST /containers/{id}/resize`: the init's tty.
    pub fn resize(&self, key: &str, height: u16, width: u16) -> Result<()> {
        let c = self.get(key)?;
        if !c.state.running {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        ShimClient::new(&c.id, &self.config.state_dir(&c.id)).resize(height, width, None)?;
        Ok(())
    }

    /// Wait until the container is not running, or the deadline passes.
    fn wait_stopped(&self, id: &str, deadline: Option<Instant>) -> Result<Container> {
        let (m, cv) = &*self.changed;
        let mut n = m.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let c: Container = self.store.get(id)?;
            if !c.state.running {
                return Ok(c);
            }
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(c);
                    }
                    (d - now).min(Duration::from_millis(200))
                }
                None => Duration::from_millis(200),
            };
            n = cv
                .wait_timeout(n, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    pub fn stop(&self, key: &str, timeout: Option<i64>) -> Result<()> {
        let mut c = self.get(key)?;
        if c.state.restarting {
            // Waiting for its next restart: stopping it cancels that.
            self.update_record(&c.id, |c| {
                c.manually_stopped = true;
                c.state.restarting = false;
                c.state.status = "exited".into();
            });
            self.notify();
            return Ok(());
        }
        if !c.state.running {
            return Err(EngineError::NotModified);
        }
        c.manually_stopped = true;
        self.save(&c)?;
        let client = ShimClient::new(&c.id, &self.config.state_dir(&c.id));
        let signal = c
            .config
            .stop_signal
            .as_deref()
            .and_then(signal_number)
            .unwrap_or(libc::SIGTERM);
        let secs = timeout.or(c.config.stop_timeout).unwrap_or(10);
        if client.kill(signal, false).is_ok() {
            self.container_event(&c, "kill", &[("signal", signal.to_string())]);
        }
        self.thaw_after_signal(&c);
        if secs >= 0 {
            let after = self.wait_stopped(
                &c.id,
                Some(Instant::now() + Duration::from_secs(secs as u64)),
            )?;
            if !after.state.running {
                self.container_event(&c, "stop", &[]);
                return Ok(());
            }
        } else {
            self.wait_stopped(&c.id, None)?;
            self.container_event(&c, "stop", &[]);
            return Ok(());
        }
        if client.kill(libc::SIGKILL, true).is_ok() {
            self.container_event(&c, "kill", &[("signal", libc::SIGKILL.to_string())]);
        }
        self.wait_stopped(&c.id, Some(Instant::now() + Duration::from_secs(30)))?;
        self.container_event(&c, "stop", &[]);
        Ok(())
    }

    /// `docker wait`: block until the condition holds; the exit code.
    pub fn wait(&self, key: &str, condition: WaitCondition) -> Result<i32> {
        self.waiter(key, condition)?.wait()
    }

    /// A wait that counts exits from now: the API registers it before it answers the
    /// request's headers, so that `docker run` (wait, then start) sees the first exit.
    pub fn waiter(&self, key: &str, condition: WaitCondition) -> Result<Waiter<'_>> {
        let id = self.resolve(key)?;
        let start = self.exit_count(&id).0;
        Ok(Waiter {
            engine: self,
            id,
            condition,
            start,
        })
    }

    fn exit_count(&self, id: &str) -> (u64, i32) {
        self.exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .unwrap_or((0, 0))
    }

    fn wait_from(&self, id: &str, condition: WaitCondition, start: u64) -> Result<i32> {
        let id = id.to_string();
        let exits_now = |e: &Self| e.exit_count(&id);
        match condition {
            WaitCondition::NotRunning => Ok(self.wait_stopped(&id, None)?.state.exit_code),
            WaitCondition::NextExit | WaitCondition::Removed => {
                let (m, cv) = &*self.changed;
                let mut n = m.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let (count, code) = exits_now(self);
                    let exists = self.store.get::<Container>(&id).is_ok();
                    match condition {
                        WaitCondition::NextExit if count > start => return Ok(code),
                        WaitCondition::NextExit if !exists => return Ok(code),
                        WaitCondition::Removed if !exists => return Ok(code),
                        _ => {}
                    }
                    n = cv
                        .wait_timeout(n, Duration::from_millis(200))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            }
        }
    }

    pub fn remove(&self, key: &str, force: bool) -> Result<()> {
        self.remove_with_volumes(key, force, false)
    }

    /// `docker rm [-f] [-v]`: with `volumes`, its anonymous volumes go too.
    pub fn remove_with_volumes(&self, key: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.get(key)?;
        if c.state.running {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"{}\": container is running: stop the container before removing or force remove",
                    c.name
                )));
            }
            let client = ShimClient::new(&c.id, &self.config.state_dir(&c.id));
            let _ = client.kill(libc::SIGKILL, true);
            self.thaw_after_signal(&c);
            self.wait_stopped(&c.id, Some(Instant::now() + Duration::from_secs(30)))?;
        }
        let lock = self.lock_for(&c.id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        // What can refuse (a busy mount) goes first, while the record can still stay.
        self.images.unmount_rootfs(&c.id)?;
        {
            let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
            self.store.remove(&c.id)?;
            if let Some(m) = records.as_mut() {
                m.remove(&c.id);
            }
        }
        // Gone from the API: a `wait?condition=removed` (docker run --rm) answers now,
        // while the files go, still under the container's lock.
        self.notify();
        self.remove_files(&c.id);
        if volumes {
            self.remove_anonymous_volumes(&c);
        }
        self.container_event(&c, "destroy", &[]);
        Ok(())
    }

    /// The writable layer, the container's directory and its state directory. What
    /// fails here is only logged (the record is gone); the next start sweeps it.
    fn remove_files(&self, id: &str) {
        self.wait_old_shim(id);
        if let Err(e) = self.images.remove_rootfs(id) {
            eprintln!(
                "berthd: container {id}: remove its filesystem: {e}; retried at the next start"
            );
        }
        for dir in [self.config.state_dir(id), self.config.container_dir(id)] {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!(
                        "berthd: remove {}: {e}; retried at the next start",
                        dir.display()
                    );
                }
            }
        }
    }

    /// A shim answers the exit before its last cleanup (the runtime's delete of the
    /// cgroups and state): a start again, or the removal of the files, waits for the
    /// shim of the container's last run to be gone (at most a few seconds).
    fn wait_old_shim(&self, id: &str) {
        let Some(pid) = std::fs::read_to_string(self.config.state_dir(id).join("shim.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 0)
        else {
            return;
        };
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return;
        }
        // SAFETY: a new fd, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // Opened first, checked after: the fd stays on the process it was opened for,
        // which the command line says is this container's shim (or has exited).
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !cmdline.split(|b| *b == 0).any(|a| a == id.as_bytes()) {
            return;
        }
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 5000) };
    }

    /// At start: the files of containers without a record (a crash or a failure
    /// after their removal from the store).
    fn sweep_orphans(&self) -> Result<()> {
        // IDs from the table itself: a record that does not decode still owns its files.
        let known: std::collections::HashSet<String> = self.store.ids()?.into_iter().collect();
        let is_id = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let mut orphans: std::collections::BTreeSet<String> = self
            .images
            .container_rootfs_ids()
            .into_iter()
            .filter(|id| is_id(id) && !known.contains(id))
            .collect();
        for root in [&self.config.data_root, &self.config.exec_root] {
            let Ok(entries) = std::fs::read_dir(root.join("containers")) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if is_id(&name) && !known.contains(&name) {
                    orphans.insert(name);
                }
            }
        }
        for id in orphans {
            // remove_rootfs (in remove_files) unmounts first.
            self.remove_files(&id);
        }
        Ok(())
    }

    /// The size of every image a container uses, by image ID (for `ps -s`).
    pub fn image_sizes(&self) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for c in self.list().unwrap_or_default() {
            if !out.contains_key(&c.image) {
                let size = self.images.size(&c.image).unwrap_or(0);
                out.insert(c.image.clone(), size);
            }
        }
        out
    }

    pub fn list(&self) -> Result<Vec<Container>> {
        Ok(self
            .list_shared()?
            .into_iter()
            .map(|c| (*c).clone())
            .collect())
    }

    /// Every container, newest first, shared with the cache (no copies: what `ps`
    /// reads for a thousand containers).
    pub fn list_shared(&self) -> Result<Vec<Arc<Container>>> {
        let cached = self
            .records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|m| m.values().cloned().collect::<Vec<_>>());
        let mut all = match cached {
            Some(all) => all,
            None => {
                let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
                let all: Vec<Arc<Container>> = self
                    .store
                    .all::<Container>()?
                    .into_iter()
                    .map(Arc::new)
                    .collect();
                *records = Some(all.iter().map(|c| (c.id.clone(), c.clone())).collect());
                all
            }
        };
        all.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(all)
    }
}

/// A registered `docker wait`; see [`Engine::waiter`].
pub struct Waiter<'a> {
    engine: &'a Engine,
    id: String,
    condition: WaitCondition,
    start: u64,
}

impl Waiter<'_> {
    /// Blocks until the condition holds; the exit code.
    pub fn wait(self) -> Result<i32> {
        self.engine.wait_from(&self.id, self.condition, self.start)
    }
}

/// A `max-size` log option in bytes: `10m`, `1g`, `512k`, `100`, as Docker reads it.
pub fn parse_log_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_end_matches('b');
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

/// The HostConfig checks dockerd makes at create, with its messages.
fn validate_host_config(h: &HostConfig) -> Result<()> {
    let policy = &h.restart_policy;
    match policy.name.as_str() {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        other => {
            return Err(EngineError::Invalid(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            )))
        }
    }
    if policy.maximum_retry_count < 0 {
        return Err(EngineError::Invalid(
            "invalid restart policy: maximum retry count cannot be negative".into(),
        ));
    }
    if policy.maximum_retry_count > 0 && policy.name != "on-failure" {
        return Err(EngineError::Invalid(format!(
            "invalid restart policy: maximum retry count can only be used with 'on-failure', not '{}'",
            policy.name
        )));
    }
    let log = &h.log_config;
    if !matches!(
        log.typ.as_str(),
        "" | "json-file" | "local" | "none" | "journald"
    ) {
        return Err(EngineError::Invalid(format!(
            "failed to create task for container: logger: no log driver named '{}' is registered",
            log.typ
        )));
    }
    for (k, v) in &log.config {
        let ok = match k.as_str() {
            "max-size" => parse_log_size(v).is_some(),
            "max-file" => v.parse::<u32>().is_ok_and(|n| n > 0),
            "compress" | "labels" | "labels-regex" | "env" | "env-regex" | "tag" | "mode"
            | "max-buffer-size" => true,
            _ => false,
        };
        if !ok {
            return Err(EngineError::Invalid(format!(
                "unknown log opt '{k}' for json-file log driver, or a bad value: {v:?}"
            )));
        }
    }
    if h.auto_remove && !matches!(policy.name.as_str(), "" | "no") {
        return Err(EngineError::Invalid(
            "can't create 'AutoRemove' container with restart policy".into(),
        ));
    }
    for (field, value) in [
        ("CpusetCpus", &h.cpuset_cpus),
        ("CpusetMems", &h.cpuset_mems),
    ] {
        if !value.is_empty() && !valid_cpu_list(value) {
            let what = if field == "CpusetCpus" {
                "cpus"
            } else {
                "mems"
            };
            return Err(EngineError::Invalid(format!(
                "Invalid value {value} for cpuset {what}"
            )));
        }
    }
    Ok(())
}

/// `0-2,4`: comma-separated numbers and ascending ranges.
fn valid_cpu_list(s: &str) -> bool {
    s.split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => matches!((a.parse::<u32>(), b.parse::<u32>()), (Ok(a), Ok(b)) if a <= b),
        None => part.parse::<u32>().is_ok(),
    })
}

/// "SIGTERM", "TERM", "15" → 15.
pub fn signal_number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Some(n);
    }
    let name = s.trim_start_matches("SIG").to_ascii_uppercase();
    Some(match name.as_str() {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "WINCH" => libc::SIGWINCH,
        "ALRM" => libc::SIGALRM,
        "PIPE" => libc::SIGPIPE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::RootfsInfo;
    use crate::images::ImageInfo;

    struct FakeImages;

    impl ImageService for FakeImages {
        fn resolve(&self, reference: &str) -> Result<ImageInfo, ImageServiceError> {
            if reference == "busybox" || reference.starts_with("sha256:") {
                Ok(ImageInfo {
                    id: "sha256:0000000000000000000000000000000000000000000000000000000000000001"
                        .into(),
                    defaults: crate::spec::ImageDefaults {
                        cmd: Some(vec!["sh".into()]),
                        ..Default::default()
                    },
                    ..Default::default()
                })
            } else {
                Err(ImageServiceError::NotFound(reference.into()))
            }
        }
        fn mount_rootfs(&self, _: &str, _: &str, _: bool) -> Result<RootfsInfo, ImageServiceError> {
            Err(ImageServiceError::Other("no rootfs in this test".into()))
        }
        fn unmount_rootfs(&self, _: &str) -> Result<(), ImageServiceError> {
            Ok(())
        }
        fn remove_rootfs(&self, _: &str) -> Result<(), ImageServiceError> {
            Ok(())
        }
    }

    fn engine(dir: &Path) -> Arc<Engine> {
        Arc::new(
            Engine::open(
                EngineConfig {
                    data_root: dir.join("data"),
                    exec_root: dir.join("exec"),
                    shim_path: PathBuf::from("/nonexistent/berth-shim"),
                    cgroup_parent: "/berth-test".into(),
                    systemd_cgroup: false,
                    init_path: None,
                    log_max_size: None,
                    log_max_file: None,
                    default_ulimits: Vec::new(),
                    default_init: false,
                    default_dns: vec![],
                    default_dns_search: vec![],
                    default_dns_options: vec![],
                },
                Arc::new(FakeImages),
            )
            .expect("open"),
        )
    }

    #[test]
    fn create_list_inspect_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine(dir.path());
        let cfg = ContainerConfig {
            image: "busybox".into(),
            cmd: Some(vec!["echo".into(), "hi".into()]),
            ..Default::default()
        };
        let c = e
            .create(Some("web"), cfg.clone(), HostConfig::default())
            .expect("create");
        assert_eq!(c.name, "/web");
        assert_eq!(c.path, "echo");
        assert_eq!(c.state.status, "created");
        let dup = e.create(Some("web"), cfg.clone(), HostConfig::default());
        assert!(matches!(dup, Err(EngineError::Conflict(_))));
        let anon = e
            .create(None, cfg.clone(), HostConfig::default())
            .expect("create");
        assert!(names::valid(anon.name.trim_start_matches('/')));
        assert_eq!(e.get(&c.id[..10]).map(|x| x.id).ok(), Some(c.id.clone()));
        assert_eq!(e.list().map(|l| l.len()).ok(), Some(2));
        let missing = e.create(
            None,
            ContainerConfig {
                image: "nope".into(),
                ..Default::default()
            },
            HostConfig::default(),
        );
        assert!(matches!(missing, Err(EngineError::NotFound(m)) if m == "No such image: nope"));
        let bad = e.create(
            None,
            cfg,
            HostConfig {
                memory: 10,
                ..Default::default()
            },
        );
        assert!(matches!(bad, Err(EngineError::Invalid(_))));
        e.remove("web", false).expect("remove");
        assert!(matches!(e.get("web"), Err(EngineError::NotFound(_))));
        assert!(matches!(e.kill(&anon.id, 9), Err(EngineError::Conflict(_))));
    }
}
