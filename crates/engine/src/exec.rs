//! `docker exec`: exec instances (create, start, resize, inspect). An exec lives in
//! berthd's memory, as in dockerd; its process is parented and reaped by the
//! container's shim, which keeps its exit code for inspect.

use std::os::unix::net::UnixStream;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::{Engine, EngineError, Result};
use crate::shim_client::ShimClient;
use crate::spec;
use crate::user;

/// The body of `POST /containers/{id}/exec`, named as the Engine API names it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ExecConfig {
    pub user: String,
    pub privileged: bool,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub detach_keys: String,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: String,
    pub console_size: Option<Vec<u16>>,
}

/// One exec instance.
#[derive(Debug, Clone)]
pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub started: bool,
    /// The host PID once started.
    pub pid: i32,
    /// Set when the process could not be started (126, or 127 when the command was
    /// not found, as `docker exec` exits).
    pub failed: Option<i32>,
}

/// What a started exec gives back: the stream (framed unless `tty`) of its output
/// that takes its stdin.
pub struct ExecStream {
    pub stream: UnixStream,
    pub tty: bool,
}

/// The running container's OCI spec, as its shim was given it: exec and health
/// probes start from its process (capabilities, rlimits, environment).
pub(crate) fn container_spec(state_dir: &Path) -> Result<Value> {
    let bundle = std::fs::read(state_dir.join("bundle").join("config.json"))
        .map_err(|e| EngineError::Internal(format!("read the container's spec: {e}")))?;
    serde_json::from_slice(&bundle)
        .map_err(|e| EngineError::Internal(format!("parse the container's spec: {e}")))
}

fn exec_id() -> String {
    let mut buf = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Engine {
    fn not_running(&self, id: &str) -> EngineError {
        EngineError::Conflict(format!("container {id} is not running"))
    }

    /// `POST /containers/{id}/exec`: the new exec's ID.
    pub fn exec_create(&self, key: &str, config: ExecConfig) -> Result<String> {
        let c = self.get(key)?;
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(EngineError::Invalid("No exec command specified".into()));
        }
        if !c.state.running {
            return Err(self.not_running(&c.id));
        }
        if c.state.paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is paused, unpause the container before exec",
                c.id
            )));
        }
        let id = exec_id();
        self.execs().insert(
            id.clone(),
            Exec {
                id: id.clone(),
                container_id: c.id,
                config,
                started: false,
                pid: 0,
                failed: None,
            },
        );
        Ok(id)
    }

    pub fn exec_get(&self, id: &str) -> Result<Exec> {
        self.execs()
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {id}")))
    }

    /// The checks of a start, made before the client's connection is taken over:
    /// whether the exec will have a tty.
    pub fn exec_check_startable(&self, id: &str, tty: Option<bool>) -> Result<bool> {
        let exec = self.exec_get(id)?;
        if exec.started {
            return Err(EngineError::Conflict(format!(
                "Error: Exec command {id} has already run"
            )));
        }
        let c = self.get(&exec.container_id)?;
        if !c.state.running {
            return Err(self.not_running(&c.id));
        }
        Ok(tty.unwrap_or(exec.config.tty))
    }

    /// `POST /exec/{id}/start`: runs the process in the container's shim.
    pub fn exec_start(&self, id: &str, tty: Option<bool>) -> Result<ExecStream> {
        let tty = self.exec_check_startable(id, tty)?;
        let mut exec = self.exec_get(id)?;
        let c = self.get(&exec.container_id)?;
        let state_dir = self.config.state_dir(&c.id);
        let process = self.exec_process(&c, &exec.config, tty, &state_dir)?;
        let client = ShimClient::new(&c.id, &state_dir);
        exec.started = true;
        let (pid, stream) = match client.exec(id, &process, tty, exec.config.attach_stdin) {
            Ok(r) => {
                // The terminal's initial size, when the client sent one.
                if let (true, Some([h, w])) = (
                    tty,
                    exec.config
                        .console_size
                        .as_deref()
                        .and_then(|s| <[u16; 2]>::try_from(s).ok()),
                ) {
                    if h > 0 && w > 0 {
                        let _ = client.resize(h, w, Some(id));
                    }
                }
                r
            }
            Err(e) => {
                let text = e.to_string();
                exec.failed = Some(if text.contains("not found") { 127 } else { 126 });
                self.execs().insert(id.to_string(), exec);
                return Err(EngineError::Internal(format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: {text}"
                )));
            }
        };
        exec.pid = pid;
        self.execs().insert(id.to_string(), exec);
        Ok(ExecStream { stream, tty })
    }

    /// The exec's OCI process: the container's own (capabilities, rlimits,
    /// noNewPrivileges, environment) with the exec's command, user, env and cwd.
    fn exec_process(
        &self,
        c: &crate::container::Container,
        config: &ExecConfig,
        tty: bool,
        state_dir: &Path,
    ) -> Result<Value> {
        let spec = container_spec(state_dir)?;
        let mut process = spec.get("process").cloned().unwrap_or_else(|| json!({}));
        process["args"] = json!(config.cmd.clone().unwrap_or_default());
        process["terminal"] = json!(tty);
        let mut env: Vec<String> = process
            .get("env")
            .and_then(|e| serde_json::from_value(e.clone()).ok())
            .unwrap_or_default();
        for e in config.env.iter().flatten() {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        process["env"] = json!(env);
        if !config.working_dir.is_empty() {
            process["cwd"] = json!(config.working_dir);
        }
        if !config.user.is_empty() {
            let rootfs = spec
                .pointer("/root/path")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let resolved = user::resolve(Path::new(rootfs), &config.user, &c.host_config.group_add)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
            process["user"] = json!({
                "uid": resolved.uid,
                "gid": resolved.gid,
                "additionalGids": resolved.additional_gids,
            });
        }
        if config.privileged {
            let all = spec::capabilities(&crate::types::HostConfig {
                privileged: true,
                ..Default::default()
            })
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
            process["capabilities"] = json!({
                "bounding": all, "effective": all, "permitted": all,
            });
        }
        Ok(process)
    }

    /// `POST /exec/{id}/resize`.
    pub fn exec_resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        let exec = self.exec_get(id)?;
        let client = ShimClient::new(
            &exec.container_id,
            &self.config.state_dir(&exec.container_id),
        );
        client.resize(height, width, Some(id))?;
        Ok(())
    }

    /// `GET /exec/{id}/json`, in the Engine API's shape.
    pub fn exec_inspect(&self, id: &str) -> Result<Value> {
        let exec = self.exec_get(id)?;
        let (running, exit_code, pid) = if let Some(code) = exec.failed {
            (false, Some(code), 0)
        } else if exec.started {
            let client = ShimClient::new(
                &exec.container_id,
                &self.config.state_dir(&exec.container_id),
            );
            match client.exec_state(id) {
                Ok(s) => (s.running, s.exit_code, exec.pid),
                // The shim is gone with its container: the exec ended with it.
                Err(_) => (false, None, exec.pid),
            }
        } else {
            (false, None, 0)
        };
        let cmd = exec.config.cmd.clone().unwrap_or_default();
        Ok(json!({
            "ID": exec.id,
            "Running": running,
            "ExitCode": if exec.started && !running { json!(exit_code.unwrap_or(-1)) } else { json!(null) },
            "ProcessConfig": {
                "tty": exec.config.tty,
                "entrypoint": cmd.first().cloned().unwrap_or_default(),
                "arguments": cmd.iter().skip(1).collect::<Vec<_>>(),
                "privileged": exec.config.privileged,
                "user": exec.config.user,
            },
            "OpenStdin": exec.config.attach_stdin,
            "OpenStderr": exec.config.attach_stderr,
            "OpenStdout": exec.config.attach_stdout,
            "CanRemove": false,
            "ContainerID": exec.container_id,
            "DetachKeys": exec.config.detach_keys,
            "Pid": pid,
        }))
    }
}
