//! The container configuration of the Engine API (`POST /containers/create`): `Config`
//! and `HostConfig`, with Docker's field names so that a reader with the API reference
//! open finds each one. Unknown fields are ignored, as dockerd ignores them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// `Config`: what the image could also say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<HashMap<String, serde_json::Value>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "string_or_vec")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    pub args_escaped: Option<bool>,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<HashMap<String, serde_json::Value>>,
    pub working_dir: String,
    #[serde(deserialize_with = "string_or_vec")]
    pub entrypoint: Option<Vec<String>>,
    pub network_disabled: Option<bool>,
    pub mac_address: Option<String>,
    pub on_build: Option<Vec<String>>,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: HashMap<String, String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub shell: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    pub test: Option<Vec<String>>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub typ: String,
    #[serde(deserialize_with = "null_as_default")]
    pub config: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WeightDevice {
    pub path: String,
    pub weight: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ThrottleDevice {
    pub path: String,
    pub rate: u64,
}

/// One entry of `HostConfig.Mounts`, as the Engine API names it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mount {
    #[serde(rename = "Type")]
    pub typ: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub consistency: String,
    pub bind_options: Option<BindOptions>,
    pub tmpfs_options: Option<TmpfsOptions>,
    pub volume_options: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    pub propagation: String,
    pub non_recursive: bool,
    pub create_mountpoint: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    pub size_bytes: i64,
    pub mode: u32,
}

/// `HostConfig`: what only the host decides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub binds: Vec<String>,
    /// The terminal's initial [height, width] for a tty container (the CLI sends it).
    pub console_size: Option<Vec<u16>>,
    /// `--mount` (bind, volume, tmpfs).
    #[serde(deserialize_with = "null_as_default")]
    pub mounts: Vec<Mount>,
    pub container_i_d_file: String,
    pub log_config: LogConfig,
    pub network_mode: String,
    pub port_bindings: Option<serde_json::Value>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub volume_driver: String,
    #[serde(deserialize_with = "null_as_default")]
    pub volumes_from: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub cap_add: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub cap_drop: Vec<String>,
    pub cgroupns_mode: String,
    #[serde(deserialize_with = "null_as_default")]
    pub dns: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub dns_options: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub dns_search: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub extra_hosts: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub group_add: Vec<String>,
    pub ipc_mode: String,
    pub cgroup: String,
    #[serde(deserialize_with = "null_as_default")]
    pub links: Vec<String>,
    pub oom_score_adj: i32,
    pub pid_mode: String,
    pub privileged: bool,
    pub publish_all_ports: bool,
    pub readonly_rootfs: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub security_opt: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub storage_opt: HashMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub tmpfs: HashMap<String, String>,
    #[serde(rename = "UTSMode")]
    pub uts_mode: String,
    pub userns_mode: String,
    pub shm_size: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub sysctls: HashMap<String, String>,
    pub runtime: String,
    pub isolation: String,
    // Resources
    pub cpu_shares: i64,
    pub memory: i64,
    pub nano_cpus: i64,
    pub cgroup_parent: String,
    pub blkio_weight: u16,
    #[serde(deserialize_with = "null_as_default")]
    pub blkio_weight_device: Vec<WeightDevice>,
    #[serde(deserialize_with = "null_as_default")]
    pub blkio_device_read_bps: Vec<ThrottleDevice>,
    #[serde(deserialize_with = "null_as_default")]
    pub blkio_device_write_bps: Vec<ThrottleDevice>,
    #[serde(rename = "BlkioDeviceReadIOps", deserialize_with = "null_as_default")]
    pub blkio_device_read_iops: Vec<ThrottleDevice>,
    #[serde(rename = "BlkioDeviceWriteIOps", deserialize_with = "null_as_default")]
    pub blkio_device_write_iops: Vec<ThrottleDevice>,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_realtime_period: i64,
    pub cpu_realtime_runtime: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    #[serde(deserialize_with = "null_as_default")]
    pub devices: Vec<DeviceMapping>,
    #[serde(deserialize_with = "null_as_default")]
    pub device_cgroup_rules: Vec<String>,
    pub kernel_memory: i64,
    pub memory_reservation: i64,
    pub memory_swap: i64,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub pids_limit: Option<i64>,
    #[serde(deserialize_with = "null_as_default")]
    pub ulimits: Vec<Ulimit>,
    pub init: Option<bool>,
    #[serde(deserialize_with = "null_as_default")]
    pub masked_paths: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub readonly_paths: Vec<String>,
}

/// Docker's JSON has `null` where a list or map is empty.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `Cmd` and `Entrypoint` may be a string (old clients) or a list.
fn string_or_vec<'de, D>(d: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        None => None,
        Some(Either::One(s)) => Some(vec![s]),
        Some(Either::Many(v)) => Some(v),
    })
}
