//! berth-runtime: the OCI runtime command line, flag-compatible with runc so that
//! containerd, dockerd (`--add-runtime`), podman/conmon and the runtime-tools
//! validation suite can drive it.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use berth_runtime::container::{self, create::CreateOptions, exec::ExecOptions, Global};
use berth_runtime::error::{Result, RuntimeError};
use berth_runtime::state;
use clap::{Args, Parser, Subcommand};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    about = "Run OCI containers (runc-compatible)",
    disable_version_flag = true
)]
struct Cli {
    /// Directory for container state
    #[arg(long, global = true, default_value = state::DEFAULT_ROOT)]
    root: PathBuf,
    /// Log file for errors (as runc's --log)
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Accepted for compatibility
    #[arg(long, global = true)]
    debug: bool,
    /// cgroupsPath is slice:prefix:name (systemd style)
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for compatibility
    #[arg(long, global = true)]
    criu: Option<String>,
    /// Accepted for compatibility (auto, true, false)
    #[arg(long)]
    rootless: Option<String>,
    /// Print the version
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone)]
struct CreateArgs {
    /// Path to the bundle directory (default: current directory)
    #[arg(short = 'b', long)]
    bundle: Option<PathBuf>,
    /// Unix socket to send the pty master to
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the init process PID to
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs)
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a session keyring
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass this many extra fds (3 and up) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    container_id: String,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container
    Create(CreateArgs),
    /// Start a created container
    Start { container_id: String },
    /// Create and start a container
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process
        #[arg(short = 'd', long)]
        detach: bool,
        /// Do not delete the container after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Print the state of a container
    State { container_id: String },
    /// Send a signal to a container's init (default SIGTERM)
    Kill {
        /// Signal every process in the container
        #[arg(short = 'a', long)]
        all: bool,
        container_id: String,
        signal: Option<String>,
    },
    /// Delete a container
    Delete {
        /// Kill the container first if it is running
        #[arg(short = 'f', long)]
        force: bool,
        container_id: String,
    },
    /// Run a process in a running container
    Exec(Box<ExecArgs>),
    /// List the processes of a container
    Ps {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        container_id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container
    Pause { container_id: String },
    /// Thaw a paused container
    Resume { container_id: String },
    /// List containers
    List {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Write a starting config.json
    Spec {
        #[arg(short = 'b', long)]
        bundle: Option<PathBuf>,
        #[arg(long)]
        rootless: bool,
    },
    /// Print container resource statistics
    Events {
        /// Print the statistics once and exit
        #[arg(long)]
        stats: bool,
        /// Interval between statistics, e.g. 5s
        #[arg(long, default_value = "5s")]
        interval: String,
        container_id: String,
    },
    /// Change the resource limits of a container
    Update(Box<UpdateArgs>),
    /// Print the features this runtime supports (JSON)
    Features,
}

#[derive(Args)]
struct ExecArgs {
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long)]
    cwd: Option<String>,
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(short = 't', long)]
    tty: bool,
    #[arg(short = 'u', long)]
    user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    #[arg(short = 'd', long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "process-label")]
    process_label: Option<String>,
    #[arg(long)]
    apparmor: Option<String>,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    #[arg(long)]
    cgroup: Vec<String>,
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    container_id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct UpdateArgs {
    /// JSON LinuxResources from a file, or - for stdin
    #[arg(short = 'r', long)]
    resources: Option<String>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "memory")]
    memory: Option<String>,
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    #[arg(long = "kernel-memory")]
    kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp")]
    kernel_memory_tcp: Option<String>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    #[arg(long = "l3-cache-schema")]
    l3_cache_schema: Option<String>,
    #[arg(long = "mem-bw-schema")]
    mem_bw_schema: Option<String>,
    container_id: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = (cli.log.clone(), cli.log_format.clone());
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            report(&e, &log.0, &log.1);
            ExitCode::from(1)
        }
    }
}

/// Errors go to stderr and, as runc does, to the `--log` file, where containerd and
/// conmon look for the reason a command failed.
fn report(e: &RuntimeError, log: &Option<PathBuf>, format: &str) {
    let msg = e.to_string();
    eprintln!("berth-runtime: {msg}");
    let Some(path) = log else { return };
    let time = state::now_rfc3339();
    let line = if format == "json" {
        serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
    } else {
        format!("time={time:?} level=error msg={msg:?}")
    };
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn create_options(a: CreateArgs) -> Result<CreateOptions> {
    let bundle = match a.bundle {
        Some(b) => b,
        None => std::env::current_dir().map_err(|e| RuntimeError::io("current directory", e))?,
    };
    Ok(CreateOptions {
        id: a.container_id,
        bundle,
        console_socket: a.console_socket,
        pid_file: a.pid_file,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        stdio: None,
    })
}

fn dispatch(cli: Cli) -> Result<i32> {
    if cli.version {
        println!(
            "berth-runtime version {}\ncommit: berth\nspec: 1.0.2-dev",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(0);
    }
    let global = Global {
        root: cli.root,
        systemd_cgroup: cli.systemd_cgroup,
    };
    let Some(command) = cli.command else {
        return Err(RuntimeError::Other(
            "no command given; see berth-runtime --help".into(),
        ));
    };
    match command {
        Command::Create(a) => container::create::run_create(&global, &create_options(a)?)?,
        Command::Start { container_id } => container::start::start(&global, &container_id)?,
        Command::Run {
            create,
            detach,
            keep,
        } => return container::run::run(&global, &create_options(create)?, detach, keep),
        Command::State { container_id } => {
            println!("{}", container::query::state_json(&global, &container_id)?)
        }
        Command::Kill {
            all,
            container_id,
            signal,
        } => {
            let sig = container::parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            container::kill::kill(&global, &container_id, sig, all)?
        }
        Command::Delete {
            force,
            container_id,
        } => container::delete::delete(&global, &container_id, force)?,
        Command::Exec(a) => {
            let a = *a;
            return container::exec::exec_in(
                &global,
                &ExecOptions {
                    id: a.container_id,
                    process_file: a.process,
                    args: a.command,
                    tty: a.tty,
                    console_socket: a.console_socket,
                    cwd: a.cwd,
                    env: a.env,
                    user: a.user,
                    additional_gids: a.additional_gids,
                    caps: a.cap,
                    no_new_privs: a.no_new_privs,
                    detach: a.detach,
                    pid_file: a.pid_file,
                    preserve_fds: a.preserve_fds,
                    stdio: None,
                    ignore_paused: a.ignore_paused,
                },
            );
        }
        Command::Ps {
            format,
            container_id,
            ps_args,
        } => print!(
            "{}",
            container::ps::ps(&global, &container_id, &format, &ps_args)?
        ),
        Command::Pause { container_id } => container::pause::pause(&global, &container_id, true)?,
        Command::Resume { container_id } => container::pause::pause(&global, &container_id, false)?,
        Command::List { format, quiet } => {
            print!("{}", container::list::list(&global, &format, quiet)?)
        }
        Command::Spec { bundle, rootless } => {
            let dir = match bundle {
                Some(b) => b,
                None => PathBuf::from("."),
            };
            let path = dir.join("config.json");
            if path.exists() {
                return Err(RuntimeError::Other(format!(
                    "{} already exists; remove it first",
                    path.display()
                )));
            }
            let text = serde_json::to_string_pretty(&container::spec::default_spec(rootless))
                .map_err(|e| RuntimeError::Other(e.to_string()))?;
            std::fs::write(&path, text + "\n")
                .map_err(|e| RuntimeError::io(format!("write {}", path.display()), e))?;
        }
        Command::Events {
            stats,
            interval,
            container_id,
        } => container::events::events(&global, &container_id, stats, parse_duration(&interval)?)?,
        Command::Update(a) => {
            let id = a.container_id.clone();
            container::update::update(&global, &id, &update_resources(*a)?)?
        }
        Command::Features => println!("{}", features()),
    }
    Ok(0)
}

fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || RuntimeError::Other(format!("invalid duration {s:?}: use e.g. 5s, 500ms, 1m"));
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// "64m", "1g", "1024" (bytes), "-1" (unlimited).
fn parse_bytes(s: &str) -> Result<i64> {
    let bad = || RuntimeError::Other(format!("invalid size {s:?}: use bytes or a k/m/g suffix"));
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b');
    let (num, mult) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1i64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        _ => (trimmed, 1),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or_else(bad)
}

fn update_resources(a: UpdateArgs) -> Result<LinuxResources> {
    let mut res: LinuxResources = match a.resources.as_deref() {
        Some(src) => {
            let mut data = Vec::new();
            if src == "-" {
                std::io::stdin()
                    .read_to_end(&mut data)
                    .map_err(|e| RuntimeError::io("read stdin", e))?;
            } else {
                data =
                    std::fs::read(src).map_err(|e| RuntimeError::io(format!("read {src}"), e))?;
            }
            let mut de = serde_json::Deserializer::from_slice(&data);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                RuntimeError::invalid(
                    format!("resources.{}", e.path()),
                    e.into_inner().to_string(),
                )
            })?
        }
        None => LinuxResources::default(),
    };
    if a.memory.is_some()
        || a.memory_reservation.is_some()
        || a.memory_swap.is_some()
        || a.kernel_memory.is_some()
        || a.kernel_memory_tcp.is_some()
    {
        let mut m: LinuxMemory = res.memory().unwrap_or_default();
        if let Some(v) = &a.memory {
            m.set_limit(Some(parse_bytes(v)?));
        }
        if let Some(v) = &a.memory_reservation {
            m.set_reservation(Some(parse_bytes(v)?));
        }
        if let Some(v) = &a.memory_swap {
            m.set_swap(Some(parse_bytes(v)?));
        }
        if let Some(v) = &a.kernel_memory {
            m.set_kernel(Some(parse_bytes(v)?));
        }
        if let Some(v) = &a.kernel_memory_tcp {
            m.set_kernel_tcp(Some(parse_bytes(v)?));
        }
        res.set_memory(Some(m));
    }
    if a.cpu_period.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_share.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
    {
        let mut c: LinuxCpu = res.cpu().clone().unwrap_or_default();
        if let Some(v) = a.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = a.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = a.cpu_share {
            c.set_shares(Some(v));
        }
        if let Some(v) = a.cpu_rt_period {
            c.set_realtime_period(Some(v));
        }
        if let Some(v) = a.cpu_rt_runtime {
            c.set_realtime_runtime(Some(v));
        }
        if let Some(v) = a.cpuset_cpus {
            c.set_cpus(Some(v));
        }
        if let Some(v) = a.cpuset_mems {
            c.set_mems(Some(v));
        }
        res.set_cpu(Some(c));
    }
    if let Some(limit) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        res.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        return Err(RuntimeError::Other(
            "Intel RDT is not supported on this host".into(),
        ));
    }
    Ok(res)
}

fn features() -> String {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
            "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro",
            "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "slave",
            "strictatime", "suid", "sync", "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64m").ok(), Some(64 << 20));
        assert_eq!(parse_bytes("1G").ok(), Some(1 << 30));
        assert_eq!(parse_bytes("4096").ok(), Some(4096));
        assert_eq!(parse_bytes("-1").ok(), Some(-1));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").ok(), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_duration("500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert!(parse_duration("x").is_err());
    }
}
