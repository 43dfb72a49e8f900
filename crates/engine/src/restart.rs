//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`), with
//! dockerd's back-off: the first restart after 100 ms, each next one twice as late,
//! at most a minute; a container that ran for 10 s or more starts the count again.

use std::sync::Arc;
use std::time::Duration;

use crate::container::{parse_rfc3339_secs, Container};
use crate::engine::Engine;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the back-off.
const STABLE_RUN_SECS: i64 = 10;

/// Whether the policy asks for a restart after this exit. `daemon_start` is the
/// decision made when berthd starts (where `always` also revives a container that
/// was stopped by hand, and `unless-stopped` does not).
pub fn wants_restart(c: &Container, exit_code: i32, daemon_start: bool) -> bool {
    let policy = &c.host_config.restart_policy;
    match policy.name.as_str() {
        "always" => daemon_start || !c.manually_stopped,
        "unless-stopped" => !c.manually_stopped,
        "on-failure" => {
            !c.manually_stopped
                && exit_code != 0
                && (policy.maximum_retry_count <= 0 || c.restart_count < policy.maximum_retry_count)
        }
        _ => false,
    }
}

/// The delay before the next restart: doubled per restart since the last stable run.
pub fn backoff(attempt: u32) -> Duration {
    FIRST_DELAY
        .checked_mul(1u32 << attempt.min(20))
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY)
}

impl Engine {
    /// After an exit: restart the container later if its policy says so. Marks it
    /// `restarting` meanwhile, as `docker ps` shows it.
    pub(crate) fn schedule_restart(self: &Arc<Self>, c: &Container, exit_code: i32) {
        if !wants_restart(c, exit_code, false) {
            return;
        }
        let ran = parse_rfc3339_secs(&c.state.finished_at)
            .zip(parse_rfc3339_secs(&c.state.started_at))
            .map(|(end, start)| end - start)
            .unwrap_or(0);
        let attempt = {
            let mut attempts = self.restart_attempts();
            let n = attempts.entry(c.id.clone()).or_insert(0);
            if ran >= STABLE_RUN_SECS {
                *n = 0;
            }
            let this = *n;
            *n += 1;
            this
        };
        self.mark_restarting(&c.id);
        let engine = self.clone();
        let id = c.id.clone();
        let delay = backoff(attempt);
        let _ = std::thread::Builder::new()
            .name(format!("restart-{}", &id[..12.min(id.len())]))
            .stack_size(1 << 20)
            .spawn(move || {
                std::thread::sleep(delay);
                engine.restart_now(&id);
            });
    }

    /// The delayed half of a restart: only if it is still wanted (not removed,
    /// stopped or started by hand meanwhile).
    fn restart_now(self: &Arc<Self>, id: &str) {
        let Ok(c) = self.get(id) else {
            return;
        };
        if c.state.running || !c.state.restarting || c.manually_stopped {
            return;
        }
        if self.start(id).is_ok() {
            self.count_restart(id);
        } else {
            // A start that fails ends the policy here, as a failed start does in dockerd.
            self.clear_restarting(id);
        }
    }

    /// At daemon start: start what the policies say should be running.
    pub(crate) fn restart_on_daemon_start(self: &Arc<Self>) {
        let Ok(all) = self.list() else {
            return;
        };
        for c in all {
            if c.state.running || c.state.status == "created" {
                continue;
            }
            let restarting = c.state.restarting;
            if restarting || wants_restart(&c, c.state.exit_code, true) {
                let _ = self.start(&c.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RestartPolicy;

    fn container(policy: &str, max: i64, count: i64, manual: bool) -> Container {
        let mut c = Container::default();
        c.host_config.restart_policy = RestartPolicy {
            name: policy.into(),
            maximum_retry_count: max,
        };
        c.restart_count = count;
        c.manually_stopped = manual;
        c
    }

    #[test]
    fn policies() {
        assert!(!wants_restart(&container("no", 0, 0, false), 1, false));
        assert!(!wants_restart(&container("", 0, 0, false), 1, true));
        assert!(wants_restart(&container("always", 0, 0, false), 0, false));
        assert!(!wants_restart(&container("always", 0, 0, true), 0, false));
        assert!(wants_restart(&container("always", 0, 0, true), 0, true));
        assert!(wants_restart(
            &container("unless-stopped", 0, 0, false),
            0,
            true
        ));
        assert!(!wants_restart(
            &container("unless-stopped", 0, 0, true),
            0,
            true
        ));
        assert!(!wants_restart(
            &container("on-failure", 0, 0, false),
            0,
            false
        ));
        assert!(wants_restart(
            &container("on-failure", 0, 7, false),
            1,
            false
        ));
        assert!(wants_restart(
            &container("on-failure", 3, 2, false),
            1,
            false
        ));
        assert!(!wants_restart(
            &container("on-failure", 3, 3, false),
            1,
            false
        ));
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(15), MAX_DELAY);
        assert_eq!(backoff(100), MAX_DELAY);
    }
}
