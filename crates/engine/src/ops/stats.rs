//! `docker stats`: one sample of the container's cgroup (v1 or v2, read by the
//! runtime library) in the Engine API's JSON shape, with the host's CPU time
//! (`system_cpu_usage`) that the CLI divides by.

use berth_runtime::cgroups::Stats;
use serde_json::{json, Value};

use crate::engine::{Engine, Result};

/// One reading: the cgroup's numbers and when they were read.
#[derive(Debug, Clone)]
pub struct Sample {
    pub read: String,
    pub stats: Stats,
    /// Nanoseconds of CPU time the host has spent, all CPUs together.
    pub system_cpu: u64,
    pub online_cpus: u64,
}

/// The host's CPU time from the `cpu` line of /proc/stat (user to softirq, as
/// dockerd sums them), in nanoseconds.
pub fn system_cpu_usage(proc_stat: &str) -> u64 {
    // SAFETY: sysconf only reads a constant of the running kernel.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    proc_stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
        })
        .map_or(0, |t| t.saturating_mul(1_000_000_000 / ticks))
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn cpu_json(s: Option<&Sample>) -> Value {
    let Some(s) = s else {
        return json!({
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        });
    };
    let cpu = &s.stats.cpu;
    let mut usage = json!({
        "total_usage": cpu.usage.total,
        "usage_in_kernelmode": cpu.usage.kernel,
        "usage_in_usermode": cpu.usage.user,
    });
    if !cpu.usage.percpu.is_empty() {
        usage["percpu_usage"] = json!(cpu.usage.percpu);
    }
    json!({
        "cpu_usage": usage,
        "system_cpu_usage": s.system_cpu,
        "online_cpus": s.online_cpus,
        "throttling_data": {
            "periods": cpu.throttling.periods,
            "throttled_periods": cpu.throttling.throttled_periods,
            "throttled_time": cpu.throttling.throttled_time,
        },
    })
}

fn blkio_list(entries: &[berth_runtime::cgroups::stats::BlkioEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| json!({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}))
            .collect(),
    )
}

/// The Engine API's stats JSON of `now` over `previous` (the CLI takes the CPU
/// percentage from their difference). `host_memory` caps an unlimited cgroup's limit
/// as dockerd does.
pub fn render(
    id: &str,
    name: &str,
    now: Option<&Sample>,
    previous: Option<&Sample>,
    host_memory: u64,
) -> Value {
    const ZERO: &str = "0001-01-01T00:00:00Z";
    let memory = now.map(|s| {
        let m = &s.stats.memory;
        let mut limit = m.usage.limit;
        if limit == 0 || (host_memory > 0 && limit > host_memory) {
            limit = host_memory;
        }
        let mut out = json!({
            "usage": m.usage.usage,
            "stats": m.raw,
            "limit": limit,
        });
        if m.usage.max > 0 {
            out["max_usage"] = json!(m.usage.max);
        }
        if m.usage.failcnt > 0 {
            out["failcnt"] = json!(m.usage.failcnt);
        }
        out
    });
    let pids = now.map(|s| {
        let mut p = json!({"current": s.stats.pids.current});
        if s.stats.pids.limit > 0 {
            p["limit"] = json!(s.stats.pids.limit);
        }
        p
    });
    let blkio = now.map(|s| {
        let b = &s.stats.blkio;
        json!({
            "io_service_bytes_recursive": blkio_list(&b.io_service_bytes_recursive),
            "io_serviced_recursive": blkio_list(&b.io_serviced_recursive),
            "io_queue_recursive": blkio_list(&b.io_queued_recursive),
            "io_service_time_recursive": blkio_list(&b.io_service_time_recursive),
            "io_wait_time_recursive": blkio_list(&b.io_wait_time_recursive),
            "io_merged_recursive": blkio_list(&b.io_merged_recursive),
            "io_time_recursive": blkio_list(&b.io_time_recursive),
            "sectors_recursive": blkio_list(&b.sectors_recursive),
        })
    });
    json!({
        "name": name,
        "id": id,
        "read": now.map_or(ZERO, |s| s.read.as_str()),
        "preread": previous.map_or(ZERO, |s| s.read.as_str()),
        "pids_stats": pids.unwrap_or_else(|| json!({})),
        "blkio_stats": blkio.unwrap_or_else(|| json!({
            "io_service_bytes_recursive": null, "io_serviced_recursive": null,
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null,
        })),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(now),
        "precpu_stats": cpu_json(previous),
        "memory_stats": memory.unwrap_or_else(|| json!({})),
    })
}

impl Engine {
    /// One sample of a running container; `None` when it does not run (the API then
    /// answers zeroes, as dockerd does).
    pub fn stats_sample(&self, key: &str) -> Result<Option<Sample>> {
        let c = self.get(key)?;
        if !c.state.running {
            return Ok(None);
        }
        let Ok(cgroup) = self.cgroup(&c.id) else {
            return Ok(None);
        };
        let Ok(stats) = cgroup.stats() else {
            return Ok(None);
        };
        let proc_stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let online = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let online = if stats.cpu.usage.percpu.is_empty() {
            online
        } else {
            (stats.cpu.usage.percpu.len() as u64).min(online.max(1))
        };
        Ok(Some(Sample {
            read: berth_runtime::state::now_rfc3339(),
            stats,
            system_cpu: system_cpu_usage(&proc_stat),
            online_cpus: online,
        }))
    }

    /// The stats JSON of container `key` for `now` over `previous`.
    pub fn stats_json(
        &self,
        key: &str,
        now: Option<&Sample>,
        previous: Option<&Sample>,
    ) -> Result<Value> {
        let c = self.get(key)?;
        Ok(render(&c.id, &c.name, now, previous, host_memory()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_cpu_sums_the_first_seven_fields() {
        let text = "cpu  100 0 50 1000 10 0 5 7 0 0\ncpu0 1 2 3\n";
        // SAFETY: sysconf reads a kernel constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(system_cpu_usage(text), 1165 * (1_000_000_000 / hz));
    }

    #[test]
    fn docker_shape_with_an_unlimited_cgroup() {
        let mut stats = Stats::default();
        stats.cpu.usage.total = 5_000;
        stats.cpu.usage.percpu = vec![2_000, 3_000];
        stats.memory.usage.usage = 1 << 20;
        stats.memory.usage.limit = u64::MAX / 2;
        stats.memory.raw.insert("total_inactive_file".into(), 4096);
        stats.pids.current = 2;
        let s = Sample {
            read: "2026-01-01T00:00:01Z".into(),
            stats,
            system_cpu: 9_000,
            online_cpus: 2,
        };
        let v = render("abc", "/web", Some(&s), None, 8 << 30);
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 5_000);
        assert_eq!(v["cpu_stats"]["cpu_usage"]["percpu_usage"][1], 3_000);
        assert_eq!(v["cpu_stats"]["online_cpus"], 2);
        assert_eq!(v["precpu_stats"]["cpu_usage"]["total_usage"], 0);
        assert_eq!(v["memory_stats"]["limit"], 8u64 << 30);
        assert_eq!(v["memory_stats"]["stats"]["total_inactive_file"], 4096);
        assert_eq!(v["pids_stats"]["current"], 2);
        assert_eq!(v["preread"], "0001-01-01T00:00:00Z");
        assert_eq!(v["name"], "/web");
    }
}
