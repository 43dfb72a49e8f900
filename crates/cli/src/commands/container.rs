//! Container commands other than run/create/start/exec/attach: ps, stop, restart,
//! kill, rm, logs, export, wait, rename, pause, unpause, top, stats, cp, diff,
//! commit, update, prune.

use std::io::{self, IsTerminal, Read, Write};

use serde_json::{json, Map, Value};

use super::{filters_json, for_each, int_field, print, render, str_field};
use crate::args::*;
use crate::client::{CliError, Client, Result};
use crate::format::{self, ellipsis, go_quote, human_size, short_id};
use crate::http::{encode_path as encode, query, Body};
use crate::stream;

const PS_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

fn ps_header() -> Value {
    json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
        "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
        "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
        "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
        "LocalVolumes": "LOCAL VOLUMES", "Platform": "PLATFORM"
    })
}

/// The fields `docker ps --format` knows, computed as Docker's ContainerContext does.
fn ps_row(c: &Value, trunc: bool) -> Value {
    let id = str_field(c, "Id");
    let image = str_field(c, "Image");
    let image_id = str_field(c, "ImageID");
    let image_shown = if image.is_empty() {
        "<no image>".to_string()
    } else if trunc && short_id(image_id) == short_id(image) && image.starts_with("sha256:") {
        short_id(image)
    } else if trunc {
        image.split('@').next().unwrap_or(image).to_string()
    } else {
        image.to_string()
    };
    let command = str_field(c, "Command");
    let command = if trunc {
        ellipsis(command, 20)
    } else {
        command.to_string()
    };
    let names: Vec<String> = c
        .get("Names")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|n| n.strip_prefix('/').unwrap_or(n).to_string())
                .collect()
        })
        .unwrap_or_default();
    let names_shown = if trunc {
        names
            .iter()
            .find(|n| !n.contains('/'))
            .cloned()
            .unwrap_or_else(|| names.join(","))
    } else {
        names.join(",")
    };
    let created = int_field(c, "Created");
    let size_rw = int_field(c, "SizeRw");
    let size_root = int_field(c, "SizeRootFs");
    let size = if size_root > 0 {
        format!(
            "{} (virtual {})",
            human_size(size_rw as f64),
            human_size(size_root as f64)
        )
    } else {
        human_size(size_rw as f64)
    };
    let mut labels: Vec<String> = c
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let mounts = c.get("Mounts").and_then(Value::as_array);
    let mount_names: Vec<String> = mounts
        .map(|a| {
            a.iter()
                .map(|m| {
                    let name = str_field(m, "Name");
                    if name.is_empty() {
                        str_field(m, "Source").to_string()
                    } else if trunc {
                        ellipsis(name, 15)
                    } else {
                        name.to_string()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let local_volumes = mounts
        .map(|a| {
            a.iter()
                .filter(|m| str_field(m, "Driver") == "local")
                .count()
        })
        .unwrap_or(0);
    let mut networks: Vec<String> = c
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    json!({
        "Command": go_quote(&command),
        "CreatedAt": format::go_time_string(created),
        "ID": if trunc { short_id(id) } else { id.to_string() },
        "Image": image_shown,
        "Labels": labels.join(","),
        "LocalVolumes": local_volumes.to_string(),
        "Mounts": mount_names.join(","),
        "Names": names_shown,
        "Networks": networks.join(","),
        "Platform": Value::Null,
        "Ports": format_ports(c.get("Ports")),
        "RunningFor": format::ago(created),
        "Size": size,
        "State": str_field(c, "State"),
        "Status": str_field(c, "Status"),
    })
}

/// Docker's `DisplayablePorts`: "0.0.0.0:8080->80/tcp, 443/tcp".
fn format_ports(ports: Option<&Value>) -> String {
    let Some(ports) = ports.and_then(Value::as_array) else {
        return String::new();
    };
    let mut out: Vec<String> = Vec::new();
    for p in ports {
        let private = int_field(p, "PrivatePort");
        let kind = p.get("Type").and_then(Value::as_str).unwrap_or("tcp");
        let public = int_field(p, "PublicPort");
        let ip = str_field(p, "IP");
        let s = if public > 0 {
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            format!("{host}:{public}->{private}/{kind}")
        } else {
            format!("{private}/{kind}")
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(", ")
}

pub fn ps(c: &mut Client, a: PsArgs) -> Result<()> {
    let mut format = a.format.clone().unwrap_or_else(|| PS_TABLE.to_string());
    if a.quiet {
        format = "{{.ID}}".into();
    } else if a.size && a.format.is_none() {
        format.push_str("\t{{.Size}}");
    }
    // As docker: sizes are asked for when the template reads them, and `{{json .}}`
    // reads every field.
    let whole_row = format.replace(' ', "").contains("{{json.}}");
    let want_size = a.size || format.contains(".Size") || whole_row;
    let mut q: Vec<(&str, String)> = Vec::new();
    if a.all {
        q.push(("all", "1".into()));
    }
    let limit = if a.latest { 1 } else { a.last };
    if limit > 0 {
        q.push(("limit", limit.to_string()));
    }
    if want_size {
        q.push(("size", "1".into()));
    }
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let list = c.get_json(&format!("/containers/json{}", query(&q)))?;
    let rows: Vec<Value> = list
        .as_array()
        .map(|l| l.iter().map(|x| ps_row(x, !a.no_trunc)).collect())
        .unwrap_or_default();
    print(&super::render_rows(
        &format,
        &ps_header(),
        &rows,
        super::Rows::Containers,
    )?)
}

pub fn stop(c: &mut Client, a: StopArgs, restart: bool) -> Result<()> {
    let verb = if restart { "restart" } else { "stop" };
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(t) = a.timeout {
        q.push(("t", t.to_string()));
    }
    if let Some(s) = &a.signal {
        q.push(("signal", s.clone()));
    }
    let qs = query(&q);
    for_each(&a.containers, |n| {
        c.call("POST", &format!("/containers/{}/{verb}{qs}", encode(n)))
    })
}

pub fn kill(c: &mut Client, a: KillArgs) -> Result<()> {
    let q = match &a.signal {
        Some(s) => query(&[("signal", s.clone())]),
        None => String::new(),
    };
    for_each(&a.containers, |n| {
        c.call("POST", &format!("/containers/{}/kill{q}", encode(n)))
    })
}

pub fn rm(c: &mut Client, a: RmArgs) -> Result<()> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if a.force {
        q.push(("force", "1".into()));
    }
    if a.volumes {
        q.push(("v", "1".into()));
    }
    if a.link {
        q.push(("link", "1".into()));
    }
    let qs = query(&q);
    for_each(&a.containers, |n| {
        c.call("DELETE", &format!("/containers/{}{qs}", encode(n)))
    })
}

pub fn simple(c: &mut Client, a: NamesArgs, verb: &str) -> Result<()> {
    for_each(&a.containers, |n| {
        c.call("POST", &format!("/containers/{}/{verb}", encode(n)))
    })
}

pub fn logs(c: &mut Client, a: LogsArgs) -> Result<()> {
    let info = c.get_json(&format!("/containers/{}/json", encode(&a.container)))?;
    let tty = info
        .pointer("/Config/Tty")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut q: Vec<(&str, String)> = vec![("stdout", "1".into()), ("stderr", "1".into())];
    if a.follow {
        q.push(("follow", "1".into()));
    }
    if a.timestamps {
        q.push(("timestamps", "1".into()));
    }
    if a.details {
        q.push(("details", "1".into()));
    }
    q.push(("tail", a.tail.clone()));
    for (key, value) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = value {
            let t = format::parse_time_arg(v).ok_or_else(|| {
                CliError::other(format!("invalid value for \"{key}\": failed to parse value as time or duration: \"{v}\""))
            })?;
            q.push((key, t));
        }
    }
    let id = str_field(&info, "Id").to_string();
    let resp = c.send(
        "GET",
        &format!("/containers/{id}/logs{}", query(&q)),
        &[],
        Body::Empty,
    )?;
    let mut out = io::stdout();
    if tty {
        stream::copy_raw(resp, &mut out)?;
    } else {
        stream::demux(resp, &mut out, &mut io::stderr())?;
    }
    Ok(())
}

pub fn export(c: &mut Client, a: ExportArgs) -> Result<()> {
    let resp = c.send(
        "GET",
        &format!("/containers/{}/export", encode(&a.container)),
        &[],
        Body::Empty,
    )?;
    write_download(resp, a.output.as_deref())
}

/// Writes a downloaded archive to a file or to stdout (never to a terminal).
pub fn write_download(mut resp: impl Read, output: Option<&str>) -> Result<()> {
    match output {
        Some(path) if path != "-" => {
            let tmp = format!("{path}.berth-tmp");
            let mut f = std::fs::File::create(&tmp)
                .map_err(|e| CliError::other(format!("failed to export: {e}")))?;
            io::copy(&mut resp, &mut f)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
        }
        _ => {
            if io::stdout().is_terminal() {
                return Err(CliError::other(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                ));
            }
            io::copy(&mut resp, &mut io::stdout().lock())?;
        }
    }
    Ok(())
}

pub fn wait(c: &mut Client, a: NamesArgs) -> Result<()> {
    let mut failed = false;
    for n in &a.containers {
        match c.post_json(&format!("/containers/{}/wait", encode(n)), None) {
            Ok(v) => println!("{}", int_field(&v, "StatusCode")),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

pub fn rename(c: &mut Client, a: RenameArgs) -> Result<()> {
    if a.new_name.trim().is_empty() {
        return Err(CliError::other(
            "Error: neither old nor new names may be empty",
        ));
    }
    let r = c.call(
        "POST",
        &format!(
            "/containers/{}/rename{}",
            encode(&a.container),
            query(&[("name", a.new_name.clone())])
        ),
    );
    if let Err(e) = r {
        eprintln!("{e}");
        return Err(CliError::other(format!(
            "Error: failed to rename container named {}",
            a.container
        )));
    }
    Ok(())
}

pub fn top(c: &mut Client, a: TopArgs) -> Result<()> {
    let (container, ps_options) = match a.positional.split_first() {
        Some((c, rest)) => (c.clone(), rest.to_vec()),
        None => return Err(CliError::other("'top' requires a container")),
    };
    let q = if ps_options.is_empty() {
        String::new()
    } else {
        query(&[("ps_args", ps_options.join(" "))])
    };
    let v = c.get_json(&format!("/containers/{}/top{q}", encode(&container)))?;
    let mut text = String::new();
    let titles: Vec<&str> = v
        .get("Titles")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    text.push_str(&titles.join("\t"));
    text.push('\n');
    for p in v
        .get("Processes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cells: Vec<&str> = p
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    print(&format::tabwrite_min(&text, 20))
}

pub fn stats(c: &mut Client, a: StatsArgs) -> Result<()> {
    let names = if a.containers.is_empty() {
        let list = c.get_json(&format!(
            "/containers/json{}",
            if a.all { "?all=1" } else { "" }
        ))?;
        list.as_array()
            .map(|l| l.iter().map(|x| str_field(x, "Id").to_string()).collect())
            .unwrap_or_default()
    } else {
        a.containers.clone()
    };
    let header = json!({"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME",
        "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
        "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"});
    let format = a.format.clone().unwrap_or_else(|| {
        "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}".into()
    });
    loop {
        let mut rows = Vec::new();
        for n in &names {
            match c.get_json(&format!(
                "/containers/{}/stats?stream=0&one-shot=1",
                encode(n)
            )) {
                Ok(s) => rows.push(stats_row(&s, n, !a.no_trunc)),
                // docker shows a container whose stats it cannot read as dashes.
                Err(_) => rows.push(json!({"Container": n, "ID": "", "Name": "--",
                    "CPUPerc": "--", "MemUsage": "-- / --", "MemPerc": "--", "NetIO": "--",
                    "BlockIO": "--", "PIDs": "--"})),
            }
        }
        let table = render(&format, &header, &rows)?;
        if a.no_stream {
            return print(&table);
        }
        // Live: redraw in place, as docker does, until interrupted.
        print(&format!("\x1b[2J\x1b[H{table}"))?;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn stats_row(s: &Value, given: &str, trunc: bool) -> Value {
    let num = |p: &str| s.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let cpu_delta =
        num("/cpu_stats/cpu_usage/total_usage") - num("/precpu_stats/cpu_usage/total_usage");
    let sys_delta = num("/cpu_stats/system_cpu_usage") - num("/precpu_stats/system_cpu_usage");
    let online = s
        .pointer("/cpu_stats/online_cpus")
        .and_then(Value::as_f64)
        .unwrap_or(1.0);
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let cache = s
        .pointer("/memory_stats/stats/inactive_file")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let mem = (num("/memory_stats/usage") - cache).max(0.0);
    let limit = num("/memory_stats/limit");
    let mem_perc = if limit > 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(nets) = s.get("networks").and_then(Value::as_object) {
        for n in nets.values() {
            rx += n.get("rx_bytes").and_then(Value::as_f64).unwrap_or(0.0);
            tx += n.get("tx_bytes").and_then(Value::as_f64).unwrap_or(0.0);
        }
    }
    let (mut read, mut write) = (0.0, 0.0);
    for e in s
        .pointer("/blkio_stats/io_service_bytes_recursive")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let v = e.get("value").and_then(Value::as_f64).unwrap_or(0.0);
        match str_field(e, "op").to_ascii_lowercase().as_str() {
            "read" => read += v,
            "write" => write += v,
            _ => {}
        }
    }
    let id = str_field(s, "id");
    let name = str_field(s, "name").trim_start_matches('/');
    json!({
        "Container": given,
        "ID": if trunc { short_id(id) } else { id.to_string() },
        "Name": name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", format::bytes_size(mem), format::bytes_size(limit)),
        "MemPerc": format!("{mem_perc:.2}%"),
        "NetIO": format!("{} / {}", human_size(rx), human_size(tx)),
        "BlockIO": format!("{} / {}", human_size(read), human_size(write)),
        "PIDs": s.pointer("/pids_stats/current").and_then(Value::as_u64).unwrap_or(0).to_string(),
    })
}

pub fn diff(c: &mut Client, a: NameArg) -> Result<()> {
    let v = c.get_json(&format!("/containers/{}/changes", encode(&a.container)))?;
    let mut out = String::new();
    for ch in v.as_array().into_iter().flatten() {
        let kind = match int_field(ch, "Kind") {
            0 => "C",
            1 => "A",
            2 => "D",
            _ => "?",
        };
        out.push_str(&format!("{kind} {}\n", str_field(ch, "Path")));
    }
    print(&out)
}

pub fn commit(c: &mut Client, a: CommitArgs) -> Result<()> {
    let mut q: Vec<(&str, String)> = vec![("container", a.container.clone())];
    if let Some(r) = &a.reference {
        let (repo, tag) = super::image::normalized(r);
        q.push(("repo", repo));
        if let Some(t) = tag {
            q.push(("tag", t));
        }
    }
    if let Some(m) = &a.message {
        q.push(("comment", m.clone()));
    }
    if let Some(au) = &a.author {
        q.push(("author", au.clone()));
    }
    if !a.pause {
        q.push(("pause", "0".into()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    let v = c.post_json(&format!("/commit{}", query(&q)), None)?;
    println!("{}", str_field(&v, "Id"));
    Ok(())
}

/// "repo:tag" → (repo, Some(tag)); a ':' inside a registry host:port is not a tag.
pub fn split_reference(r: &str) -> (String, Option<String>) {
    let r = r.split('@').next().unwrap_or(r);
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => (r[..i].to_string(), Some(r[i + 1..].to_string())),
        _ => (r.to_string(), None),
    }
}

pub fn update(c: &mut Client, a: UpdateArgs) -> Result<()> {
    let mut body = Map::new();
    if let Some(m) = &a.memory {
        body.insert("Memory".into(), json!(parse_bytes(m)?));
    }
    if let Some(m) = &a.memory_swap {
        let v = if m == "-1" { -1 } else { parse_bytes(m)? };
        body.insert("MemorySwap".into(), json!(v));
    }
    if let Some(cpus) = a.cpus {
        body.insert("NanoCpus".into(), json!((cpus * 1e9) as i64));
    }
    if let Some(s) = a.cpu_shares {
        body.insert("CpuShares".into(), json!(s));
    }
    if let Some(s) = &a.cpuset_cpus {
        body.insert("CpusetCpus".into(), json!(s));
    }
    if let Some(w) = a.blkio_weight {
        body.insert("BlkioWeight".into(), json!(w));
    }
    if let Some(p) = a.pids_limit {
        body.insert("PidsLimit".into(), json!(p));
    }
    if let Some(r) = &a.restart {
        body.insert("RestartPolicy".into(), super::run::restart_policy(r)?);
    }
    let body = Value::Object(body);
    for_each(&a.containers, |n| {
        c.post_json(&format!("/containers/{}/update", encode(n)), Some(&body))
            .map(|_| ())
    })
}

pub fn parse_bytes(s: &str) -> Result<i64> {
    format::ram_in_bytes(s).ok_or_else(|| CliError::other(format!("invalid size: '{s}'")))
}

/// Asks Docker's prune question unless --force; false if the user declines.
pub fn confirm(warning: &str) -> Result<bool> {
    print(&format!(
        "{warning}\nAre you sure you want to continue? [y/N] "
    ))?;
    let mut line = String::new();
    io::stdin().read_line(&mut line)?;
    let answer = line.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

pub fn prune(c: &mut Client, a: PruneArgs) -> Result<()> {
    if !a.force && !confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(());
    }
    let q = match filters_json(&a.filter)? {
        Some(f) => query(&[("filters", f)]),
        None => String::new(),
    };
    let v = c.post_json(&format!("/containers/prune{q}"), None)?;
    let mut out = String::new();
    let deleted: Vec<&str> = v
        .get("ContainersDeleted")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str("Deleted Containers:\n");
        for d in deleted {
            out.push_str(d);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(
            v.get("SpaceReclaimed")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        )
    ));
    print(&out)
}

/// `docker cp`: `CONTAINER:PATH` on one side, a local path (or `-` for a tar stream)
/// on the other.
pub fn cp(c: &mut Client, a: CpArgs) -> Result<()> {
    let split = |s: &str| -> Option<(String, String)> {
        if s.starts_with('/') || s.starts_with('.') {
            return None;
        }
        s.split_once(':')
            .map(|(c, p)| (c.to_string(), p.to_string()))
    };
    match (split(&a.source), split(&a.destination)) {
        (Some((ctr, path)), None) => copy_from(c, &ctr, &path, &a.destination),
        (None, Some((ctr, path))) => copy_to(c, &a.source, &ctr, &path),
        (Some(_), Some(_)) => Err(CliError::other(
            "copying between containers is not supported",
        )),
        (None, None) => Err(CliError::other(
            "must specify at least one container source",
        )),
    }
}

fn copy_from(c: &mut Client, ctr: &str, path: &str, dest: &str) -> Result<()> {
    let resp = c.send(
        "GET",
        &format!(
            "/containers/{}/archive{}",
            encode(ctr),
            query(&[("path", path.to_string())])
        ),
        &[],
        Body::Empty,
    )?;
    if dest == "-" {
        io::copy(&mut { resp }, &mut io::stdout().lock())?;
        return Ok(());
    }
    // Extract with the system tar: it knows every header form, and runs as the user.
    let dest_path = std::path::Path::new(dest);
    let (dir, rename) = if dest_path.is_dir() {
        (dest_path.to_path_buf(), None)
    } else {
        let parent = dest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let base = std::path::Path::new(path.trim_end_matches('/'))
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let new = dest_path
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        (parent.to_path_buf(), Some((base, new)))
    };
    let mut cmd = std::process::Command::new("tar");
    cmd.arg("-x").arg("-C").arg(&dir).arg("-f").arg("-");
    if let Some((base, new)) = rename {
        if base != new && !base.is_empty() {
            cmd.arg(format!("--transform=s|^{base}|{new}|"));
        }
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| CliError::other(format!("cannot run tar: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        io::copy(&mut { resp }, &mut stdin)?;
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(CliError::other("extracting the archive failed"));
    }
    Ok(())
}

fn copy_to(c: &mut Client, src: &str, ctr: &str, path: &str) -> Result<()> {
    let (dir, mut tar): (String, Box<dyn Read>) = if src == "-" {
        (path.to_string(), Box::new(io::stdin()))
    } else {
        let src_path = std::path::Path::new(src);
        if !src_path.exists() {
            return Err(CliError::other(format!(
                "lstat {src}: no such file or directory"
            )));
        }
        let parent = src_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let base = src_path
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| ".".into());
        // If PATH names a directory in the container, copy into it; else copy to
        // PATH's parent under PATH's name.
        let exists = c
            .send(
                "HEAD",
                &format!(
                    "/containers/{}/archive{}",
                    encode(ctr),
                    query(&[("path", path.to_string())])
                ),
                &[],
                Body::Empty,
            )
            .ok()
            .and_then(|r| r.header("X-Docker-Container-Path-Stat").map(String::from))
            .is_some();
        let (dir, target_name) = if exists || path.ends_with('/') {
            (path.to_string(), base.clone())
        } else {
            let p = std::path::Path::new(path);
            let parent = p
                .parent()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "/".into());
            let name = p
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| base.clone());
            (parent, name)
        };
        let mut cmd = std::process::Command::new("tar");
        cmd.arg("-c").arg("-C").arg(parent).arg("-f").arg("-");
        if target_name != base {
            cmd.arg(format!("--transform=s|^{base}|{target_name}|"));
        }
        cmd.arg(&base);
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| CliError::other(format!("cannot run tar: {e}")))?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| CliError::other("tar has no output"))?;
        (dir, Box::new(out))
    };
    let mut resp = c.send(
        "PUT",
        &format!(
            "/containers/{}/archive{}",
            encode(ctr),
            query(&[("path", dir)])
        ),
        &[],
        Body::Stream(&mut tar, "application/x-tar"),
    )?;
    io::copy(&mut resp, &mut io::sink())?;
    let _ = io::stdout().flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_row_as_docker() {
        let c = json!({"Id": "0123456789abcdef0123", "Names": ["/web"], "Image": "busybox",
            "ImageID": "sha256:aaaa", "Command": "sh -c 'sleep 1000; echo done'",
            "Created": 0, "State": "running", "Status": "Up 5 seconds",
            "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                      {"PrivatePort": 443, "Type": "tcp"}]});
        let r = ps_row(&c, true);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Command"], "\"sh -c 'sleep 1000; …\"");
        assert_eq!(r["Names"], "web");
        assert_eq!(r["Ports"], "0.0.0.0:8080->80/tcp, 443/tcp");
        assert_eq!(r["Size"], "0B");
    }

    #[test]
    fn references() {
        assert_eq!(split_reference("a/b:1"), ("a/b".into(), Some("1".into())));
        assert_eq!(split_reference("host:5000/b"), ("host:5000/b".into(), None));
    }
}
