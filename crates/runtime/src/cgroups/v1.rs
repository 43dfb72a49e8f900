//! The cgroup v1 driver: one directory per mounted hierarchy (co-mounted
//! controllers share one), plus the same path in the unified hierarchy of a
//! hybrid host, which gets the processes but no limits.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxResources,
};

use super::fs::{self, read_u64_or_zero};
use super::setup::{self, cgroup_dir, Hierarchy, V1Mount};
use super::stats::{self, Stats};
use super::{devices, resources, CgroupError, CgroupManager};

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct V1Manager {
    path: String,
    /// Each hierarchy with the container's directory in it.
    dirs: Vec<(V1Mount, PathBuf)>,
    unified: Option<PathBuf>,
}

impl V1Manager {
    pub fn new(path: &str, hierarchy: &Hierarchy) -> Result<Self, CgroupError> {
        let Hierarchy::V1 {
            mounts,
            unified,
            own,
        } = hierarchy
        else {
            return Err(CgroupError::Other("not a cgroup v1 host".into()));
        };
        let dirs = mounts
            .iter()
            .map(|m| {
                let dir = cgroup_dir(&m.mount_point, &m.root, &own.of(&m.controllers), path);
                (m.clone(), dir)
            })
            .collect();
        let unified = unified
            .as_ref()
            .map(|mp| cgroup_dir(mp, "/", &own.unified(), path));
        Ok(V1Manager {
            path: path.to_string(),
            dirs,
            unified,
        })
    }

    /// The container's directory in the hierarchy holding `controller`.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(m, _)| m.has(controller))
            .map(|(_, d)| d.as_path())
    }

    fn require(&self, controller: &'static str, what: &'static str) -> Result<&Path, CgroupError> {
        self.dir(controller)
            .ok_or(CgroupError::ControllerMissing { controller, what })
    }

    fn set_cpu(&self, cpu: &LinuxCpu) -> Result<(), CgroupError> {
        let shares = cpu.shares().filter(|&s| s != 0);
        let quota = cpu.quota().filter(|&q| q != 0);
        let period = cpu.period().filter(|&p| p != 0);
        let rt_runtime = cpu.realtime_runtime().filter(|&r| r != 0);
        let rt_period = cpu.realtime_period().filter(|&p| p != 0);
        let wants = shares.is_some()
            || quota.is_some()
            || period.is_some()
            || rt_runtime.is_some()
            || rt_period.is_some()
            || cpu.idle().is_some()
            || cpu.burst().is_some();
        if wants {
            let dir = self.require("cpu", "linux.resources.cpu")?;
            if let Some(shares) = shares {
                fs::write(dir, "cpu.shares", shares.to_string())?;
            }
            // The kernel checks quota against period at each write; when the new
            // period is refused against the old quota, the quota goes first.
            if let Some(period) = period {
                match fs::write(dir, "cpu.cfs_period_us", period.to_string()) {
                    Err(CgroupError::Io { source, .. })
                        if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
                    {
                        fs::write(dir, "cpu.cfs_quota_us", quota.unwrap_or(-1).to_string())?;
                        fs::write(dir, "cpu.cfs_period_us", period.to_string())?;
                    }
                    other => other?,
                }
            }
            if let Some(quota) = quota {
                let quota = if quota < 0 { -1 } else { quota };
                fs::write(dir, "cpu.cfs_quota_us", quota.to_string())?;
            }
            if let Some(burst) = cpu.burst() {
                fs::write(dir, "cpu.cfs_burst_us", burst.to_string())?;
            }
            if let Some(period) = rt_period {
                fs::write(dir, "cpu.rt_period_us", period.to_string())?;
            }
            if let Some(runtime) = rt_runtime {
                fs::write(dir, "cpu.rt_runtime_us", runtime.to_string())?;
            }
            if let Some(idle) = cpu.idle() {
                fs::write(dir, "cpu.idle", idle.to_string())?;
            }
        }
        let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_some() || mems.is_some() {
            let dir = self.require("cpuset", "linux.resources.cpu.cpus/mems")?;
            if let Some(cpus) = cpus {
                fs::write(dir, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = mems {
                fs::write(dir, "cpuset.mems", mems)?;
            }
        }
        Ok(())
    }

    #[allow(deprecated)] // kernel memory: still written where the kernel has it
    fn set_memory(&self, memory: &LinuxMemory) -> Result<(), CgroupError> {
        let dir = self.require("memory", "linux.resources.memory")?;
        let limit = memory.limit().filter(|&l| l != 0);
        let explicit_swap = memory.swap().filter(|&s| s != 0);
        // Unlimited memory with swap unset means both unlimited.
        let mut swap = match (limit, explicit_swap) {
            (Some(-1), None) => Some(-1),
            (_, s) => s,
        };
        if swap.is_some() && !dir.join("memory.memsw.limit_in_bytes").exists() {
            // Swap accounting is off: the limit cannot be enforced, which only
            // matters when one was asked for.
            if matches!(explicit_swap, Some(s) if s > 0) {
                return Err(CgroupError::ControllerMissing {
                    controller: "memory.memsw (swap accounting)",
                    what: "linux.resources.memory.swap",
                });
            }
            swap = None;
        }
        let write_limit = |v: i64| fs::write(dir, "memory.limit_in_bytes", v.to_string());
        let write_swap = |v: i64| fs::write(dir, "memory.memsw.limit_in_bytes", v.to_string());
        match (limit, swap) {
            (Some(limit), Some(swap)) => {
                // memsw must stay >= the memory limit after every single write.
                let current = fs::read(dir, "memory.limit_in_bytes")?;
                let current = fs::parse_u64(dir, "memory.limit_in_bytes", &current)?;
                if swap == -1 || current < swap as u64 {
                    write_swap(swap)?;
                    write_limit(limit)?;
                } else {
                    write_limit(limit)?;
                    write_swap(swap)?;
                }
            }
            (Some(limit), None) => write_limit(limit)?,
            (None, Some(swap)) => write_swap(swap)?,
            (None, None) => {}
        }
        if let Some(reservation) = memory.reservation().filter(|&r| r != 0) {
            fs::write(dir, "memory.soft_limit_in_bytes", reservation.to_string())?;
        }
        for (value, file) in [
            (memory.kernel(), "memory.kmem.limit_in_bytes"),
            (memory.kernel_tcp(), "memory.kmem.tcp.limit_in_bytes"),
        ] {
            let Some(value) = value.filter(|&v| v != 0) else {
                continue;
            };
            // Kernel memory limits are gone from recent kernels: nothing to enforce.
            match fs::write(dir, file, value.to_string()) {
                Err(CgroupError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        || matches!(source.raw_os_error(), Some(libc::EOPNOTSUPP | 524)) => {}
                other => other?,
            }
        }
        if let Some(swappiness) = memory.swappiness() {
            if swappiness > 100 {
                return Err(CgroupError::InvalidValue {
                    what: "linux.resources.memory.swappiness",
                    reason: format!("{swappiness} is above 100"),
                });
            }
            fs::write(dir, "memory.swappiness", swappiness.to_string())?;
        }
        if memory.disable_oom_killer() == Some(true) {
            fs::write(dir, "memory.oom_control", "1")?;
        }
        Ok(())
    }

    fn set_blkio(&self, blkio: &LinuxBlockIo) -> Result<(), CgroupError> {
        let dir = self.require("blkio", "linux.resources.blockIO")?;
        // With BFQ (and no CFQ) only the bfq files exist.
        let weight_file = |name: &'static str, bfq: &'static str| {
            if !dir.join(name).exists() && dir.join(bfq).exists() {
                bfq
            } else {
                name
            }
        };
        if let Some(weight) = blkio.weight().filter(|&w| w != 0) {
            fs::write(
                dir,
                weight_file("blkio.weight", "blkio.bfq.weight"),
                weight.to_string(),
            )?;
        }
        if let Some(weight) = blkio.leaf_weight().filter(|&w| w != 0) {
            fs::write(dir, "blkio.leaf_weight", weight.to_string())?;
        }
        for device in blkio.weight_device().as_deref().unwrap_or(&[]) {
            let id = format!("{}:{}", device.major(), device.minor());
            if let Some(weight) = device.weight() {
                fs::write(
                    dir,
                    weight_file("blkio.weight_device", "blkio.bfq.weight_device"),
                    format!("{id} {weight}"),
                )?;
            }
            if let Some(weight) = device.leaf_weight() {
                fs::write(dir, "blkio.leaf_weight_device", format!("{id} {weight}"))?;
            }
        }
        for (devices, file) in [
            (
                blkio.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
            ),
            (
                blkio.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
            ),
            (
                blkio.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
            ),
            (
                blkio.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
            ),
        ] {
            for device in devices.as_deref().unwrap_or(&[]) {
                let line = format!("{}:{} {}", device.major(), device.minor(), device.rate());
                fs::write(dir, file, line)?;
            }
        }
        Ok(())
    }

    fn set_hugetlb(&self, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
        if limits.is_empty() {
            return Ok(());
        }
        let dir = self.require("hugetlb", "linux.resources.hugepageLimits")?;
        for limit in limits {
            let size = limit.page_size();
            resources::check_page_size(size)?;
            fs::write(
                dir,
                &format!("hugetlb.{size}.limit_in_bytes"),
                limit.limit().to_string(),
            )?;
            // Kernels with reservation accounting enforce at mmap time through rsvd.
            let rsvd = format!("hugetlb.{size}.rsvd.limit_in_bytes");
            if dir.join(&rsvd).exists() {
                fs::write(dir, &rsvd, limit.limit().to_string())?;
            }
        }
        Ok(())
    }

    fn set_network(&self, network: &LinuxNetwork) -> Result<(), CgroupError> {
        if let (Some(class_id), Some(dir)) = (network.class_id(), self.dir("net_cls")) {
            fs::write(dir, "net_cls.classid", class_id.to_string())?;
        }
        if let Some(dir) = self.dir("net_prio") {
            for priority in network.priorities().as_deref().unwrap_or(&[]) {
                let line = format!("{} {}", priority.name(), priority.priority());
                fs::write(dir, "net_prio.ifpriomap", line)?;
            }
        }
        Ok(())
    }

    fn wait_freezer(&self, dir: &Path, target: &str) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            let state = fs::read(dir, "freezer.state")?;
            if state.trim() == target {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(CgroupError::Timeout {
                    path: dir.join("freezer.state"),
                    what: if target == "FROZEN" {
                        "the cgroup to freeze"
                    } else {
                        "the cgroup to thaw"
                    },
                });
            }
            polls += 1;
            // A task forking while the freeze runs can leave the cgroup FREEZING;
            // writing the target again restarts the walk over the new tasks.
            if polls.is_multiple_of(50) {
                fs::write(dir, "freezer.state", target)?;
            }
            std::thread::sleep(Duration::from_millis(if polls < 20 { 1 } else { 10 }));
        }
    }

    fn cpu_stats(&self, stats: &mut Stats) -> Result<(), CgroupError> {
        if let Some(dir) = self.dir("cpuacct") {
            let usage = &mut stats.cpu.usage;
            usage.total = read_u64_or_zero(dir, "cpuacct.usage")?;
            usage.percpu = read_list(dir, "cpuacct.usage_percpu")?;
            usage.percpu_kernel = read_list(dir, "cpuacct.usage_percpu_sys")?;
            usage.percpu_user = read_list(dir, "cpuacct.usage_percpu_user")?;
            let ticks = fs::read_keyed(dir, "cpuacct.stat")?;
            let ns_per_tick = 1_000_000_000 / clock_ticks();
            usage.user = ticks.get("user").copied().unwrap_or(0) * ns_per_tick;
            usage.kernel = ticks.get("system").copied().unwrap_or(0) * ns_per_tick;
        }
        if let Some(dir) = self.dir("cpu") {
            let stat = fs::read_keyed(dir, "cpu.stat")?;
            let get = |k: &str| stat.get(k).copied().unwrap_or(0);
            stats.cpu.throttling.periods = get("nr_periods");
            stats.cpu.throttling.throttled_periods = get("nr_throttled");
            stats.cpu.throttling.throttled_time = get("throttled_time");
        }
        Ok(())
    }

    fn memory_stats(&self, stats: &mut Stats) -> Result<(), CgroupError> {
        let Some(dir) = self.dir("memory") else {
            return Ok(());
        };
        let entry = |prefix: &str| -> Result<stats::MemoryEntry, CgroupError> {
            Ok(stats::MemoryEntry {
                limit: read_u64_or_zero(dir, &format!("{prefix}.limit_in_bytes"))?,
                usage: read_u64_or_zero(dir, &format!("{prefix}.usage_in_bytes"))?,
                max: read_u64_or_zero(dir, &format!("{prefix}.max_usage_in_bytes"))?,
                failcnt: read_u64_or_zero(dir, &format!("{prefix}.failcnt"))?,
            })
        };
        stats.memory.usage = entry("memory")?;
        stats.memory.swap = entry("memory.memsw")?;
        stats.memory.kernel = entry("memory.kmem")?;
        stats.memory.kernel_tcp = entry("memory.kmem.tcp")?;
        stats.memory.raw = fs::read_keyed(dir, "memory.stat")?;
        stats.memory.cache = stats.memory.raw.get("cache").copied().unwrap_or(0);
        Ok(())
    }

    fn blkio_stats(&self, stats: &mut Stats) -> Result<(), CgroupError> {
        let Some(dir) = self.dir("blkio") else {
            return Ok(());
        };
        let read = |file: &str| -> Result<Vec<stats::BlkioEntry>, CgroupError> {
            match fs::read_optional(dir, file)? {
                Some(content) => stats::parse_blkio_v1(&content)
                    .ok_or_else(|| fs::parse_error(dir, file, &content)),
                None => Ok(Vec::new()),
            }
        };
        let blkio = &mut stats.blkio;
        // CFQ's own counters when present, else the throttle layer's (what runc does).
        blkio.io_service_bytes_recursive = read("blkio.io_service_bytes_recursive")?;
        blkio.io_serviced_recursive = read("blkio.io_serviced_recursive")?;
        if blkio.io_service_bytes_recursive.is_empty() {
            blkio.io_service_bytes_recursive = read("blkio.throttle.io_service_bytes_recursive")?;
            blkio.io_serviced_recursive = read("blkio.throttle.io_serviced_recursive")?;
        }
        blkio.io_queued_recursive = read("blkio.io_queued_recursive")?;
        blkio.io_service_time_recursive = read("blkio.io_service_time_recursive")?;
        blkio.io_wait_time_recursive = read("blkio.io_wait_time_recursive")?;
        blkio.io_merged_recursive = read("blkio.io_merged_recursive")?;
        blkio.io_time_recursive = read("blkio.time_recursive")?;
        blkio.sectors_recursive = read("blkio.sectors_recursive")?;
        Ok(())
    }

    fn hugetlb_stats(&self, stats: &mut Stats) -> Result<(), CgroupError> {
        let Some(dir) = self.dir("hugetlb") else {
            return Ok(());
        };
        for size in hugetlb_sizes(dir, ".limit_in_bytes") {
            if size.ends_with(".rsvd") {
                continue;
            }
            let entry = stats::Hugetlb {
                usage: read_u64_or_zero(dir, &format!("hugetlb.{size}.usage_in_bytes"))?,
                max: read_u64_or_zero(dir, &format!("hugetlb.{size}.max_usage_in_bytes"))?,
                failcnt: read_u64_or_zero(dir, &format!("hugetlb.{size}.failcnt"))?,
            };
            stats.hugetlb.insert(size, entry);
        }
        Ok(())
    }
}

/// Page sizes that have a `hugetlb.<size><suffix>` file in `dir`.
pub(crate) fn hugetlb_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("hugetlb.")?
                .strip_suffix(suffix)
                .map(str::to_string)
        })
        .collect();
    sizes.sort();
    sizes
}

/// A whitespace-separated list of numbers (`cpuacct.usage_percpu`).
fn read_list(dir: &Path, file: &str) -> Result<Vec<u64>, CgroupError> {
    let Some(content) = fs::read_optional(dir, file)? else {
        return Ok(Vec::new());
    };
    content
        .split_whitespace()
        .map(|v| v.parse().map_err(|_| fs::parse_error(dir, file, &content)))
        .collect()
}

/// USER_HZ, the unit of `cpuacct.stat`.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Give a new cpuset cgroup the parent's CPUs and memory nodes: v1 creates it with
/// both empty, and a cgroup with no CPUs refuses tasks.
fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let current = fs::read_optional(dir, file)?.unwrap_or_default();
        if current.trim().is_empty() {
            let value = fs::read(parent, file)?;
            if !value.trim().is_empty() {
                fs::write(dir, file, value.trim())?;
            }
        }
    }
    Ok(())
}

/// The container's directory in one hierarchy, with any missing parents; in cpuset's,
/// each new level takes its parent's CPUs and memory nodes (an empty cpuset takes no task).
fn create_dir(mount: &V1Mount, dir: &Path) -> Result<(), CgroupError> {
    let created = setup::create_dirs(dir)?;
    if mount.has("cpuset") {
        for level in &created {
            inherit_cpuset(level)?;
        }
        inherit_cpuset(dir)?;
    }
    Ok(())
}

impl CgroupManager for V1Manager {
    fn prepare_self_join(&self) -> Result<Option<super::SelfJoin>, CgroupError> {
        let mut tasks = Vec::new();
        for (mount, dir) in &self.dirs {
            create_dir(mount, dir)?;
            tasks.push(dir.join("tasks"));
        }
        let (clone_into, unified_dir) = match &self.unified {
            Some(dir) => {
                setup::create_dirs(dir)?;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(dir)
                    .map_err(|e| fs::io_error(dir, e))?;
                (Some(f), Some(dir.clone()))
            }
            None => (None, None),
        };
        Ok(Some(super::SelfJoin {
            tasks,
            clone_into,
            unified_dir,
        }))
    }

    fn apply(&self, pid: i32) -> Result<(), CgroupError> {
        for (mount, dir) in &self.dirs {
            create_dir(mount, dir)?;
            setup::enter(dir, pid)?;
        }
        if let Some(dir) = &self.unified {
            setup::create_dirs(dir)?;
            setup::enter(dir, pid)?;
        }
        Ok(())
    }

    fn set(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(cpu) = resources.cpu() {
            self.set_cpu(cpu)?;
        }
        if let Some(memory) = resources.memory() {
            self.set_memory(memory)?;
        }
        if let Some(pids) = resources.pids() {
            let dir = self.require("pids", "linux.resources.pids")?;
            fs::write(dir, "pids.max", resources::pids_max(pids.limit()))?;
        }
        if let Some(blkio) = resources.block_io() {
            self.set_blkio(blkio)?;
        }
        self.set_hugetlb(resources.hugepage_limits().as_deref().unwrap_or(&[]))?;
        if let Some(rules) = resources.devices() {
            let dir = self.require("devices", "linux.resources.devices")?;
            let rules = devices::rules_from_spec(rules)?;
            for (file, line) in devices::v1_writes(&rules) {
                fs::write(dir, file, line)?;
            }
        }
        if let Some(network) = resources.network() {
            self.set_network(network)?;
        }
        if resources.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::InvalidValue {
                what: "linux.resources.unified",
                reason: "cgroup v2 files cannot be set on a cgroup v1 host".into(),
            });
        }
        Ok(())
    }

    fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.require("freezer", "pause/resume")?;
        let target = if frozen { "FROZEN" } else { "THAWED" };
        fs::write(dir, "freezer.state", target)?;
        let result = self.wait_freezer(dir, target);
        if result.is_err() && frozen {
            // Leave no half-frozen container behind a failed pause.
            let _ = fs::write(dir, "freezer.state", "THAWED");
        }
        result
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        let Some(dir) = self.dir("freezer") else {
            return Ok(false);
        };
        Ok(fs::read_optional(dir, "freezer.state")?.is_some_and(|s| s.trim() == "FROZEN"))
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut stats = Stats::default();
        self.cpu_stats(&mut stats)?;
        self.memory_stats(&mut stats)?;
        if let Some(dir) = self.dir("pids") {
            stats.pids.current = read_u64_or_zero(dir, "pids.current")?;
            let limit = read_u64_or_zero(dir, "pids.max")?;
            stats.pids.limit = if limit == u64::MAX { 0 } else { limit };
        }
        self.blkio_stats(&mut stats)?;
        self.hugetlb_stats(&mut stats)?;
        Ok(stats)
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        // Every hierarchy holds the same processes; devices is the one runc reads.
        let dir = self
            .dir("devices")
            .or_else(|| self.dirs.first().map(|(_, d)| d.as_path()));
        match dir {
            Some(dir) => setup::procs_recursive(dir),
            None => Ok(Vec::new()),
        }
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_error = None;
        let all = self.dirs.iter().map(|(_, d)| d).chain(self.unified.iter());
        for dir in all {
            if let Err(e) = setup::remove(dir) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn path(&self) -> &str {
        &self.path
    }
}
