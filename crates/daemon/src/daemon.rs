//! The daemon process: pidfile, directories, listeners, shutdown on SIGTERM/SIGINT.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::{ApiError, Backend, Request, Response};

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
            if pid > 0 && unsafe { libc::kill(pid, 0) } == 0 && pid != std::process::id() as i32 {
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

/// Info-only backend until the engine is wired in: answers `/version`, `/info`.
pub struct DaemonBackend {
    pub config: DaemonConfig,
}

impl Backend for DaemonBackend {
    fn version(&self) -> serde_json::Value {
        serde_json::json!({
            "Platform": {"Name": "berth"},
            "Components": [{
                "Name": "Engine",
                "Version": env!("CARGO_PKG_VERSION"),
                "Details": {
                    "ApiVersion": berth_api::version::format(berth_api::version::MAX_VERSION),
                    "MinAPIVersion": berth_api::version::format(berth_api::version::MIN_VERSION),
                    "Os": "linux",
                    "Arch": "amd64",
                    "KernelVersion": kernel_version(),
                }
            }],
            "Version": env!("CARGO_PKG_VERSION"),
            "ApiVersion": berth_api::version::format(berth_api::version::MAX_VERSION),
            "MinAPIVersion": berth_api::version::format(berth_api::version::MIN_VERSION),
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
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/info") => Ok(Response::Json(200, self.info())),
                _ => Err(ApiError::not_found(format!(
                    "page not found: {} {}",
                    req.method, req.path
                ))),
            }
        })
    }
}

impl DaemonBackend {
    fn info(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "Name": hostname(),
            "Driver": c.storage_driver,
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
        })
    }
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

pub async fn run(config: DaemonConfig) -> Result<(), DaemonError> {
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
    let backend: Arc<dyn Backend> = Arc::new(DaemonBackend { config });
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
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
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
