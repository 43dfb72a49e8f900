//! Render a container's configuration (its `Config`, `HostConfig` and its image's
//! defaults) into the OCI runtime spec, once, at create time: Docker's defaults
//! (capabilities, mounts, masked paths, device rules, seccomp), then what the user
//! asked for on top.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::types::{ContainerConfig, HostConfig};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("No command specified")]
    NoCommand,
}

fn invalid(field: &'static str, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field,
        message: message.into(),
    }
}

/// What the image says about running it (its config's `Config`).
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
}

/// The user the process runs as, already looked up in the container's /etc files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkNamespace {
    /// A new namespace (`none`, and bridge networks which configure it later).
    New,
    /// The host's (`--network host`).
    Host,
    /// Join this one (`--network container:<id>`, or one the engine made).
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SeccompChoice {
    Default,
    Unconfined,
    Profile(Value),
}

pub struct SpecInput<'a> {
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub host: &'a HostConfig,
    pub image: &'a ImageDefaults,
    pub rootfs: &'a Path,
    pub user: ResolvedUser,
    /// `<cgroup-parent>` of the daemon, used when HostConfig.CgroupParent is empty.
    pub cgroup_parent: &'a str,
    pub systemd_cgroup: bool,
    /// Host files bind-mounted on /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub etc_files: Vec<(PathBuf, &'static str)>,
    /// The init binary for `--init` (tini), bind-mounted on /sbin/docker-init.
    pub init_path: Option<&'a Path>,
    pub network: NetworkNamespace,
    /// Paths of other containers' namespaces for `ipc`/`pid` `container:<id>` modes.
    pub ipc_path: Option<PathBuf>,
    pub pid_path: Option<PathBuf>,
}

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel may know (for `--privileged` and `--cap-add ALL`).
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// The devices every container may use (and create nodes of, `m`).
fn default_device_rules() -> Vec<Value> {
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for (typ, major, minor, access) in [
        ("c", None, None, "m"),
        ("b", None, None, "m"),
        ("c", Some(1), Some(3), "rwm"),
        ("c", Some(1), Some(8), "rwm"),
        ("c", Some(1), Some(7), "rwm"),
        ("c", Some(5), Some(0), "rwm"),
        ("c", Some(1), Some(5), "rwm"),
        ("c", Some(1), Some(9), "rwm"),
        ("c", Some(136), None, "rwm"),
        ("c", Some(5), Some(2), "rwm"),
        ("c", Some(10), Some(200), "rwm"),
    ] {
        let mut r = json!({"allow": true, "type": typ, "access": access});
        if let Some(m) = major {
            r["major"] = json!(m);
        }
        if let Some(m) = minor {
            r["minor"] = json!(m);
        }
        rules.push(r);
    }
    rules
}

/// `CAP_X` from "x", "X" or "CAP_X".
fn cap_name(name: &str) -> Result<String, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(invalid(
            "CapAdd/CapDrop",
            format!("unknown capability: {name:?}"),
        ))
    }
}

/// "Every capability", as far as this daemon can grant them: the known ones that
/// are in berthd's own bounding set (a daemon in a restricted sandbox cannot give
/// what it lacks, and asking for it would fail the start).
fn grantable_caps() -> BTreeSet<String> {
    static BOUNDING: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let bounding = *BOUNDING.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(u64::MAX)
    });
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// Docker's rule: start from the defaults (or everything when privileged), add,
/// then drop; "ALL" in either list means every capability.
pub fn capabilities(host: &HostConfig) -> Result<Vec<String>, SpecError> {
    let mut caps: BTreeSet<String> = if host.privileged {
        grantable_caps()
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    let all = |v: &[String]| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    if all(&host.cap_add) {
        caps = grantable_caps();
    } else {
        for c in &host.cap_add {
            caps.insert(cap_name(c)?);
        }
    }
    if all(&host.cap_drop) {
        caps.clear();
        // Capabilities added explicitly survive "--cap-drop ALL", as in Docker.
        if !all(&host.cap_add) {
            for c in &host.cap_add {
                caps.insert(cap_name(c)?);
            }
        }
    } else {
        for c in &host.cap_drop {
            caps.remove(&cap_name(c)?);
        }
    }
    Ok(caps.into_iter().collect())
}

/// `args`: entrypoint + cmd with Docker's precedence.
pub fn process_args(
    config: &ContainerConfig,
    image: &ImageDefaults,
) -> Result<Vec<String>, SpecError> {
    let (entrypoint, cmd) = match &config.entrypoint {
        // An explicit entrypoint (even empty) resets the image's Cmd.
        Some(ep) => (ep.clone(), config.cmd.clone().unwrap_or_default()),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            config
                .cmd
                .clone()
                .or_else(|| image.cmd.clone())
                .unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// Image env, then the container's (same key replaced), PATH defaulted.
pub fn environment(
    config: &ContainerConfig,
    image: &ImageDefaults,
    hostname: &str,
    tty: bool,
) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |kv: &str| {
        let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv).to_string();
        if !values.contains_key(&key) {
            order.push(key.clone());
        }
        values.insert(key, kv.to_string());
    };
    put(&format!("PATH={DEFAULT_PATH}"));
    put(&format!("HOSTNAME={hostname}"));
    if tty {
        put("TERM=xterm");
    }
    for kv in &image.env {
        put(kv);
    }
    for kv in &config.env {
        put(kv);
    }
    order
        .into_iter()
        .filter_map(|k| values.remove(&k))
        .collect()
}

/// `64m`, `1g`, `512k`, bytes (tmpfs sizes, ShmSize strings).
pub fn parse_size(field: &'static str, s: &str) -> Result<i64, SpecError> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| invalid(field, format!("{s:?} is not a size")))
}

/// Major and minor of a device node on the host.
fn device_numbers(field: &'static str, path: &str) -> Result<(u64, u64, &'static str), SpecError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        invalid(
            field,
            format!("error gathering device information for {path:?}: {e}"),
        )
    })?;
    let rdev = meta.rdev();
    let typ = if meta.file_type().is_char_device() {
        "c"
    } else if meta.file_type().is_block_device() {
        "b"
    } else {
        return Err(invalid(field, format!("{path:?} is not a device node")));
    };
    Ok((libc::major(rdev) as u64, libc::minor(rdev) as u64, typ))
}

pub(crate) fn resources(host: &HostConfig, privileged: bool) -> Result<Value, SpecError> {
    let mut r = json!({});
    r["devices"] = if privileged {
        json!([{"allow": true, "access": "rwm"}])
    } else {
        Value::Array(default_device_rules())
    };
    let mut memory = json!({});
    if host.memory < 0 || host.memory_reservation < 0 {
        return Err(invalid("Memory", "must not be negative"));
    }
    if host.memory > 0 {
        if host.memory < 6 << 20 {
            return Err(invalid("Memory", "Minimum memory limit allowed is 6MB"));
        }
        memory["limit"] = json!(host.memory);
        // Docker: swap defaults to twice the memory; -1 is unlimited.
        let swap = match host.memory_swap {
            0 => host.memory * 2,
            -1 => -1,
            s if s < host.memory => {
                return Err(invalid(
                    "MemorySwap",
                    "Minimum memoryswap limit should be larger than memory limit, see usage",
                ))
            }
            s => s,
        };
        memory["swap"] = json!(swap);
    } else if host.memory_swap > 0 {
        return Err(invalid(
            "MemorySwap",
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    if host.memory_reservation > 0 {
        memory["reservation"] = json!(host.memory_reservation);
    }
    if let Some(s) = host.memory_swappiness.filter(|s| *s >= 0) {
        if s > 100 {
            return Err(invalid("MemorySwappiness", format!("{s} is not in 0..100")));
        }
        memory["swappiness"] = json!(s);
    }
    if let Some(d) = host.oom_kill_disable {
        memory["disableOOMKiller"] = json!(d);
    }
    if host.kernel_memory > 0 {
        memory["kernel"] = json!(host.kernel_memory);
    }
    if memory.as_object().is_some_and(|m| !m.is_empty()) {
        r["memory"] = memory;
    }
    let mut cpu = json!({});
    if host.nano_cpus > 0 {
        if host.cpu_quota > 0 || host.cpu_period > 0 {
            return Err(invalid(
                "NanoCpus",
                "Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set",
            ));
        }
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        if host.nano_cpus > ncpu * 1_000_000_000 {
            return Err(invalid(
                "NanoCpus",
                format!("Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"),
            ));
        }
        cpu["period"] = json!(100_000u64);
        cpu["quota"] = json!(host.nano_cpus * 100_000 / 1_000_000_000);
    }
    if host.cpu_shares > 0 {
        cpu["shares"] = json!(host.cpu_shares);
    }
    if host.cpu_period > 0 {
        cpu["period"] = json!(host.cpu_period);
    }
    if host.cpu_quota > 0 {
        cpu["quota"] = json!(host.cpu_quota);
    }
    if host.cpu_realtime_period > 0 {
        cpu["realtimePeriod"] = json!(host.cpu_realtime_period);
    }
    if host.cpu_realtime_runtime > 0 {
        cpu["realtimeRuntime"] = json!(host.cpu_realtime_runtime);
    }
    if !host.cpuset_cpus.is_empty() {
        cpu["cpus"] = json!(host.cpuset_cpus);
    }
    if !host.cpuset_mems.is_empty() {
        cpu["mems"] = json!(host.cpuset_mems);
    }
    if cpu.as_object().is_some_and(|m| !m.is_empty()) {
        r["cpu"] = cpu;
    }
    if let Some(limit) = host.pids_limit.filter(|l| *l != 0) {
        r["pids"] = json!({"limit": if limit < 0 { -1 } else { limit }});
    }
    let mut blkio = json!({});
    if host.blkio_weight > 0 {
        if !(10..=1000).contains(&host.blkio_weight) {
            return Err(invalid(
                "BlkioWeight",
                "Range of blkio weight is from 10 to 1000",
            ));
        }
        blkio["weight"] = json!(host.blkio_weight);
    }
    let mut weight_devices = Vec::new();
    for d in &host.blkio_weight_device {
        let (major, minor, _) = device_numbers("BlkioWeightDevice", &d.path)?;
        weight_devices.push(json!({"major": major, "minor": minor, "weight": d.weight}));
    }
    if !weight_devices.is_empty() {
        blkio["weightDevice"] = Value::Array(weight_devices);
    }
    for (field, key, list) in [
        (
            "BlkioDeviceReadBps",
            "throttleReadBpsDevice",
            &host.blkio_device_read_bps,
        ),
        (
            "BlkioDeviceWriteBps",
            "throttleWriteBpsDevice",
            &host.blkio_device_write_bps,
        ),
        (
            "BlkioDeviceReadIOps",
            "throttleReadIOPSDevice",
            &host.blkio_device_read_iops,
        ),
        (
            "BlkioDeviceWriteIOps",
            "throttleWriteIOPSDevice",
            &host.blkio_device_write_iops,
        ),
    ] {
        let mut out = Vec::new();
        for d in list {
            let (major, minor, _) = device_numbers(field, &d.path)?;
            out.push(json!({"major": major, "minor": minor, "rate": d.rate}));
        }
        if !out.is_empty() {
            blkio[key] = Value::Array(out);
        }
    }
    if blkio.as_object().is_some_and(|m| !m.is_empty()) {
        r["blockIO"] = blkio;
    }
    Ok(r)
}

fn default_mounts(host: &HostConfig) -> Result<Vec<Value>, SpecError> {
    let shm = if host.shm_size > 0 {
        host.shm_size
    } else {
        DEFAULT_SHM_SIZE
    };
    let sys_ro = if host.privileged { "rw" } else { "ro" };
    Ok(vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", sys_ro]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", sys_ro]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}),
    ])
}

/// Docker's defaults for `--tmpfs /path[:opts]`.
fn tmpfs_mount(path: &str, opts: &str) -> Result<Value, SpecError> {
    if !path.starts_with('/') {
        return Err(invalid(
            "Tmpfs",
            format!("{path:?} is not an absolute path"),
        ));
    }
    let mut options: Vec<String> = vec!["noexec".into(), "nosuid".into(), "nodev".into()];
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "exec" => options.retain(|x| x != "noexec"),
            "suid" => options.retain(|x| x != "nosuid"),
            "dev" => options.retain(|x| x != "nodev"),
            other => options.push(other.to_string()),
        }
    }
    Ok(json!({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": options}))
}

/// The cgroupsPath for this container.
pub fn cgroups_path(id: &str, host: &HostConfig, daemon_parent: &str, systemd: bool) -> String {
    let parent = if host.cgroup_parent.is_empty() {
        daemon_parent
    } else {
        host.cgroup_parent.as_str()
    };
    if systemd {
        let slice = if parent.ends_with(".slice") {
            parent
        } else {
            "system.slice"
        };
        format!("{slice}:berth:{id}")
    } else {
        format!("{}/{}", parent.trim_end_matches('/'), id)
    }
}

pub fn build(input: &SpecInput) -> Result<Value, SpecError> {
    let c = input.config;
    let h = input.host;
    let hostname = if c.hostname.is_empty() {
        input.id.chars().take(12).collect::<String>()
    } else {
        c.hostname.clone()
    };
    let mut args = process_args(c, input.image)?;
    let mut mounts = default_mounts(h)?;
    if h.init.unwrap_or(false) {
        let init = input
            .init_path
            .ok_or_else(|| invalid("Init", "no init binary is configured (init-path)"))?;
        mounts.push(json!({"destination": "/sbin/docker-init", "type": "bind",
                           "source": init, "options": ["bind", "ro"]}));
        let mut with_init = vec!["/sbin/docker-init".to_string(), "--".to_string()];
        with_init.append(&mut args);
        args = with_init;
    }
    for (src, dst) in &input.etc_files {
        mounts.push(json!({"destination": dst, "type": "bind", "source": src,
                           "options": ["rbind", "rprivate"]}));
    }
    // Binds, volumes and `--mount`s are the container's mount points (crate::mounts),
    // added at start once their sources exist.
    let mut tmpfs: Vec<(&String, &String)> = h.tmpfs.iter().collect();
    tmpfs.sort();
    for (path, opts) in tmpfs {
        mounts.push(tmpfs_mount(path, opts)?);
    }
    let caps = capabilities(h)?;
    let mut rlimits = Vec::new();
    for u in &h.ulimits {
        let name = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
        if u.soft > u.hard {
            return Err(invalid(
                "Ulimits",
                format!(
                    "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                    u.soft, u.hard
                ),
            ));
        }
        rlimits.push(json!({"type": name, "soft": u.soft, "hard": u.hard}));
    }
    let mut no_new_privileges = false;
    let mut seccomp = SeccompChoice::Default;
    for opt in &h.security_opt {
        let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
        match k {
            "no-new-privileges" => no_new_privileges = v.is_empty() || v == "true",
            "seccomp" if v == "unconfined" => seccomp = SeccompChoice::Unconfined,
            "seccomp" => {
                let profile: Value = serde_json::from_str(v).map_err(|e| {
                    invalid(
                        "SecurityOpt",
                        format!("decoding seccomp profile failed: {e}"),
                    )
                })?;
                seccomp = SeccompChoice::Profile(profile);
            }
            "apparmor" | "label" | "systempaths" => {}
            other => {
                return Err(invalid(
                    "SecurityOpt",
                    format!("invalid --security-opt: {other:?}"),
                ))
            }
        }
    }
    if h.privileged && seccomp == SeccompChoice::Default {
        seccomp = SeccompChoice::Unconfined;
    }
    let mut namespaces = vec![json!({"type": "mount"})];
    match &input.network {
        NetworkNamespace::New => namespaces.push(json!({"type": "network"})),
        NetworkNamespace::Host => {}
        NetworkNamespace::Path(p) => namespaces.push(json!({"type": "network", "path": p})),
    }
    match (h.ipc_mode.as_str(), &input.ipc_path) {
        ("host", _) => {}
        (_, Some(p)) => namespaces.push(json!({"type": "ipc", "path": p})),
        _ => namespaces.push(json!({"type": "ipc"})),
    }
    match (h.pid_mode.as_str(), &input.pid_path) {
        ("host", _) => {}
        (_, Some(p)) => namespaces.push(json!({"type": "pid", "path": p})),
        _ => namespaces.push(json!({"type": "pid"})),
    }
    if h.uts_mode != "host" {
        namespaces.push(json!({"type": "uts"}));
    }
    if h.cgroupns_mode != "host" {
        namespaces.push(json!({"type": "cgroup"}));
    }
    let mut devices = Vec::new();
    let mut resources = resources(h, h.privileged)?;
    for d in &h.devices {
        let (major, minor, typ) = device_numbers("Devices", &d.path_on_host)?;
        let target = if d.path_in_container.is_empty() {
            d.path_on_host.clone()
        } else {
            d.path_in_container.clone()
        };
        let access = if d.cgroup_permissions.is_empty() {
            "rwm".to_string()
        } else {
            d.cgroup_permissions.clone()
        };
        devices.push(
            json!({"path": target, "type": typ, "major": major, "minor": minor,
                            "fileMode": 0o666, "uid": 0, "gid": 0}),
        );
        if let Some(list) = resources["devices"].as_array_mut() {
            list.push(json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access}));
        }
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": cgroups_path(input.id, h, input.cgroup_parent, input.systemd_cgroup),
        "devices": devices,
    });
    if !h.privileged {
        let mut masked: Vec<String> = MASKED_PATHS.iter().map(|s| s.to_string()).collect();
        masked.extend(h.masked_paths.iter().cloned());
        let mut readonly: Vec<String> = READONLY_PATHS.iter().map(|s| s.to_string()).collect();
        readonly.extend(h.readonly_paths.iter().cloned());
        linux["maskedPaths"] = json!(masked);
        linux["readonlyPaths"] = json!(readonly);
    }
    if !h.sysctls.is_empty() {
        linux["sysctl"] = json!(h.sysctls);
    }
    match seccomp {
        SeccompChoice::Unconfined => {}
        SeccompChoice::Default => linux["seccomp"] = crate::spec::default_seccomp(&caps),
        SeccompChoice::Profile(p) => linux["seccomp"] = p,
    }
    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else if !input.image.working_dir.is_empty() {
        input.image.working_dir.clone()
    } else {
        "/".to_string()
    };
    if !cwd.starts_with('/') {
        return Err(invalid(
            "WorkingDir",
            format!("the working directory {cwd:?} is invalid, it needs to be an absolute path"),
        ));
    }
    let mut process = json!({
        "terminal": c.tty,
        "user": {"uid": input.user.uid, "gid": input.user.gid},
        "args": args,
        "env": environment(c, input.image, &hostname, c.tty),
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": no_new_privileges,
    });
    if !input.user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(input.user.additional_gids);
    }
    if !rlimits.is_empty() {
        process["rlimits"] = Value::Array(rlimits);
    }
    if h.oom_score_adj != 0 {
        if !(-1000..=1000).contains(&h.oom_score_adj) {
            return Err(invalid(
                "OomScoreAdj",
                "Invalid value, range is [-1000, 1000]",
            ));
        }
        process["oomScoreAdj"] = json!(h.oom_score_adj);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": input.rootfs, "readonly": h.readonly_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    });
    if !c.domainname.is_empty() {
        spec["domainname"] = json!(c.domainname);
    }
    Ok(spec)
}

/// Syscalls Docker's default profile refuses unless a capability allows them.
/// Written as a deny list over "allow everything else": the same refusals for every
/// syscall Docker names, each returning EPERM.
const DENIED_SYSCALLS: &[(&str, Option<&str>)] = &[
    ("acct", Some("CAP_SYS_PACCT")),
    ("add_key", None),
    ("bpf", Some("CAP_SYS_ADMIN")),
    ("clock_adjtime", Some("CAP_SYS_TIME")),
    ("clock_settime", Some("CAP_SYS_TIME")),
    ("create_module", Some("CAP_SYS_MODULE")),
    ("delete_module", Some("CAP_SYS_MODULE")),
    ("finit_module", Some("CAP_SYS_MODULE")),
    ("get_kernel_syms", None),
    ("get_mempolicy", Some("CAP_SYS_NICE")),
    ("init_module", Some("CAP_SYS_MODULE")),
    ("ioperm", Some("CAP_SYS_RAWIO")),
    ("iopl", Some("CAP_SYS_RAWIO")),
    ("kcmp", Some("CAP_SYS_PTRACE")),
    ("kexec_file_load", Some("CAP_SYS_BOOT")),
    ("kexec_load", Some("CAP_SYS_BOOT")),
    ("keyctl", None),
    ("lookup_dcookie", Some("CAP_SYS_ADMIN")),
    ("mbind", Some("CAP_SYS_NICE")),
    ("mount", Some("CAP_SYS_ADMIN")),
    ("mount_setattr", Some("CAP_SYS_ADMIN")),
    ("move_mount", Some("CAP_SYS_ADMIN")),
    ("move_pages", Some("CAP_SYS_NICE")),
    ("name_to_handle_at", Some("CAP_DAC_READ_SEARCH")),
    ("nfsservctl", None),
    ("open_by_handle_at", Some("CAP_DAC_READ_SEARCH")),
    ("open_tree", Some("CAP_SYS_ADMIN")),
    ("fsopen", Some("CAP_SYS_ADMIN")),
    ("fsconfig", Some("CAP_SYS_ADMIN")),
    ("fsmount", Some("CAP_SYS_ADMIN")),
    ("fspick", Some("CAP_SYS_ADMIN")),
    ("perf_event_open", Some("CAP_PERFMON")),
    ("pivot_root", Some("CAP_SYS_ADMIN")),
    ("process_vm_readv", Some("CAP_SYS_PTRACE")),
    ("process_vm_writev", Some("CAP_SYS_PTRACE")),
    ("query_module", None),
    ("quotactl", Some("CAP_SYS_ADMIN")),
    ("reboot", Some("CAP_SYS_BOOT")),
    ("request_key", None),
    ("set_mempolicy", Some("CAP_SYS_NICE")),
    ("setns", Some("CAP_SYS_ADMIN")),
    ("settimeofday", Some("CAP_SYS_TIME")),
    ("stime", Some("CAP_SYS_TIME")),
    ("swapon", Some("CAP_SYS_ADMIN")),
    ("swapoff", Some("CAP_SYS_ADMIN")),
    ("sysfs", None),
    ("_sysctl", None),
    ("umount", Some("CAP_SYS_ADMIN")),
    ("umount2", Some("CAP_SYS_ADMIN")),
    ("unshare", Some("CAP_SYS_ADMIN")),
    ("uselib", None),
    ("userfaultfd", Some("CAP_SYS_PTRACE")),
    ("ustat", None),
    ("vm86", None),
    ("vm86old", None),
    ("fanotify_init", Some("CAP_SYS_ADMIN")),
    ("syslog", Some("CAP_SYSLOG")),
    ("vhangup", Some("CAP_SYS_TTY_CONFIG")),
    ("ptrace", Some("CAP_SYS_PTRACE")),
    ("personality", None),
];

/// CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
/// CLONE_NEWPID, CLONE_NEWNET: together Docker's mask 0x7E020000.
const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// The default seccomp profile for a container with capabilities `caps`.
pub fn default_seccomp(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut denied: Vec<&str> = DENIED_SYSCALLS
        .iter()
        .filter(|(_, cap)| cap.is_none_or(|c| !has(c)))
        .map(|(name, _)| *name)
        .filter(|n| *n != "personality" && *n != "ptrace")
        .collect();
    denied.sort();
    let mut syscalls = vec![json!({"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": 1})];
    // personality: only the harmless domains, as Docker allows.
    syscalls.push(
        json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
        "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"},
                 {"index": 0, "value": 8, "op": "SCMP_CMP_NE"},
                 {"index": 0, "value": 131072, "op": "SCMP_CMP_NE"},
                 {"index": 0, "value": 131080, "op": "SCMP_CMP_NE"},
                 {"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_NE"}]}),
    );
    // New namespaces through clone need CAP_SYS_ADMIN, as Docker's profile says.
    // Docker allows clone when no namespace flag is set; with a default of allow that
    // is one deny rule per flag (rules of one entry are ANDed, entries are ORed).
    if !has("CAP_SYS_ADMIN") {
        for flag in CLONE_NAMESPACE_FLAGS {
            syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}));
        }
        // clone3 cannot be filtered by its flags: ENOSYS makes libc fall back to clone.
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        c: &'a ContainerConfig,
        h: &'a HostConfig,
        img: &'a ImageDefaults,
    ) -> SpecInput<'a> {
        SpecInput {
            id: "0123456789abcdef0123",
            config: c,
            host: h,
            image: img,
            rootfs: Path::new("/var/lib/berth/x/merged"),
            user: ResolvedUser::default(),
            cgroup_parent: "/berth",
            systemd_cgroup: false,
            etc_files: vec![],
            init_path: None,
            network: NetworkNamespace::New,
            ipc_path: None,
            pid_path: None,
        }
    }

    fn parses(v: &Value) {
        let spec: Result<oci_spec::runtime::Spec, _> = serde_json::from_value(v.clone());
        assert!(spec.is_ok(), "{:?}\n{v:#}", spec.err());
    }

    #[test]
    fn defaults_render_a_valid_spec() {
        let img = ImageDefaults {
            cmd: Some(vec!["sh".into()]),
            env: vec!["PATH=/bin".into(), "A=1".into()],
            ..Default::default()
        };
        let c = ContainerConfig {
            env: vec!["A=2".into(), "B=3".into()],
            ..Default::default()
        };
        let h = HostConfig::default();
        let spec = build(&input(&c, &h, &img)).expect("builds");
        parses(&spec);
        assert_eq!(spec["process"]["args"], json!(["sh"]));
        assert_eq!(spec["hostname"], json!("0123456789ab"));
        let env: Vec<String> =
            serde_json::from_value(spec["process"]["env"].clone()).unwrap_or_default();
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert!(env.contains(&"A=2".to_string()) && env.contains(&"B=3".to_string()));
        assert_eq!(
            spec["linux"]["cgroupsPath"],
            json!("/berth/0123456789abcdef0123")
        );
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .map(|a| a.len()),
            Some(DEFAULT_CAPS.len())
        );
    }

    #[test]
    fn entrypoint_and_cmd() {
        let img = ImageDefaults {
            entrypoint: Some(vec!["/ep".into()]),
            cmd: Some(vec!["a".into()]),
            ..Default::default()
        };
        let mut c = ContainerConfig::default();
        assert_eq!(process_args(&c, &img), Ok(vec!["/ep".into(), "a".into()]));
        c.cmd = Some(vec!["b".into()]);
        assert_eq!(process_args(&c, &img), Ok(vec!["/ep".into(), "b".into()]));
        c.entrypoint = Some(vec!["/other".into()]);
        c.cmd = None;
        assert_eq!(process_args(&c, &img), Ok(vec!["/other".into()]));
        let none = ImageDefaults::default();
        assert_eq!(
            process_args(&ContainerConfig::default(), &none),
            Err(SpecError::NoCommand)
        );
    }

    #[test]
    fn resources_and_security() {
        let img = ImageDefaults {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let c = ContainerConfig::default();
        let h = HostConfig {
            memory: 64 << 20,
            nano_cpus: 500_000_000,
            cpu_shares: 512,
            pids_limit: Some(100),
            cap_add: vec!["sys_admin".into()],
            cap_drop: vec!["CAP_NET_RAW".into()],
            security_opt: vec!["no-new-privileges".into()],
            readonly_rootfs: true,
            tmpfs: [("/run".to_string(), "size=1m".to_string())]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let spec = build(&input(&c, &h, &img)).expect("builds");
        parses(&spec);
        let r = &spec["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], json!(64 << 20));
        assert_eq!(r["memory"]["swap"], json!(128 << 20));
        assert_eq!(r["cpu"]["quota"], json!(50_000));
        assert_eq!(r["cpu"]["period"], json!(100_000));
        assert_eq!(r["pids"]["limit"], json!(100));
        let caps = spec["process"]["capabilities"]["bounding"].to_string();
        assert!(caps.contains("CAP_SYS_ADMIN") && !caps.contains("CAP_NET_RAW"));
        assert_eq!(spec["process"]["noNewPrivileges"], json!(true));
        assert_eq!(spec["root"]["readonly"], json!(true));
        let mounts = spec["mounts"].to_string();
        assert!(mounts.contains("/run"));
        // CAP_SYS_ADMIN lifts the mount denial.
        assert!(!spec["linux"]["seccomp"].to_string().contains("\"mount\""));
    }

    #[test]
    fn bad_values_are_named() {
        let img = ImageDefaults {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let c = ContainerConfig::default();
        for (h, field) in [
            (
                HostConfig {
                    cap_add: vec!["NOPE".into()],
                    ..Default::default()
                },
                "CapAdd",
            ),
            (
                HostConfig {
                    memory: 1024,
                    ..Default::default()
                },
                "Memory",
            ),
            (
                HostConfig {
                    memory: 64 << 20,
                    memory_swap: 1 << 20,
                    ..Default::default()
                },
                "MemorySwap",
            ),
            (
                HostConfig {
                    security_opt: vec!["bogus".into()],
                    ..Default::default()
                },
                "SecurityOpt",
            ),
            (
                HostConfig {
                    blkio_weight: 5,
                    ..Default::default()
                },
                "BlkioWeight",
            ),
        ] {
            let err = build(&input(&c, &h, &img))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn privileged_and_host_modes() {
        let img = ImageDefaults {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let c = ContainerConfig::default();
        let h = HostConfig {
            privileged: true,
            pid_mode: "host".into(),
            ipc_mode: "host".into(),
            ..Default::default()
        };
        let mut i = input(&c, &h, &img);
        i.network = NetworkNamespace::Host;
        let spec = build(&i).expect("builds");
        parses(&spec);
        let ns = spec["linux"]["namespaces"].to_string();
        assert!(!ns.contains("\"pid\"") && !ns.contains("\"ipc\"") && !ns.contains("network"));
        assert!(spec["linux"].get("seccomp").is_none());
        assert!(spec["linux"].get("maskedPaths").is_none());
        // Every capability this test process itself holds (a sandbox may lack some).
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .map(|a| a.len()),
            Some(grantable_caps().len())
        );
        assert!(grantable_caps().contains("CAP_SYS_ADMIN"));
    }
}
