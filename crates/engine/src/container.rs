//! The container record: what `docker inspect` shows, persisted in the store.

use serde::{Deserialize, Serialize};

use crate::types::{ContainerConfig, HostConfig};

/// `State` of `docker inspect`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    /// created, running, paused, restarting, removing, exited, dead
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<serde_json::Value>,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl State {
    pub fn created() -> Self {
        State {
            status: "created".into(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            ..Default::default()
        }
    }
}

/// Where the container's root filesystem lives (`GraphDriver.Data`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootfsInfo {
    pub merged_dir: String,
    pub upper_dir: String,
    pub work_dir: String,
    pub lower_dir: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Container {
    pub id: String,
    /// With the leading '/', as Docker stores it.
    pub name: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// The image ID (sha256:…).
    pub image: String,
    pub state: State,
    pub restart_count: i64,
    pub log_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub resolv_conf_path: String,
    pub rootfs: RootfsInfo,
    /// Set when a stop or kill was asked for, so restart policies leave it stopped.
    #[serde(default)]
    pub manually_stopped: bool,
    /// Its networks: configured, and set up while it runs.
    #[serde(default)]
    pub network: crate::net::ContainerNetwork,
    /// What it mounts (binds, volumes, tmpfs), decided at create; see [`crate::mounts`].
    #[serde(default)]
    pub mount_points: Vec<crate::mounts::MountPoint>,
}

impl Container {
    /// `Mounts` of inspect and list.
    pub fn mount_points(&self) -> serde_json::Value {
        serde_json::Value::Array(self.mount_points.iter().map(|m| m.to_json()).collect())
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// The body of `GET /containers/{id}/json`.
    pub fn inspect(&self) -> serde_json::Value {
        serde_json::json!({
            "Id": self.id,
            "Created": self.created,
            "Path": self.path,
            "Args": self.args,
            "State": self.state,
            "Image": self.image,
            "ResolvConfPath": self.resolv_conf_path,
            "HostnamePath": self.hostname_path,
            "HostsPath": self.hosts_path,
            "LogPath": self.log_path,
            "Name": self.name,
            "RestartCount": self.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": null,
            "HostConfig": self.host_config,
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "LowerDir": self.rootfs.lower_dir,
                    "MergedDir": self.rootfs.merged_dir,
                    "UpperDir": self.rootfs.upper_dir,
                    "WorkDir": self.rootfs.work_dir,
                }
            },
            "Mounts": self.mount_points(),
            "Config": self.config,
            "NetworkSettings": crate::net::settings_json(self, None),
        })
    }

    /// `Status` column text of `docker ps`, e.g. "Up 5 seconds", "Exited (0) 2 minutes ago".
    pub fn status_text(&self, now_secs: i64) -> String {
        let since = |t: &str| parse_rfc3339_secs(t).map(|s| now_secs - s).unwrap_or(0);
        match self.state.status.as_str() {
            "running" => {
                let mut s = format!("Up {}", human_duration(since(&self.state.started_at)));
                if self.state.paused {
                    s.push_str(" (Paused)");
                }
                if let Some(h) = self
                    .state
                    .health
                    .as_ref()
                    .and_then(|h| h.get("Status"))
                    .and_then(|s| s.as_str())
                {
                    match h {
                        "starting" => s.push_str(" (health: starting)"),
                        other => s.push_str(&format!(" ({other})")),
                    }
                }
                s
            }
            "paused" => format!(
                "Up {} (Paused)",
                human_duration(since(&self.state.started_at))
            ),
            "restarting" => format!(
                "Restarting ({}) {} ago",
                self.state.exit_code,
                human_duration(since(&self.state.finished_at))
            ),
            "exited" => format!(
                "Exited ({}) {} ago",
                self.state.exit_code,
                human_duration(since(&self.state.finished_at))
            ),
            "created" => "Created".into(),
            "removing" => "Removal In Progress".into(),
            "dead" => "Dead".into(),
            other => other.to_string(),
        }
    }
}

/// Docker's (go-units) HumanDuration.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let m = s / 60;
    if m == 1 {
        return "About a minute".into();
    }
    if m < 60 {
        return format!("{m} minutes");
    }
    let h = (s as f64 / 3600.0).round() as i64;
    if h == 1 {
        return "About an hour".into();
    }
    if h < 48 {
        return format!("{h} hours");
    }
    if h < 24 * 7 * 2 {
        return format!("{} days", h / 24);
    }
    if h < 24 * 30 * 2 {
        return format!("{} weeks", h / 24 / 7);
    }
    if h < 24 * 365 * 2 {
        return format!("{} months", h / 24 / 30);
    }
    format!("{} years", h / 24 / 365)
}

/// Seconds since the epoch of an RFC 3339 UTC time ("2026-11-22T18:00:00.123Z").
pub fn parse_rfc3339_secs(t: &str) -> Option<i64> {
    let (date, rest) = t.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = rest.trim_end_matches('Z');
    let time = time.split(['+', '.']).next()?;
    let mut tp = time.split(':').map(|x| x.parse::<i64>());
    let (h, mi, s) = (tp.next()?.ok()?, tp.next()?.ok()?, tp.next()?.ok()?);
    // Days from civil (inverse of the runtime's formatter).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_docker_prints_them() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(75), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 86_400), "3 days");
    }

    #[test]
    fn times() {
        assert_eq!(parse_rfc3339_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_secs("2023-11-14T22:13:20.000000005Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339_secs("2000-02-29T00:00:00Z"),
            Some(951_782_400)
        );
    }
}
