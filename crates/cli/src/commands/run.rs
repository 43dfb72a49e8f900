//! run, create, start, exec, attach: the commands that make containers and wire
//! the terminal to them.

use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::container::parse_bytes;
use super::image::pull_image;
use super::{expand_env, read_env_file, str_field};
use crate::args::*;
use crate::client::{CliError, Client, Result};
use crate::http::{encode_path as encode, query, Body, Upgraded};
use crate::stream;
use crate::term;

pub fn restart_policy(s: &str) -> Result<Value> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (
            n,
            c.parse::<i64>().map_err(|_| {
                CliError::other(
                    "invalid restart policy format: maximum retry count must be an integer",
                )
            })?,
        ),
        None => (s, 0),
    };
    let name = match name {
        "no" | "" => "no",
        "always" | "unless-stopped" | "on-failure" => name,
        other => return Err(CliError::other(format!("invalid restart policy '{other}'"))),
    };
    Ok(json!({"Name": name, "MaximumRetryCount": count}))
}

/// `--health-*` flags as Config.Healthcheck (durations in nanoseconds).
fn health_config(a: &RunArgs) -> Result<Option<Value>> {
    if a.no_healthcheck {
        return Ok(Some(json!({"Test": ["NONE"]})));
    }
    let nanos = |v: &Option<String>, flag: &str| -> Result<i64> {
        match v {
            None => Ok(0),
            Some(s) => crate::format::parse_go_duration(s)
                .map(|secs| secs * 1_000_000_000)
                .ok_or_else(|| CliError::other(format!("invalid argument \"{s}\" for \"--{flag}\" flag: time: invalid duration \"{s}\""))),
        }
    };
    let interval = nanos(&a.health_interval, "health-interval")?;
    let timeout = nanos(&a.health_timeout, "health-timeout")?;
    let start = nanos(&a.health_start_period, "health-start-period")?;
    let retries = a.health_retries.unwrap_or(0);
    if a.health_cmd.is_none() && interval == 0 && timeout == 0 && start == 0 && retries == 0 {
        return Ok(None);
    }
    let test = match &a.health_cmd {
        Some(cmd) => json!(["CMD-SHELL", cmd]),
        None => json!([]),
    };
    // Zero durations are left out, as Go's omitempty leaves them.
    let mut h = Map::new();
    h.insert("Test".into(), test);
    for (k, v) in [
        ("Interval", interval),
        ("Timeout", timeout),
        ("StartPeriod", start),
        ("Retries", retries),
    ] {
        if v != 0 {
            h.insert(k.into(), json!(v));
        }
    }
    Ok(Some(Value::Object(h)))
}

/// Docker's NormalizeCapability: upper case, `CAP_` prefixed, `ALL` kept.
fn normalize_caps(caps: &[String]) -> Vec<String> {
    caps.iter()
        .map(|c| {
            let c = c.trim().to_uppercase();
            if c == "ALL" || c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        })
        .collect()
}

fn split_kv(items: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    for l in items {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        m.insert(k.to_string(), json!(v));
    }
    m
}

fn parse_ulimit(s: &str) -> Result<Value> {
    let bad = || {
        CliError::other(format!(
            "invalid argument \"{s}\" for \"--ulimit\" flag: invalid ulimit argument: {s}"
        ))
    };
    let (name, vals) = s.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (a, b),
        None => (vals, vals),
    };
    let soft: i64 = soft.parse().map_err(|_| bad())?;
    let hard: i64 = hard.parse().map_err(|_| bad())?;
    Ok(json!({"Name": name, "Soft": soft, "Hard": hard}))
}

/// `--mount type=bind,source=/a,target=/b,readonly` into a HostConfig.Mounts entry.
fn parse_mount(spec: &str) -> Result<Value> {
    let mut m = Map::new();
    m.insert("Type".into(), json!("volume"));
    let mut bind = Map::new();
    let mut volume = Map::new();
    let mut tmpfs = Map::new();
    let mut driver = Map::new();
    let mut driver_opts = Map::new();
    let mut volume_labels = Map::new();
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "type" => {
                m.insert("Type".into(), json!(v));
            }
            "source" | "src" => {
                m.insert("Source".into(), json!(v));
            }
            "target" | "destination" | "dst" => {
                m.insert("Target".into(), json!(v));
            }
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), json!(v.is_empty() || v == "true" || v == "1"));
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(v));
            }
            "bind-nonrecursive" => {
                bind.insert(
                    "NonRecursive".into(),
                    json!(v.is_empty() || v == "true" || v == "1"),
                );
            }
            "volume-nocopy" => {
                volume.insert("NoCopy".into(), json!(v.is_empty() || v == "true"));
            }
            "volume-driver" => {
                driver.insert("Name".into(), json!(v));
            }
            "volume-opt" | "volume-label" => {
                let (key, value) = v.split_once('=').unwrap_or((v, ""));
                let map = if k.trim() == "volume-opt" {
                    &mut driver_opts
                } else {
                    &mut volume_labels
                };
                map.insert(key.to_string(), json!(value));
            }
            "tmpfs-size" => {
                let bytes = crate::format::ram_in_bytes(v)
                    .ok_or_else(|| CliError::other(format!("invalid tmpfs-size: {v}")))?;
                tmpfs.insert("SizeBytes".into(), json!(bytes));
            }
            "tmpfs-mode" => {
                let mode = u32::from_str_radix(v, 8)
                    .map_err(|_| CliError::other(format!("invalid tmpfs-mode: {v}")))?;
                tmpfs.insert("Mode".into(), json!(mode));
            }
            other => {
                return Err(CliError::other(format!(
                    "invalid argument \"{spec}\" for \"--mount\" flag: unexpected key '{other}' in '{part}'"
                )))
            }
        }
    }
    if !m.contains_key("Target") {
        return Err(CliError::other(format!(
            "invalid argument \"{spec}\" for \"--mount\" flag: target is required"
        )));
    }
    if !bind.is_empty() {
        m.insert("BindOptions".into(), Value::Object(bind));
    }
    if !driver_opts.is_empty() {
        driver.insert("Options".into(), Value::Object(driver_opts));
    }
    if !driver.is_empty() {
        volume.insert("DriverConfig".into(), Value::Object(driver));
    }
    if !volume_labels.is_empty() {
        volume.insert("Labels".into(), Value::Object(volume_labels));
    }
    if !volume.is_empty() {
        m.insert("VolumeOptions".into(), Value::Object(volume));
    }
    if !tmpfs.is_empty() {
        m.insert("TmpfsOptions".into(), Value::Object(tmpfs));
    }
    Ok(Value::Object(m))
}

/// `-p [ip:][hostPort:]containerPort[/proto]` into (ExposedPorts key, PortBinding).
fn parse_publish(s: &str) -> Result<(String, Value)> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (ctr, host_port, host_ip) = match parts.as_slice() {
        [c] => (*c, "", ""),
        [c, h] => (*c, *h, ""),
        [c, h, ip] => (*c, *h, ip.trim_start_matches('[').trim_end_matches(']')),
        _ => return Err(CliError::other(format!("invalid port format: {s}"))),
    };
    if ctr.is_empty() || !ctr.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return Err(CliError::other(format!("invalid containerPort: {ctr}")));
    }
    Ok((
        format!("{ctr}/{proto}"),
        json!({"HostIp": host_ip, "HostPort": host_port}),
    ))
}

/// A list flag as the docker CLI sends it: `null` when not given (its `ListOpts`
/// start as nil slices), so a daemon that stores the body as is (dockerd) shows the
/// same `inspect` as for docker's own create.
fn list_or_null<S: serde::Serialize>(values: &[S]) -> Value {
    if values.is_empty() {
        Value::Null
    } else {
        json!(values)
    }
}

/// The body of POST /containers/create, from `run`/`create` flags.
pub fn create_body(a: &RunArgs) -> Result<Value> {
    let attach_all = a.attach.is_empty();
    let attach =
        |s: &str| !a.detach && (attach_all || a.attach.iter().any(|x| x.eq_ignore_ascii_case(s)));
    let stdin =
        a.interactive && (attach_all || a.attach.iter().any(|x| x.eq_ignore_ascii_case("stdin")));
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(expand_env(&a.env));
    let mut config = Map::new();
    config.insert(
        "Hostname".into(),
        json!(a.hostname.clone().unwrap_or_default()),
    );
    config.insert("User".into(), json!(a.user.clone().unwrap_or_default()));
    config.insert("AttachStdin".into(), json!(!a.detach && stdin));
    config.insert("AttachStdout".into(), json!(attach("stdout")));
    config.insert("AttachStderr".into(), json!(attach("stderr")));
    config.insert("Tty".into(), json!(a.tty));
    config.insert("OpenStdin".into(), json!(a.interactive));
    config.insert("StdinOnce".into(), json!(a.interactive && !a.detach));
    config.insert("Env".into(), json!(env));
    config.insert(
        "Cmd".into(),
        if a.command.is_empty() {
            Value::Null
        } else {
            json!(a.command)
        },
    );
    config.insert("Image".into(), json!(a.image));
    config.insert(
        "WorkingDir".into(),
        json!(a.workdir.clone().unwrap_or_default()),
    );
    config.insert(
        "Entrypoint".into(),
        match &a.entrypoint {
            Some(e) => json!([e]),
            None => Value::Null,
        },
    );
    let mut label_lines = Vec::new();
    for f in &a.label_file {
        label_lines.extend(read_env_file(f)?);
    }
    label_lines.extend(a.label.iter().cloned());
    let labels = split_kv(&label_lines);
    if let Some(d) = &a.domainname {
        config.insert("Domainname".into(), json!(d));
    }
    if let Some(h) = health_config(a)? {
        config.insert("Healthcheck".into(), h);
    }
    config.insert("Labels".into(), Value::Object(labels));
    if let Some(s) = &a.stop_signal {
        config.insert("StopSignal".into(), json!(s));
    }
    if let Some(t) = a.stop_timeout {
        config.insert("StopTimeout".into(), json!(t));
    }
    let mut exposed = Map::new();
    let mut bindings = Map::new();
    for p in &a.expose {
        let key = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        exposed.insert(key, json!({}));
    }
    for p in &a.publish {
        let (key, binding) = parse_publish(p)?;
        exposed.insert(key.clone(), json!({}));
        if let Value::Array(list) = bindings.entry(key).or_insert_with(|| json!([])) {
            list.push(binding);
        }
    }
    if !exposed.is_empty() {
        config.insert("ExposedPorts".into(), Value::Object(exposed));
    }

    let mut host = Map::new();
    // `-v /data` is an anonymous volume (Config.Volumes); `-v src:dst[:opts]` a bind
    // or named volume (HostConfig.Binds).
    let (anonymous, binds): (Vec<&String>, Vec<&String>) =
        a.volume.iter().partition(|v| !v.contains(':'));
    let mut volumes = Map::new();
    for v in anonymous {
        volumes.insert(v.clone(), json!({}));
    }
    config.insert("Volumes".into(), Value::Object(volumes));
    host.insert("Binds".into(), list_or_null(&binds));
    let mut mounts = Vec::new();
    for m in &a.mount {
        mounts.push(parse_mount(m)?);
    }
    if !mounts.is_empty() {
        host.insert("Mounts".into(), Value::Array(mounts));
    }
    host.insert(
        "NetworkMode".into(),
        json!(a.network.clone().unwrap_or_else(|| "default".into())),
    );
    host.insert("PortBindings".into(), Value::Object(bindings));
    host.insert("PublishAllPorts".into(), json!(a.publish_all));
    host.insert("RestartPolicy".into(), restart_policy(&a.restart)?);
    host.insert("AutoRemove".into(), json!(a.rm));
    host.insert("Privileged".into(), json!(a.privileged));
    host.insert("ReadonlyRootfs".into(), json!(a.read_only));
    host.insert("CapAdd".into(), list_or_null(&normalize_caps(&a.cap_add)));
    host.insert("CapDrop".into(), list_or_null(&normalize_caps(&a.cap_drop)));
    // Docker's CLI defaults, sent as it sends them.
    host.insert("MemorySwappiness".into(), json!(-1));
    host.insert("OomKillDisable".into(), json!(a.oom_kill_disable));
    host.insert("SecurityOpt".into(), list_or_null(&a.security_opt));
    host.insert("Dns".into(), json!(a.dns));
    host.insert("DnsSearch".into(), json!(a.dns_search));
    host.insert("DnsOptions".into(), json!(a.dns_option));
    host.insert("VolumesFrom".into(), list_or_null(&a.volumes_from));
    host.insert("Links".into(), list_or_null(&a.link));
    host.insert("GroupAdd".into(), list_or_null(&a.group_add));
    for (key, value) in [
        ("PidMode", &a.pid),
        ("IpcMode", &a.ipc),
        ("UTSMode", &a.uts),
        ("UsernsMode", &a.userns),
        ("CgroupnsMode", &a.cgroupns),
        ("CgroupParent", &a.cgroup_parent),
        ("Runtime", &a.runtime),
        ("CpusetMems", &a.cpuset_mems),
    ] {
        if let Some(v) = value {
            host.insert(key.into(), json!(v));
        }
    }
    if let Some(s) = &a.shm_size {
        host.insert("ShmSize".into(), json!(parse_bytes(s)?));
    }
    if let Some(m) = &a.memory_reservation {
        host.insert("MemoryReservation".into(), json!(parse_bytes(m)?));
    }
    if let Some(p) = a.cpu_period {
        host.insert("CpuPeriod".into(), json!(p));
    }
    if let Some(q) = a.cpu_quota {
        host.insert("CpuQuota".into(), json!(q));
    }
    if let Some(o) = a.oom_score_adj {
        host.insert("OomScoreAdj".into(), json!(o));
    }
    let mut devices = Vec::new();
    for d in &a.device {
        let parts: Vec<&str> = d.split(':').collect();
        let (host_path, ctr_path, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, c] if c.chars().all(|x| "rwm".contains(x)) => (*h, *h, *c),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => {
                return Err(CliError::other(format!(
                    "invalid device specification: {d}"
                )))
            }
        };
        devices.push(json!({"PathOnHost": host_path, "PathInContainer": ctr_path,
            "CgroupPermissions": perms}));
    }
    host.insert("Devices".into(), Value::Array(devices));
    if !a.sysctl.is_empty() {
        host.insert("Sysctls".into(), Value::Object(split_kv(&a.sysctl)));
    }
    if a.log_driver.is_some() || !a.log_opt.is_empty() {
        host.insert(
            "LogConfig".into(),
            json!({"Type": a.log_driver.clone().unwrap_or_default(),
                "Config": Value::Object(split_kv(&a.log_opt))}),
        );
    }
    host.insert("ExtraHosts".into(), list_or_null(&a.add_host));
    // No flags for these yet; the docker CLI always sends them as empty lists.
    for key in [
        "BlkioWeightDevice",
        "BlkioDeviceReadBps",
        "BlkioDeviceWriteBps",
        "BlkioDeviceReadIOps",
        "BlkioDeviceWriteIOps",
    ] {
        host.insert(key.into(), json!([]));
    }
    if !a.tmpfs.is_empty() {
        let mut t = Map::new();
        for x in &a.tmpfs {
            let (path, opts) = x.split_once(':').unwrap_or((x, ""));
            t.insert(path.to_string(), json!(opts));
        }
        host.insert("Tmpfs".into(), Value::Object(t));
    }
    if a.init {
        host.insert("Init".into(), json!(true));
    }
    if let Some(m) = &a.memory {
        host.insert("Memory".into(), json!(parse_bytes(m)?));
    }
    if let Some(m) = &a.memory_swap {
        let v = if m == "-1" { -1 } else { parse_bytes(m)? };
        host.insert("MemorySwap".into(), json!(v));
    }
    if let Some(c) = a.cpus {
        host.insert("NanoCpus".into(), json!((c * 1e9) as i64));
    }
    if let Some(s) = a.cpu_shares {
        host.insert("CpuShares".into(), json!(s));
    }
    if let Some(s) = &a.cpuset_cpus {
        host.insert("CpusetCpus".into(), json!(s));
    }
    if let Some(w) = a.blkio_weight {
        host.insert("BlkioWeight".into(), json!(w));
    }
    host.insert("PidsLimit".into(), json!(a.pids_limit.unwrap_or(0)));
    // The size at creation, so a program that asks at once sees it (API ≥ 1.42).
    let size = if a.tty {
        term::size(1).or_else(|| term::size(0)).unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    host.insert("ConsoleSize".into(), json!([size.0, size.1]));
    let mut ulimits = Vec::new();
    for u in &a.ulimit {
        ulimits.push(parse_ulimit(u)?);
    }
    host.insert("Ulimits".into(), json!(ulimits));
    config.insert("HostConfig".into(), Value::Object(host));
    // The primary network's endpoint settings, as the docker CLI sends them.
    let mut endpoint = serde_json::Map::new();
    if a.ip.is_some() || a.ip6.is_some() {
        endpoint.insert(
            "IPAMConfig".into(),
            json!({"IPv4Address": a.ip.clone().unwrap_or_default(),
                   "IPv6Address": a.ip6.clone().unwrap_or_default()}),
        );
    }
    if !a.network_alias.is_empty() {
        endpoint.insert("Aliases".into(), json!(a.network_alias));
    }
    let net = a.network.clone().unwrap_or_else(|| "default".into());
    config.insert(
        "NetworkingConfig".into(),
        json!({"EndpointsConfig": {net: Value::Object(endpoint)}}),
    );
    Ok(Value::Object(config))
}

/// The image reference as Docker's messages show it (`busybox:latest`).
fn tagged(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Creates the container, pulling its image once if the daemon does not have it.
fn create(c: &mut Client, a: &RunArgs) -> Result<String> {
    let body = create_body(a)?;
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(n) = &a.name {
        q.push(("name", n.clone()));
    }
    if let Some(p) = &a.platform {
        q.push(("platform", p.clone()));
    }
    let path = format!("/containers/create{}", query(&q));
    if a.pull == "always" {
        pull_image(c, &a.image, true, a.quiet)?;
    }
    let created = match c.post_json(&path, Some(&body)) {
        Err(CliError::Daemon {
            status: 404,
            message,
        }) if message.contains("No such image") && a.pull != "never" => {
            eprintln!("Unable to find image '{}' locally", tagged(&a.image));
            pull_image(c, &a.image, true, a.quiet)?;
            c.post_json(&path, Some(&body))?
        }
        other => other?,
    };
    for w in created
        .get("Warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(w) = w.as_str() {
            eprintln!("WARNING: {w}");
        }
    }
    let id = str_field(&created, "Id").to_string();
    if let Some(path) = &a.cidfile {
        std::fs::write(path, &id).map_err(|e| {
            CliError::other(format!("failed to write the container ID to the file: {e}"))
        })?;
    }
    Ok(id)
}

pub fn create_cmd(c: &mut Client, a: RunArgs) -> Result<()> {
    let a = a.split();
    let id = create(c, &a)?;
    println!("{id}");
    Ok(())
}

/// Docker's exit code for a container that could not start.
fn start_error_code(message: &str) -> i32 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        127
    } else if message.contains("permission denied") || message.contains("is a directory") {
        126
    } else {
        125
    }
}

/// Docker refuses `-it` when our stdin is not a terminal.
fn check_tty(tty: bool, interactive: bool) -> Result<()> {
    if tty && interactive && !term::is_tty(0) {
        eprintln!("the input device is not a TTY");
        return Err(CliError::Exit(1));
    }
    Ok(())
}

pub fn run(c: &mut Client, a: RunArgs) -> Result<()> {
    let a = a.split();
    if !a.detach {
        check_tty(a.tty, a.interactive)?;
    }
    if a.detach && a.attach.iter().any(|_| true) {
        return Err(CliError::other("Conflicting options: -a and -d"));
    }
    let id = create(c, &a)?;
    if a.detach {
        c.call("POST", &format!("/containers/{id}/start"))?;
        println!("{id}");
        return Ok(());
    }
    let attach_all = a.attach.is_empty();
    let wants = |s: &str| attach_all || a.attach.iter().any(|x| x.eq_ignore_ascii_case(s));
    let stdin = a.interactive && wants("stdin");
    let mut q: Vec<(&str, String)> = vec![("stream", "1".into())];
    if stdin {
        q.push(("stdin", "1".into()));
    }
    if wants("stdout") {
        q.push(("stdout", "1".into()));
    }
    if wants("stderr") {
        q.push(("stderr", "1".into()));
    }
    if let Some(k) = &a.detach_keys {
        q.push(("detachKeys", k.clone()));
    }
    let upgraded = c.upgrade(&format!("/containers/{id}/attach{}", query(&q)), None)?;
    let condition = if a.rm { "removed" } else { "next-exit" };
    let wait = c.send(
        "POST",
        &format!("/containers/{id}/wait?condition={condition}"),
        &[],
        Body::Empty,
    )?;
    if let Err(e) = c.call("POST", &format!("/containers/{id}/start")) {
        let msg = e.to_string();
        eprintln!("berth: {msg}\n\nRun 'berth run --help' for more information");
        return Err(CliError::Exit(start_error_code(&msg)));
    }
    let resize = a.tty.then(|| format!("/containers/{id}/resize"));
    // On a tty the terminal sends signals as bytes; otherwise forward them.
    let proxy = (a.sig_proxy && !a.tty).then(|| id.clone());
    let detached = session_with_proxy(
        c,
        upgraded,
        stdin,
        a.tty,
        resize,
        a.detach_keys.as_deref(),
        proxy,
    )?;
    if detached {
        return Ok(());
    }
    exit_from_wait(wait)
}

fn exit_from_wait(wait: crate::http::Response) -> Result<()> {
    let v = crate::client::parse_json(wait)?;
    if let Some(m) = v.pointer("/Error/Message").and_then(Value::as_str) {
        if !m.is_empty() {
            eprintln!("berth: Error response from daemon: {m}");
            return Err(CliError::Exit(125));
        }
    }
    let code = v.get("StatusCode").and_then(Value::as_i64).unwrap_or(0);
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::Exit(code as i32))
    }
}

/// Parses `--detach-keys` ("ctrl-p,ctrl-q", "a,ctrl-@") into bytes.
fn detach_sequence(spec: Option<&str>) -> Vec<u8> {
    let spec = spec.unwrap_or("ctrl-p,ctrl-q");
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if let Some(k) = part.strip_prefix("ctrl-") {
            let b = match k.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => continue,
            };
            out.push(b);
        } else if part.len() == 1 {
            out.push(part.as_bytes()[0]);
        }
    }
    if out.is_empty() {
        vec![16, 17]
    } else {
        out
    }
}

/// Wires our stdio to a hijacked connection until the output ends (true if the
/// user detached with the detach keys).
fn session(
    c: &Client,
    upgraded: Upgraded,
    stdin: bool,
    tty: bool,
    resize_path: Option<String>,
    detach_keys: Option<&str>,
) -> Result<bool> {
    session_with_proxy(c, upgraded, stdin, tty, resize_path, detach_keys, None)
}

/// `session`, forwarding our signals to container `proxy_to` (`--sig-proxy`).
fn session_with_proxy(
    c: &Client,
    upgraded: Upgraded,
    stdin: bool,
    tty: bool,
    resize_path: Option<String>,
    detach_keys: Option<&str>,
    proxy_to: Option<String>,
) -> Result<bool> {
    let Upgraded { reader, writer } = upgraded;
    if let Some(id) = proxy_to {
        term::watch_signals();
        let mut pc = c.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
            for sig in term::take_signals() {
                let _ = pc.call("POST", &format!("/containers/{id}/kill?signal={sig}"));
            }
        });
    }
    let raw = if tty && stdin {
        term::RawMode::enter(0)
    } else {
        None
    };
    let detached = Arc::new(AtomicBool::new(false));
    if let Some(path) = resize_path {
        let mut rc = c.clone();
        let mut resize = move || -> bool {
            match term::size(1).or_else(|| term::size(0)) {
                Some((h, w)) => rc.call("POST", &format!("{path}?h={h}&w={w}")).is_ok(),
                None => true,
            }
        };
        term::watch_resize();
        std::thread::spawn(move || {
            // As docker does: the process may not be there yet when the stream
            // opens, so the first resize is retried with a growing pause.
            for attempt in 0..10u64 {
                if resize() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis((attempt + 1) * 10));
            }
            loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if term::resized() {
                    resize();
                }
            }
        });
    }
    if stdin {
        let mut w = writer.try_clone()?;
        let flag = detached.clone();
        let keys = if tty {
            detach_sequence(detach_keys)
        } else {
            Vec::new()
        };
        std::thread::spawn(move || {
            let _ = pump_stdin(&mut w, &keys, &flag);
        });
    } else {
        // Nothing to send: the daemon sees our end of input at once.
        let _ = writer.shutdown(Shutdown::Write);
    }
    let mut out = io::stdout();
    let result = if tty {
        stream::copy_raw(reader, &mut out)
    } else {
        stream::demux(reader, &mut out, &mut io::stderr())
    };
    drop(raw);
    let was_detached = detached.load(Ordering::SeqCst);
    match result {
        Err(e) if !was_detached => Err(e.into()),
        _ => Ok(was_detached),
    }
}

/// Copies stdin to the container; watches for the detach sequence on a tty.
fn pump_stdin(
    w: &mut std::os::unix::net::UnixStream,
    keys: &[u8],
    detached: &AtomicBool,
) -> io::Result<()> {
    let mut input = io::stdin().lock();
    let mut buf = [0u8; 8192];
    let mut matched = 0usize;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if keys.is_empty() {
            crate::http::send_all(w, &buf[..n])?;
            continue;
        }
        let mut out = Vec::with_capacity(n);
        for &b in &buf[..n] {
            if b == keys[matched] {
                matched += 1;
                if matched == keys.len() {
                    detached.store(true, Ordering::SeqCst);
                    let _ = w.shutdown(Shutdown::Both);
                    return Ok(());
                }
            } else {
                out.extend_from_slice(&keys[..matched]);
                matched = 0;
                if b == keys[0] {
                    matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        crate::http::send_all(w, &out)?;
    }
    w.shutdown(Shutdown::Write)
}

pub fn start(c: &mut Client, a: StartArgs) -> Result<()> {
    if !a.attach && !a.interactive {
        let mut failed = Vec::new();
        for n in &a.containers {
            match c.call("POST", &format!("/containers/{}/start", encode(n))) {
                Ok(()) => println!("{n}"),
                Err(e) => {
                    eprintln!("{e}");
                    failed.push(n.clone());
                }
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        return Err(CliError::other(format!(
            "Error: failed to start containers: {}",
            failed.join(", ")
        )));
    }
    if a.containers.len() > 1 {
        return Err(CliError::other(
            "you cannot start and attach multiple containers at once",
        ));
    }
    let name = &a.containers[0];
    let info = c.get_json(&format!("/containers/{}/json", encode(name)))?;
    let id = str_field(&info, "Id").to_string();
    let tty = info
        .pointer("/Config/Tty")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let open_stdin = info
        .pointer("/Config/OpenStdin")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let stdin = a.interactive && open_stdin;
    let q = format!(
        "?stream=1&stdout=1&stderr=1{}",
        if stdin { "&stdin=1" } else { "" }
    );
    let upgraded = c.upgrade(&format!("/containers/{id}/attach{q}"), None)?;
    let wait = c.send(
        "POST",
        &format!("/containers/{id}/wait?condition=next-exit"),
        &[],
        Body::Empty,
    )?;
    c.call("POST", &format!("/containers/{id}/start"))?;
    let resize = tty.then(|| format!("/containers/{id}/resize"));
    if session(c, upgraded, stdin, tty, resize, a.detach_keys.as_deref())? {
        return Ok(());
    }
    exit_from_wait(wait)
}

pub fn attach(c: &mut Client, a: AttachArgs) -> Result<()> {
    let info = c.get_json(&format!("/containers/{}/json", encode(&a.container)))?;
    let id = str_field(&info, "Id").to_string();
    if !info
        .pointer("/State/Running")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(CliError::other(
            "You cannot attach to a stopped container, start it first",
        ));
    }
    let tty = info
        .pointer("/Config/Tty")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let stdin = !a.no_stdin
        && info
            .pointer("/Config/OpenStdin")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let q = format!(
        "?stream=1&stdout=1&stderr=1{}",
        if stdin { "&stdin=1" } else { "" }
    );
    let upgraded = c.upgrade(&format!("/containers/{id}/attach{q}"), None)?;
    // As docker does: the exit status comes from a wait opened before the stream.
    let wait = c.send(
        "POST",
        &format!("/containers/{id}/wait?condition=not-running"),
        &[],
        Body::Empty,
    )?;
    let resize = tty.then(|| format!("/containers/{id}/resize"));
    let proxy = (a.sig_proxy && !tty).then(|| id.clone());
    if session_with_proxy(
        c,
        upgraded,
        stdin,
        tty,
        resize,
        a.detach_keys.as_deref(),
        proxy,
    )? {
        return Ok(());
    }
    exit_from_wait(wait)
}

pub fn exec(c: &mut Client, a: ExecArgs) -> Result<()> {
    let a = a.split();
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(expand_env(&a.env));
    let attach = !a.detach;
    let mut body = json!({
        "AttachStdin": attach && a.interactive,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "Tty": a.tty,
        "Env": env,
        "Cmd": a.command,
        "Privileged": a.privileged,
    });
    if let Some(u) = &a.user {
        body["User"] = json!(u);
    }
    if let Some(w) = &a.workdir {
        body["WorkingDir"] = json!(w);
    }
    if let Some(k) = &a.detach_keys {
        body["DetachKeys"] = json!(k);
    }
    if a.tty {
        if let Some((h, w)) = term::size(1) {
            body["ConsoleSize"] = json!([h, w]);
        }
    }
    let created = c.post_json(
        &format!("/containers/{}/exec", encode(&a.container)),
        Some(&body),
    )?;
    let exec_id = str_field(&created, "Id").to_string();
    if !a.detach {
        check_tty(a.tty, a.interactive)?;
    }
    let start = json!({"Detach": a.detach, "Tty": a.tty});
    if a.detach {
        c.post_json(&format!("/exec/{exec_id}/start"), Some(&start))?;
        return Ok(());
    }
    let upgraded = c.upgrade(&format!("/exec/{exec_id}/start"), Some(&start))?;
    let resize = a.tty.then(|| format!("/exec/{exec_id}/resize"));
    if session(
        c,
        upgraded,
        a.interactive,
        a.tty,
        resize,
        a.detach_keys.as_deref(),
    )? {
        return Ok(());
    }
    let info = c.get_json(&format!("/exec/{exec_id}/json"))?;
    let code = info.get("ExitCode").and_then(Value::as_i64).unwrap_or(0);
    if code != 0 {
        return Err(CliError::Exit(code as i32));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> RunArgs {
        let mut full = vec!["berth", "run"];
        full.extend_from_slice(args);
        match crate::args::Cli::try_parse_from(full) {
            Ok(crate::args::Cli {
                command: crate::args::Command::Run(a),
                ..
            }) => a.split(),
            other => panic!("parse: {other:?}"),
        }
    }

    #[test]
    fn create_body_from_flags() {
        let a = parse(&[
            "-d",
            "--name",
            "web",
            "-e",
            "A=1",
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "-p",
            "8080:80",
            "--restart",
            "on-failure:3",
            "--ulimit",
            "nofile=10:20",
            "-v",
            "/a:/b:ro",
            "--entrypoint",
            "",
            "busybox",
            "sh",
            "-c",
            "echo -n hi",
        ]);
        let b = create_body(&a).expect("body");
        assert_eq!(b["Image"], "busybox");
        assert_eq!(b["Cmd"], json!(["sh", "-c", "echo -n hi"]));
        assert_eq!(b["Entrypoint"], json!([""]));
        assert_eq!(b["AttachStdout"], false);
        assert_eq!(b["HostConfig"]["Memory"], 64 * 1024 * 1024);
        assert_eq!(b["HostConfig"]["NanoCpus"], 500_000_000);
        assert_eq!(
            b["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
            "8080"
        );
        assert_eq!(b["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
        assert_eq!(b["HostConfig"]["Ulimits"][0]["Hard"], 20);
        assert_eq!(b["HostConfig"]["Binds"], json!(["/a:/b:ro"]));
        let m = parse_mount("type=bind,src=/x,dst=/y,readonly").expect("mount");
        assert_eq!(
            m,
            json!({"Type": "bind", "Source": "/x", "Target": "/y", "ReadOnly": true})
        );
        assert!(parse_mount("type=bind,src=/x").is_err());
    }

    #[test]
    fn detach_keys() {
        assert_eq!(detach_sequence(None), vec![16, 17]);
        assert_eq!(detach_sequence(Some("ctrl-a,x")), vec![1, b'x']);
    }

    #[test]
    fn start_errors() {
        assert_eq!(
            start_error_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_error_code("permission denied"), 126);
        assert_eq!(start_error_code("boom"), 125);
    }
}
