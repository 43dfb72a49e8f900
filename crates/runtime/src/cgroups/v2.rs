//! The cgroup v2 driver (unified hierarchy), after the kernel's
//! `Documentation/admin-guide/cgroup-v2.rst`: one directory, controllers enabled
//! down the path through `cgroup.subtree_control`, v1-shaped spec values converted
//! to v2 files, and devices filtered by an eBPF program.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::fs::{self, read_u64_or_zero};
use super::setup::{self, cgroup_dir, Hierarchy};
use super::stats::{self, Stats};
use super::{devices, ebpf, resources, CgroupError, CgroupManager};

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct V2Manager {
    path: String,
    mount_point: PathBuf,
    dir: PathBuf,
}

/// Write a controller's file; a missing file means the controller is not enabled
/// for this cgroup, which is worth saying in those words.
fn write_ctl(
    dir: &Path,
    controller: &'static str,
    what: &'static str,
    file: &str,
    value: impl AsRef<str>,
) -> Result<(), CgroupError> {
    match fs::write(dir, file, value) {
        Err(CgroupError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            Err(CgroupError::ControllerMissing { controller, what })
        }
        other => other,
    }
}

impl V2Manager {
    pub fn new(path: &str, hierarchy: &Hierarchy) -> Result<Self, CgroupError> {
        let Hierarchy::V2 { mount_point, own } = hierarchy else {
            return Err(CgroupError::Other("not a cgroup v2 host".into()));
        };
        Ok(V2Manager {
            path: path.to_string(),
            mount_point: mount_point.clone(),
            dir: cgroup_dir(mount_point, "/", &own.unified(), path),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Enable in every ancestor's `cgroup.subtree_control` the controllers it has,
    /// so that the container's cgroup gets their files. One write per controller:
    /// one that cannot be enabled (an ancestor with its own processes refuses
    /// domain controllers) must not keep the others off; `set` then reports the
    /// missing file of a controller actually needed.
    fn enable_controllers(&self) {
        let Ok(relative) = self.dir.strip_prefix(&self.mount_point) else {
            return;
        };
        let mut level = self.mount_point.clone();
        for part in relative.iter() {
            let available = fs::read_optional(&level, "cgroup.controllers")
                .ok()
                .flatten()
                .unwrap_or_default();
            let enabled = fs::read_optional(&level, "cgroup.subtree_control")
                .ok()
                .flatten()
                .unwrap_or_default();
            let enabled: Vec<&str> = enabled.split_whitespace().collect();
            for controller in available.split_whitespace() {
                if !enabled.contains(&controller) {
                    let _ = fs::write(&level, "cgroup.subtree_control", format!("+{controller}"));
                }
            }
            level.push(part);
        }
    }

    fn set_cpu(&self, cpu: &LinuxCpu) -> Result<(), CgroupError> {
        let dir = &self.dir;
        let what = "linux.resources.cpu";
        if cpu.realtime_runtime().is_some_and(|r| r != 0)
            || cpu.realtime_period().is_some_and(|p| p != 0)
        {
            return Err(CgroupError::InvalidValue {
                what: "linux.resources.cpu.realtimeRuntime",
                reason: "realtime scheduling limits do not exist in cgroup v2".into(),
            });
        }
        if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
            let weight = resources::shares_to_weight(shares);
            write_ctl(dir, "cpu", what, "cpu.weight", weight.to_string())?;
        }
        let quota = cpu.quota().filter(|&q| q != 0);
        let period = cpu.period().filter(|&p| p != 0);
        if quota.is_some() || period.is_some() {
            // "$MAX $PERIOD"; the period may be left out to keep the current one.
            let mut value = match quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            if let Some(period) = period {
                value = format!("{value} {period}");
            }
            write_ctl(dir, "cpu", what, "cpu.max", value)?;
        }
        if let Some(burst) = cpu.burst() {
            write_ctl(dir, "cpu", what, "cpu.max.burst", burst.to_string())?;
        }
        if let Some(idle) = cpu.idle() {
            write_ctl(dir, "cpu", what, "cpu.idle", idle.to_string())?;
        }
        let what = "linux.resources.cpu.cpus/mems";
        if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            write_ctl(dir, "cpuset", what, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            write_ctl(dir, "cpuset", what, "cpuset.mems", mems)?;
        }
        Ok(())
    }

    /// v2 has no kernel-memory limit, swappiness or OOM-killer switch; those
    /// fields are left unapplied, as runc leaves them.
    fn set_memory(&self, memory: &LinuxMemory) -> Result<(), CgroupError> {
        let dir = &self.dir;
        let what = "linux.resources.memory";
        let limit = memory.limit().filter(|&l| l != 0);
        if let Some(swap) = resources::v2_swap(memory.swap(), limit)? {
            if dir.join("memory.swap.max").exists() {
                fs::write(dir, "memory.swap.max", resources::v2_limit(swap))?;
            } else if swap > 0 {
                // No swap accounting: only an actual limit is an error.
                return Err(CgroupError::ControllerMissing {
                    controller: "memory (swap accounting)",
                    what: "linux.resources.memory.swap",
                });
            }
        }
        if let Some(limit) = limit {
            write_ctl(
                dir,
                "memory",
                what,
                "memory.max",
                resources::v2_limit(limit),
            )?;
        }
        if let Some(reservation) = memory.reservation().filter(|&r| r != 0) {
            write_ctl(
                dir,
                "memory",
                what,
                "memory.low",
                resources::v2_limit(reservation),
            )?;
        }
        Ok(())
    }

    fn set_io(&self, blkio: &LinuxBlockIo) -> Result<(), CgroupError> {
        let dir = &self.dir;
        let what = "linux.resources.blockIO";
        // BFQ takes the v1 scale as is; io.weight wants 1..10000.
        let bfq = dir.join("io.bfq.weight").exists();
        let (file, convert): (&str, fn(u16) -> u64) = if bfq {
            ("io.bfq.weight", u64::from)
        } else {
            ("io.weight", resources::blkio_weight_to_io_weight)
        };
        if let Some(weight) = blkio.weight().filter(|&w| w != 0) {
            write_ctl(
                dir,
                "io",
                what,
                file,
                format!("default {}", convert(weight)),
            )?;
        }
        for device in blkio.weight_device().as_deref().unwrap_or(&[]) {
            if let Some(weight) = device.weight() {
                let line = format!("{}:{} {}", device.major(), device.minor(), convert(weight));
                write_ctl(dir, "io", what, file, line)?;
            }
        }
        // One io.max line per device carrying all of its limits.
        let mut limits: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
        for (devices, key) in [
            (blkio.throttle_read_bps_device(), "rbps"),
            (blkio.throttle_write_bps_device(), "wbps"),
            (blkio.throttle_read_iops_device(), "riops"),
            (blkio.throttle_write_iops_device(), "wiops"),
        ] {
            for device in devices.as_deref().unwrap_or(&[]) {
                limits
                    .entry((device.major(), device.minor()))
                    .or_default()
                    .push(format!("{key}={}", device.rate()));
            }
        }
        for ((major, minor), keys) in limits {
            let line = format!("{major}:{minor} {}", keys.join(" "));
            write_ctl(dir, "io", what, "io.max", line)?;
        }
        Ok(())
    }

    fn wait_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let want = if frozen { 1 } else { 0 };
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            let events = fs::read_keyed(&self.dir, "cgroup.events")?;
            if events.get("frozen").copied().unwrap_or(0) == want {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(CgroupError::Timeout {
                    path: self.dir.join("cgroup.events"),
                    what: if frozen {
                        "the cgroup to freeze"
                    } else {
                        "the cgroup to thaw"
                    },
                });
            }
            polls += 1;
            std::thread::sleep(Duration::from_millis(if polls < 20 { 1 } else { 10 }));
        }
    }
}

impl CgroupManager for V2Manager {
    fn apply(&self, pid: i32) -> Result<(), CgroupError> {
        setup::create_dirs(&self.dir)?;
        self.enable_controllers();
        setup::enter(&self.dir, pid)
    }

    fn set(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let dir = &self.dir;
        if let Some(cpu) = resources.cpu() {
            self.set_cpu(cpu)?;
        }
        if let Some(memory) = resources.memory() {
            self.set_memory(memory)?;
        }
        if let Some(pids) = resources.pids() {
            write_ctl(
                dir,
                "pids",
                "linux.resources.pids",
                "pids.max",
                resources::pids_max(pids.limit()),
            )?;
        }
        if let Some(blkio) = resources.block_io() {
            self.set_io(blkio)?;
        }
        for limit in resources.hugepage_limits().as_deref().unwrap_or(&[]) {
            let size = limit.page_size();
            resources::check_page_size(size)?;
            write_ctl(
                dir,
                "hugetlb",
                "linux.resources.hugepageLimits",
                &format!("hugetlb.{size}.max"),
                limit.limit().to_string(),
            )?;
        }
        if let Some(rules) = resources.devices() {
            let rules = devices::rules_from_spec(rules)?;
            let program = ebpf::load(&ebpf::compile(&rules)?)?;
            ebpf::attach_replacing(dir, &program)?;
        }
        for (key, value) in resources.unified().iter().flatten() {
            if key.contains('/') || key.starts_with('.') || key.is_empty() {
                return Err(CgroupError::InvalidValue {
                    what: "linux.resources.unified",
                    reason: format!("{key:?} is not a cgroup file name"),
                });
            }
            fs::write(dir, key, value)?;
        }
        Ok(())
    }

    fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        write_ctl(
            &self.dir,
            "freezer (cgroup.freeze, Linux 5.2)",
            "pause/resume",
            "cgroup.freeze",
            if frozen { "1" } else { "0" },
        )?;
        let result = self.wait_frozen(frozen);
        if result.is_err() && frozen {
            let _ = fs::write(&self.dir, "cgroup.freeze", "0");
        }
        result
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        let events = fs::read_keyed(&self.dir, "cgroup.events")?;
        Ok(events.get("frozen").copied() == Some(1))
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let dir = &self.dir;
        let mut stats = Stats::default();

        let cpu = fs::read_keyed(dir, "cpu.stat")?;
        let get = |map: &BTreeMap<String, u64>, k: &str| map.get(k).copied().unwrap_or(0);
        stats.cpu.usage.total = get(&cpu, "usage_usec") * 1000;
        stats.cpu.usage.user = get(&cpu, "user_usec") * 1000;
        stats.cpu.usage.kernel = get(&cpu, "system_usec") * 1000;
        stats.cpu.throttling.periods = get(&cpu, "nr_periods");
        stats.cpu.throttling.throttled_periods = get(&cpu, "nr_throttled");
        stats.cpu.throttling.throttled_time = get(&cpu, "throttled_usec") * 1000;

        let memory = &mut stats.memory;
        memory.raw = fs::read_keyed(dir, "memory.stat")?;
        memory.cache = get(&memory.raw, "file");
        memory.usage.usage = read_u64_or_zero(dir, "memory.current")?;
        memory.usage.limit = read_u64_or_zero(dir, "memory.max")?;
        memory.usage.max = read_u64_or_zero(dir, "memory.peak")?;
        memory.usage.failcnt = get(&fs::read_keyed(dir, "memory.events")?, "max");
        // v1's memsw counts memory and swap together; runc reports v2 the same way.
        let swap_current = read_u64_or_zero(dir, "memory.swap.current")?;
        let swap_max = read_u64_or_zero(dir, "memory.swap.max")?;
        memory.swap.usage = swap_current.saturating_add(memory.usage.usage);
        memory.swap.limit = swap_max.saturating_add(memory.usage.limit);
        memory.swap.failcnt = get(&fs::read_keyed(dir, "memory.swap.events")?, "max");

        stats.pids.current = read_u64_or_zero(dir, "pids.current")?;
        let limit = read_u64_or_zero(dir, "pids.max")?;
        stats.pids.limit = if limit == u64::MAX { 0 } else { limit };

        if let Some(content) = fs::read_optional(dir, "io.stat")? {
            stats.blkio = stats::parse_io_stat(&content)
                .ok_or_else(|| fs::parse_error(dir, "io.stat", &content))?;
        }

        for size in super::v1::hugetlb_sizes(dir, ".max") {
            if size.ends_with(".rsvd") {
                continue;
            }
            let events = fs::read_keyed(dir, &format!("hugetlb.{size}.events"))?;
            let entry = stats::Hugetlb {
                usage: read_u64_or_zero(dir, &format!("hugetlb.{size}.current"))?,
                max: 0,
                failcnt: get(&events, "max"),
            };
            stats.hugetlb.insert(size, entry);
        }
        Ok(stats)
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        setup::procs_recursive(&self.dir)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        setup::remove(&self.dir)
    }

    fn path(&self) -> &str {
        &self.path
    }
}
