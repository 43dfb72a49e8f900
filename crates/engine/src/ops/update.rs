//! `docker update`: new resource limits (and restart policy) for a container. Docker's
//! rule: a zero or absent field leaves the current value; the merged HostConfig is
//! saved, and, when the container runs, rendered as the spec renders it at create and
//! written into the live cgroup by the runtime library.

use oci_spec::runtime::LinuxResources;
use serde::Deserialize;

use crate::container::Container;
use crate::engine::{Engine, EngineError, Result};
use crate::spec;
use crate::types::{HostConfig, RestartPolicy};

/// The body of `POST /containers/{id}/update`, named as the Engine API names it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct UpdateConfig {
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub kernel_memory: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub cpu_realtime_period: i64,
    pub cpu_realtime_runtime: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub blkio_weight: u16,
    pub pids_limit: Option<i64>,
    pub restart_policy: Option<RestartPolicy>,
}

/// Merges `u` into `host` as dockerd's update does; a conflict is Docker's message.
pub fn merge(host: &HostConfig, u: &UpdateConfig) -> Result<HostConfig> {
    let mut h = host.clone();
    if u.nano_cpus != 0 && (u.cpu_quota != 0 || u.cpu_period != 0) {
        return Err(EngineError::Invalid(
            "Conflicting options: CPU Quota or CPU Period cannot both be set with Nano CPUs".into(),
        ));
    }
    if u.nano_cpus != 0 && (h.cpu_quota != 0 || h.cpu_period != 0) {
        return Err(EngineError::Conflict(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
                .into(),
        ));
    }
    if (u.cpu_quota != 0 || u.cpu_period != 0) && h.nano_cpus != 0 {
        return Err(EngineError::Conflict(
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"
                .into(),
        ));
    }
    if u.memory != 0 {
        if h.memory_swap > 0 && u.memory > h.memory_swap && u.memory_swap == 0 {
            return Err(EngineError::Conflict(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
            ));
        }
        h.memory = u.memory;
    }
    if u.memory_swap != 0 {
        h.memory_swap = u.memory_swap;
    }
    if u.memory_reservation != 0 {
        h.memory_reservation = u.memory_reservation;
    }
    if u.kernel_memory != 0 {
        h.kernel_memory = u.kernel_memory;
    }
    if u.nano_cpus != 0 {
        h.nano_cpus = u.nano_cpus;
    }
    if u.cpu_shares != 0 {
        h.cpu_shares = u.cpu_shares;
    }
    if u.cpu_quota != 0 {
        h.cpu_quota = u.cpu_quota;
    }
    if u.cpu_period != 0 {
        h.cpu_period = u.cpu_period;
    }
    if u.cpu_realtime_period != 0 {
        h.cpu_realtime_period = u.cpu_realtime_period;
    }
    if u.cpu_realtime_runtime != 0 {
        h.cpu_realtime_runtime = u.cpu_realtime_runtime;
    }
    if !u.cpuset_cpus.is_empty() {
        h.cpuset_cpus = u.cpuset_cpus.clone();
    }
    if !u.cpuset_mems.is_empty() {
        h.cpuset_mems = u.cpuset_mems.clone();
    }
    if u.blkio_weight != 0 {
        h.blkio_weight = u.blkio_weight;
    }
    if let Some(p) = u.pids_limit.filter(|p| *p != 0) {
        h.pids_limit = Some(p);
    }
    if let Some(policy) = u.restart_policy.as_ref().filter(|p| !p.name.is_empty()) {
        if h.auto_remove && policy.name != "no" {
            return Err(EngineError::Invalid(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            ));
        }
        match policy.name.as_str() {
            "no" | "always" | "unless-stopped" | "on-failure" => {}
            other => {
                return Err(EngineError::Invalid(format!(
                    "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                )))
            }
        }
        h.restart_policy = policy.clone();
    }
    Ok(h)
}

/// The cgroup resources of a HostConfig, without the device rules (an update never
/// touches those).
pub fn live_resources(host: &HostConfig) -> Result<LinuxResources> {
    let mut rendered = spec::resources(host, host.privileged)?;
    if let Some(map) = rendered.as_object_mut() {
        map.remove("devices");
    }
    serde_json::from_value(rendered)
        .map_err(|e| EngineError::Internal(format!("rendering resources: {e}")))
}

impl Engine {
    /// `POST /containers/{id}/update`: the warnings (none, as on a cgroup v1 or v2
    /// host with every controller).
    pub fn update(&self, key: &str, update: &UpdateConfig) -> Result<Vec<String>> {
        let id = self.resolve(key)?;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c: Container = self.store().get(&id)?;
        let merged = merge(&c.host_config, update)?;
        let resources = live_resources(&merged)?;
        if c.state.running {
            berth_runtime::container::update::update(&self.runtime_global(), &id, &resources)
                .map_err(|e| EngineError::Internal(format!("Cannot update container {id}: {e}")))?;
        }
        c.host_config = merged;
        self.save(&c)?;
        self.container_event(&c, "update", &[]);
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fields_keep_the_current_values() {
        let host = HostConfig {
            memory: 64 << 20,
            cpu_shares: 512,
            ..Default::default()
        };
        let u = UpdateConfig {
            cpu_shares: 1024,
            pids_limit: Some(50),
            ..Default::default()
        };
        let h = merge(&host, &u).expect("merge");
        assert_eq!(h.memory, 64 << 20);
        assert_eq!(h.cpu_shares, 1024);
        assert_eq!(h.pids_limit, Some(50));
        let r = live_resources(&h).expect("resources");
        assert_eq!(r.memory().and_then(|m| m.limit()), Some(64 << 20));
        assert!(r.devices().is_none());
    }

    #[test]
    fn conflicts_as_docker_words_them() {
        let host = HostConfig {
            memory: 64 << 20,
            memory_swap: 128 << 20,
            ..Default::default()
        };
        let e = merge(
            &host,
            &UpdateConfig {
                memory: 256 << 20,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("Memory limit should be smaller"),
            "{e}"
        );
        let e = merge(
            &HostConfig {
                auto_remove: true,
                ..Default::default()
            },
            &UpdateConfig {
                restart_policy: Some(RestartPolicy {
                    name: "always".into(),
                    maximum_retry_count: 0,
                }),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, EngineError::Invalid(_)));
    }
}
