//! Health checks (the image's HEALTHCHECK or `--health-*`): a probe run in the
//! container through its shim every interval; `State.Health` says `starting`,
//! `healthy` or `unhealthy`, and each change is a `health_status` event.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::container::Container;
use crate::engine::Engine;
use crate::shim_client::ShimClient;
use crate::types::HealthConfig;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: i64 = 3;
/// Results kept in `State.Health.Log`, as dockerd keeps them.
const KEPT_RESULTS: usize = 5;
const MAX_OUTPUT: usize = 4096;

fn nanos(v: Option<i64>, default: Duration) -> Duration {
    match v {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The container's check merged over the image's, as dockerd merges them at
/// create: fields the container leaves unset come from the image.
pub fn merge(container: Option<HealthConfig>, image: Option<&Value>) -> Option<HealthConfig> {
    let image: Option<HealthConfig> = image.and_then(|v| serde_json::from_value(v.clone()).ok());
    match (container, image) {
        (None, i) => i,
        (Some(c), None) => Some(c),
        (Some(c), Some(i)) => Some(HealthConfig {
            test: c.test.or(i.test),
            interval: c.interval.filter(|n| *n > 0).or(i.interval),
            timeout: c.timeout.filter(|n| *n > 0).or(i.timeout),
            start_period: c.start_period.filter(|n| *n > 0).or(i.start_period),
            start_interval: c.start_interval.filter(|n| *n > 0).or(i.start_interval),
            retries: c.retries.filter(|n| *n > 0).or(i.retries),
        }),
    }
}

/// The probe's command line, or None when there is no check (`NONE`, empty).
pub fn probe_args(test: &[String]) -> Option<Vec<String>> {
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
        }
        _ => None,
    }
}

/// One probe's result.
struct Probe {
    start: String,
    end: String,
    exit_code: i64,
    output: String,
}

/// Reads Docker-framed output (stdout and stderr alike) until EOF or the deadline.
fn read_framed(stream: &mut std::os::unix::net::UnixStream, deadline: Instant) -> (String, bool) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (decode_frames(&raw), true);
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => return (decode_frames(&raw), false),
            Ok(n) => {
                if raw.len() < MAX_OUTPUT * 2 {
                    raw.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (decode_frames(&raw), Instant::now() >= deadline),
        }
    }
}

fn decode_frames(mut raw: &[u8]) -> String {
    let mut out = Vec::new();
    while raw.len() >= 8 {
        let len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
        let end = (8 + len).min(raw.len());
        out.extend_from_slice(&raw[8..end]);
        raw = &raw[end..];
    }
    out.truncate(MAX_OUTPUT);
    String::from_utf8_lossy(&out).into_owned()
}

impl Engine {
    /// Starts the health monitor of a container that has just started (or was
    /// re-adopted), if it has a check.
    pub(crate) fn monitor_health(self: &Arc<Self>, c: &Container) {
        let Some(check) = c.config.healthcheck.clone() else {
            return;
        };
        let Some(args) = check.test.as_deref().and_then(probe_args) else {
            return;
        };
        let engine = self.clone();
        let id = c.id.clone();
        let started_at = c.state.started_at.clone();
        if c.state.health.is_none() {
            self.set_health(&id, &started_at, |h| {
                *h = json!({"Status": "starting", "FailingStreak": 0, "Log": []});
            });
        }
        let _ = std::thread::Builder::new()
            .name(format!("health-{}", &id[..12.min(id.len())]))
            .stack_size(1 << 20)
            .spawn(move || engine.health_loop(&id, &started_at, &check, &args));
    }

    fn health_loop(
        self: &Arc<Self>,
        id: &str,
        started_at: &str,
        check: &HealthConfig,
        args: &[String],
    ) {
        let interval = nanos(check.interval, DEFAULT_INTERVAL);
        let start_interval = nanos(check.start_interval, Duration::from_secs(5)).min(interval);
        let timeout = nanos(check.timeout, DEFAULT_TIMEOUT);
        let start_period = nanos(check.start_period, Duration::ZERO);
        let retries = check.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES);
        let began = Instant::now();
        let mut round: u64 = 0;
        loop {
            let in_start_period = began.elapsed() < start_period;
            std::thread::sleep(if in_start_period {
                start_interval
            } else {
                interval
            });
            let still_ours = self
                .get(id)
                .is_ok_and(|c| c.state.running && c.state.started_at == started_at);
            if !still_ours {
                return;
            }
            round += 1;
            let probe = self.run_probe(id, args, timeout, round);
            let failed = probe.exit_code != 0;
            let counts = !(failed && began.elapsed() < start_period);
            let mut changed_to = None;
            self.set_health(id, started_at, |h| {
                let old = h
                    .get("Status")
                    .and_then(Value::as_str)
                    .unwrap_or("starting")
                    .to_string();
                let mut streak = h.get("FailingStreak").and_then(Value::as_i64).unwrap_or(0);
                let mut log: Vec<Value> = h
                    .get("Log")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                log.push(json!({
                    "Start": probe.start, "End": probe.end,
                    "ExitCode": probe.exit_code, "Output": probe.output,
                }));
                if log.len() > KEPT_RESULTS {
                    log.remove(0);
                }
                let status = if !failed {
                    streak = 0;
                    "healthy".to_string()
                } else if counts {
                    streak += 1;
                    if streak >= retries {
                        "unhealthy".to_string()
                    } else {
                        old.clone()
                    }
                } else {
                    old.clone()
                };
                if status != old {
                    changed_to = Some(status.clone());
                }
                *h = json!({"Status": status, "FailingStreak": streak, "Log": log});
            });
            if let (Some(status), Ok(c)) = (changed_to, self.get(id)) {
                self.container_event(&c, &format!("health_status: {status}"), &[]);
            }
        }
    }

    fn run_probe(&self, id: &str, args: &[String], timeout: Duration, round: u64) -> Probe {
        let start = crate::engine::now();
        let failure = |output: String, code: i64| Probe {
            start: start.clone(),
            end: crate::engine::now(),
            exit_code: code,
            output,
        };
        let state_dir = self.config.state_dir(id);
        let spec = match crate::exec::container_spec(&state_dir) {
            Ok(s) => s,
            Err(e) => return failure(e.to_string(), -1),
        };
        let mut process = spec.get("process").cloned().unwrap_or_else(|| json!({}));
        process["args"] = json!(args);
        process["terminal"] = json!(false);
        let client = ShimClient::new(id, &state_dir);
        let exec_id = format!("health-{round}-{}", std::process::id());
        let (_, mut stream) = match client.exec(&exec_id, &process, false, false) {
            Ok(r) => r,
            Err(e) => return failure(e.to_string(), -1),
        };
        let (output, timed_out) = read_framed(&mut stream, Instant::now() + timeout);
        if timed_out {
            return failure(
                format!("Health check exceeded timeout ({}s)", timeout.as_secs()),
                -1,
            );
        }
        // The stream ends when the process has; its code is in the shim's record.
        let mut code = -1;
        for _ in 0..50 {
            match client.exec_state(&exec_id) {
                Ok(s) if !s.running => {
                    code = s.exit_code.unwrap_or(-1) as i64;
                    break;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        Probe {
            start,
            end: crate::engine::now(),
            exit_code: code,
            output,
        }
    }

    /// Changes `State.Health` of the run that started at `started_at`.
    fn set_health(&self, id: &str, started_at: &str, change: impl FnOnce(&mut Value)) {
        self.update_record(id, |c| {
            if c.state.started_at != started_at {
                return;
            }
            let mut h = c.state.health.take().unwrap_or_else(|| json!({}));
            change(&mut h);
            c.state.health = Some(h);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_command_lines() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(probe_args(&v(&["CMD", "true"])), Some(v(&["true"])));
        assert_eq!(
            probe_args(&v(&["CMD-SHELL", "test -f /x"])),
            Some(v(&["/bin/sh", "-c", "test -f /x"]))
        );
        assert_eq!(probe_args(&v(&["NONE"])), None);
        assert_eq!(probe_args(&[]), None);
    }

    #[test]
    fn container_fields_win_over_the_image() {
        let image = json!({"Test": ["CMD", "true"], "Interval": 5, "Retries": 2});
        let c = HealthConfig {
            interval: Some(9),
            ..Default::default()
        };
        let m = merge(Some(c), Some(&image)).unwrap_or_default();
        assert_eq!(m.test, Some(vec!["CMD".to_string(), "true".to_string()]));
        assert_eq!((m.interval, m.retries), (Some(9), Some(2)));
        assert_eq!(merge(None, None), None);
    }

    #[test]
    fn frames_decoded() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
        raw.extend_from_slice(b"ok\n");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2]);
        raw.extend_from_slice(b"e\n");
        assert_eq!(decode_frames(&raw), "ok\ne\n");
    }
}
