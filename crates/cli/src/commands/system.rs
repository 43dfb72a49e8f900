//! inspect, version, info, events, system df.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{json, Value};

use super::{filters_json, int_field, parse_template, print, render, str_field};
use crate::args::*;
use crate::client::{CliError, Client, JsonStream, Result, CLIENT_API_VERSION};
use crate::format::{self, tabwrite_with};
use crate::http::{encode_path as encode, query};

/// JSON indented with tabs, as Docker writes config.json.
pub fn indent_json_tabs(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn inspect_one(
    c: &mut Client,
    name: &str,
    kind: Option<&str>,
    size: bool,
) -> Result<(Vec<u8>, Value)> {
    let n = encode(name);
    let container = |c: &mut Client| {
        let q = if size { "?size=1" } else { "" };
        c.get_raw(&format!("/containers/{n}/json{q}"))
    };
    let image = |c: &mut Client| c.get_raw(&format!("/images/{n}/json"));
    let not_found = |e: &CliError| matches!(e, CliError::Daemon { status: 404, .. });
    match kind {
        Some("container") => container(c),
        Some("image") => image(c),
        Some("network") => c.get_raw(&format!("/networks/{n}")),
        Some("volume") => c.get_raw(&format!("/volumes/{n}")),
        Some(other) => Err(CliError::other(format!(
            "\"{other}\" is not a valid value for --type"
        ))),
        None => {
            for attempt in 0..4 {
                let r = match attempt {
                    0 => container(c),
                    1 => image(c),
                    2 => c.get_raw(&format!("/volumes/{n}")),
                    _ => c.get_raw(&format!("/networks/{n}")),
                };
                match r {
                    Err(e) if not_found(&e) => continue,
                    other => return other,
                }
            }
            Err(CliError::other(format!("Error: No such object: {name}")))
        }
    }
}

pub fn inspect(c: &mut Client, a: InspectArgs, forced: Option<&str>) -> Result<()> {
    let kind = forced.or(a.kind.as_deref());
    let tmpl = match &a.format {
        Some(f) if f != "json" => match crate::template::Template::parse(f) {
            Ok(t) => Some(t),
            Err(e) => {
                // docker inspect exits 64 for a template it cannot parse.
                eprintln!("template parsing error: {e}");
                return Err(CliError::Exit(64));
            }
        },
        _ => None,
    };
    let mut out = String::new();
    let mut errors = Vec::new();
    let mut raw_docs = Vec::new();
    for name in &a.names {
        let (raw, v) = match inspect_one(c, name, kind, a.size) {
            Ok(found) => found,
            Err(e) => {
                // Docker prints all errors after the output.
                errors.push(e.to_string());
                continue;
            }
        };
        match &tmpl {
            Some(t) => {
                crate::template::set_missing(crate::template::Missing::MapError);
                let result = t.execute(&crate::typed::view(&v));
                crate::template::set_missing(crate::template::Missing::NoValue);
                match result {
                    Ok(text) => {
                        out.push_str(&text);
                        out.push('\n');
                    }
                    Err(e) => {
                        // docker has written the line's end before it fails.
                        print(&format!("{out}\n"))?;
                        return Err(CliError::other(format!("template parsing error: {e}")));
                    }
                }
            }
            None => raw_docs.push(raw),
        }
    }
    if tmpl.is_none() {
        out = format::indent_raw(&raw_docs);
        out.push('\n');
    }
    print(&out)?;
    for e in &errors {
        eprintln!("{e}");
    }
    if !errors.is_empty() {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn client_version(api: &str) -> Value {
    let default = format!("{}.{}", CLIENT_API_VERSION.0, CLIENT_API_VERSION.1);
    json!({
        "Platform": {"Name": "berth"},
        "Version": env!("CARGO_PKG_VERSION"),
        "APIVersion": api,
        "DefaultAPIVersion": default,
        "GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "Context": "default",
    })
}

fn version_text(client: &Value, server: Option<&Value>) -> String {
    let mut t = String::new();
    let s = |v: &Value, k: &str| str_field(v, k).to_string();
    t.push_str("Client: berth\n");
    t.push_str(&format!(" Version:\t{}\n", s(client, "Version")));
    let api = s(client, "APIVersion");
    let default = s(client, "DefaultAPIVersion");
    if api != default {
        t.push_str(&format!(
            " API version:\t{api} (downgraded from {default})\n"
        ));
    } else {
        t.push_str(&format!(" API version:\t{api}\n"));
    }
    t.push_str(&format!(" Git commit:\t{}\n", s(client, "GitCommit")));
    t.push_str(&format!(
        " OS/Arch:\t{}/{}\n",
        s(client, "Os"),
        s(client, "Arch")
    ));
    t.push_str(&format!(" Context:\t{}\n", s(client, "Context")));
    if let Some(sv) = server {
        t.push_str(&server_version_text(sv));
    }
    tabwrite_with(&t, 20, 1)
}

/// The Server part of `docker version`, from the daemon's /version, as Docker's
/// template renders it (before its tabwriter).
pub fn server_version_text(sv: &Value) -> String {
    let mut t = String::new();
    let platform = sv
        .pointer("/Platform/Name")
        .and_then(Value::as_str)
        .unwrap_or("");
    t.push_str("\nServer:");
    if !platform.is_empty() {
        t.push(' ');
        t.push_str(platform);
    }
    t.push('\n');
    let detail = |c: &Value, k: &str| -> String {
        match c.pointer(&format!("/Details/{k}")) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        }
    };
    let fallback;
    let components: Vec<Value> = match sv.get("Components").and_then(Value::as_array) {
        Some(c) if !c.is_empty() => c.clone(),
        _ => {
            fallback = vec![
                json!({"Name": "Engine", "Version": sv.get("Version"), "Details": {
                    "ApiVersion": sv.get("ApiVersion"), "MinAPIVersion": sv.get("MinAPIVersion"),
                    "GoVersion": sv.get("GoVersion"), "GitCommit": sv.get("GitCommit"),
                    "BuildTime": sv.get("BuildTime").map(reformat_date), "Os": sv.get("Os"), "Arch": sv.get("Arch"),
                    "Experimental": sv.get("Experimental").cloned().unwrap_or(json!(false)).to_string(),
                }}),
            ];
            fallback.clone()
        }
    };
    for comp in &components {
        let name = str_field(comp, "Name");
        t.push_str(&format!(" {name}:\n"));
        t.push_str(&format!("  Version:\t{}\n", str_field(comp, "Version")));
        if name == "Engine" {
            t.push_str(&format!(
                "  API version:\t{} (minimum version {})\n",
                detail(comp, "ApiVersion"),
                detail(comp, "MinAPIVersion")
            ));
            t.push_str(&format!("  Go version:\t{}\n", detail(comp, "GoVersion")));
            t.push_str(&format!("  Git commit:\t{}\n", detail(comp, "GitCommit")));
            t.push_str(&format!("  Built:\t{}\n", detail(comp, "BuildTime")));
            t.push_str(&format!(
                "  OS/Arch:\t{}/{}\n",
                detail(comp, "Os"),
                detail(comp, "Arch")
            ));
            t.push_str(&format!(
                "  Experimental:\t{}\n",
                detail(comp, "Experimental")
            ));
        } else if let Some(d) = comp.get("Details").and_then(Value::as_object) {
            let mut keys: Vec<&String> = d.keys().collect();
            keys.sort();
            for k in keys {
                t.push_str(&format!("  {k}:\t{}\n", detail(comp, k)));
            }
        }
    }
    t
}

/// A build time as docker's CLI shows it: an RFC 3339 time (dockerd sends one) in
/// Go's ANSIC layout, anything else as it came.
fn reformat_date(t: &Value) -> Value {
    match t.as_str().and_then(format::go_ansic) {
        Some(ansic) => Value::String(ansic),
        None => t.clone(),
    }
}

/// The Engine component's BuildTime reformatted, as docker's CLI does before its
/// template sees it (the top-level BuildTime stays as the daemon sent it).
fn reformat_build_time(v: &mut Value) {
    for comp in v
        .get_mut("Components")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if comp.get("Name").and_then(Value::as_str) == Some("Engine") {
            if let Some(t) = comp.pointer_mut("/Details/BuildTime") {
                *t = reformat_date(t);
            }
        }
    }
}

pub fn version(c: &mut Client, a: FormatArg) -> Result<()> {
    // Docker's templates see Go field names: ApiVersion is APIVersion there.
    let server = c.get_json("/version").map(|mut v| {
        reformat_build_time(&mut v);
        if let Some(obj) = v.as_object_mut() {
            if let Some(api) = obj.get("ApiVersion").cloned() {
                obj.insert("APIVersion".into(), api);
            }
        }
        v
    });
    let api = c
        .api_version()
        .unwrap_or_else(|_| format!("{}.{}", CLIENT_API_VERSION.0, CLIENT_API_VERSION.1));
    let client = client_version(&api);
    if let Some(f) = &a.format {
        let data = json!({"Client": client, "Server": server.as_ref().ok()});
        let text = if f == "json" {
            data.to_string()
        } else {
            parse_template(f)?
                .execute(&data)
                .map_err(|e| CliError::other(format!("template: :1: executing \"\" {e}")))?
        };
        print(&format!("{text}\n"))?;
        return server.map(|_| ());
    }
    match server {
        Ok(sv) => print(&version_text(&client, Some(&sv))),
        Err(e) => {
            print(&version_text(&client, None))?;
            Err(e)
        }
    }
}

pub fn info(c: &mut Client, a: FormatArg) -> Result<()> {
    let v = c.get_json("/info")?;
    if let Some(f) = &a.format {
        let text = if f == "json" {
            v.to_string()
        } else {
            parse_template(f)?
                .execute(&v)
                .map_err(|e| CliError::other(format!("template: :1: executing \"\" {e}")))?
        };
        return print(&format!("{text}\n"));
    }
    let mut t = String::new();
    t.push_str("Client:\n");
    t.push_str(&format!(" Version:    {}\n", env!("CARGO_PKG_VERSION")));
    t.push_str(" Context:    default\n");
    t.push_str(" Debug Mode: false\n\n");
    t.push_str(&server_info_text(&v));
    print(&t)
}

/// The Server part of `docker info`, line for line as Docker's CLI prints it.
pub fn server_info_text(v: &Value) -> String {
    let mut t = String::from("Server:\n");
    let n = |k: &str| int_field(v, k);
    let s = |k: &str| str_field(v, k).to_string();
    let b = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let strings = |x: Option<&Value>| -> Vec<String> {
        x.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    t.push_str(&format!(" Containers: {}\n", n("Containers")));
    t.push_str(&format!("  Running: {}\n", n("ContainersRunning")));
    t.push_str(&format!("  Paused: {}\n", n("ContainersPaused")));
    t.push_str(&format!("  Stopped: {}\n", n("ContainersStopped")));
    t.push_str(&format!(" Images: {}\n", n("Images")));
    t.push_str(&format!(" Server Version: {}\n", s("ServerVersion")));
    t.push_str(&format!(" Storage Driver: {}\n", s("Driver")));
    for pair in v
        .get("DriverStatus")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some([k, val]) = pair.as_array().map(Vec::as_slice) {
            t.push_str(&format!(
                "  {}: {}\n",
                k.as_str().unwrap_or(""),
                val.as_str().unwrap_or("")
            ));
        }
    }
    t.push_str(&format!(" Logging Driver: {}\n", s("LoggingDriver")));
    t.push_str(&format!(" Cgroup Driver: {}\n", s("CgroupDriver")));
    t.push_str(&format!(" Cgroup Version: {}\n", s("CgroupVersion")));
    t.push_str(" Plugins:\n");
    let plugins = v.get("Plugins");
    t.push_str(&format!(
        "  Volume: {}\n",
        strings(plugins.and_then(|p| p.get("Volume"))).join(" ")
    ));
    t.push_str(&format!(
        "  Network: {}\n",
        strings(plugins.and_then(|p| p.get("Network"))).join(" ")
    ));
    let authz = strings(plugins.and_then(|p| p.get("Authorization")));
    if !authz.is_empty() {
        t.push_str(&format!("  Authorization: {}\n", authz.join(" ")));
    }
    t.push_str(&format!(
        "  Log: {}\n",
        strings(plugins.and_then(|p| p.get("Log"))).join(" ")
    ));
    let swarm = v.get("Swarm").cloned().unwrap_or(Value::Null);
    let state = str_field(&swarm, "LocalNodeState");
    t.push_str(&format!(" Swarm: {state}\n"));
    if state != "inactive" && state != "pending" {
        t.push_str(&format!("  NodeID: {}\n", str_field(&swarm, "NodeID")));
        let manager = swarm
            .get("ControlAvailable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        t.push_str(&format!("  Is Manager: {manager}\n"));
        t.push_str(&format!(
            "  Node Address: {}\n",
            str_field(&swarm, "NodeAddr")
        ));
    }
    let mut runtimes: Vec<String> = v
        .get("Runtimes")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    runtimes.sort();
    t.push_str(&format!(" Runtimes: {}\n", runtimes.join(" ")));
    t.push_str(&format!(" Default Runtime: {}\n", s("DefaultRuntime")));
    t.push_str(&format!(" Init Binary: {}\n", s("InitBinary")));
    let commit = |k: &str| {
        v.pointer(&format!("/{k}/ID"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    t.push_str(&format!(
        " containerd version: {}\n",
        commit("ContainerdCommit")
    ));
    t.push_str(&format!(" runc version: {}\n", commit("RuncCommit")));
    t.push_str(&format!(" init version: {}\n", commit("InitCommit")));
    let security = strings(v.get("SecurityOptions"));
    if !security.is_empty() {
        t.push_str(" Security Options:\n");
        for opt in security {
            let mut name = String::new();
            let mut rest = Vec::new();
            for kv in opt.split(',') {
                match kv.split_once('=') {
                    Some(("name", val)) => name = val.to_string(),
                    Some((k, val)) => rest.push((k.to_string(), val.to_string())),
                    None => name = kv.to_string(),
                }
            }
            t.push_str(&format!("  {name}\n"));
            for (k, val) in rest {
                let mut key = k.clone();
                if let Some(first) = key.get(..1).map(str::to_uppercase) {
                    key.replace_range(..1, &first);
                }
                t.push_str(&format!("   {key}: {val}\n"));
            }
        }
    }
    t.push_str(&format!(" Kernel Version: {}\n", s("KernelVersion")));
    t.push_str(&format!(" Operating System: {}\n", s("OperatingSystem")));
    t.push_str(&format!(" OSType: {}\n", s("OSType")));
    t.push_str(&format!(" Architecture: {}\n", s("Architecture")));
    t.push_str(&format!(" CPUs: {}\n", n("NCPU")));
    t.push_str(&format!(
        " Total Memory: {}\n",
        format::bytes_size(n("MemTotal") as f64)
    ));
    t.push_str(&format!(" Name: {}\n", s("Name")));
    t.push_str(&format!(" ID: {}\n", s("ID")));
    t.push_str(&format!(" Docker Root Dir: {}\n", s("DockerRootDir")));
    t.push_str(&format!(" Debug Mode: {}\n", b("Debug")));
    let labels = strings(v.get("Labels"));
    if !labels.is_empty() {
        t.push_str(" Labels:\n");
        for l in labels {
            t.push_str(&format!("  {l}\n"));
        }
    }
    t.push_str(&format!(" Experimental: {}\n", b("ExperimentalBuild")));
    let registry = v.get("RegistryConfig");
    let cidrs = strings(registry.and_then(|r| r.get("InsecureRegistryCIDRs")));
    let index = registry
        .and_then(|r| r.get("IndexConfigs"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !cidrs.is_empty() || !index.is_empty() {
        t.push_str(" Insecure Registries:\n");
        for (name, cfg) in &index {
            if !cfg.get("Secure").and_then(Value::as_bool).unwrap_or(false) {
                t.push_str(&format!("  {name}\n"));
            }
        }
        for c in cidrs {
            t.push_str(&format!("  {c}\n"));
        }
    }
    let mirrors = strings(registry.and_then(|r| r.get("Mirrors")));
    if !mirrors.is_empty() {
        t.push_str(" Registry Mirrors:\n");
        for m in mirrors {
            t.push_str(&format!("  {m}\n"));
        }
    }
    t.push_str(&format!(
        " Live Restore Enabled: {}\n",
        b("LiveRestoreEnabled")
    ));
    t.push('\n');
    t
}

pub fn events(c: &mut Client, a: EventsArgs) -> Result<()> {
    let mut q: Vec<(&str, String)> = Vec::new();
    for (key, value) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = value {
            let t = format::parse_time_arg(v)
                .ok_or_else(|| CliError::other(format!("invalid value for \"{key}\": {v}")))?;
            q.push((key, t));
        }
    }
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let resp = c.send(
        "GET",
        &format!("/events{}", query(&q)),
        &[],
        crate::http::Body::Empty,
    )?;
    let tmpl = match a.format.as_deref() {
        Some("json") => Some(parse_template("{{json .}}")?),
        Some(f) => Some(parse_template(f)?),
        None => None,
    };
    let mut out = io::stdout();
    for ev in JsonStream::new(resp) {
        let ev = ev?;
        let line = match &tmpl {
            Some(t) => t
                .execute(&event_view(&ev))
                .map_err(|e| CliError::other(format!("template: :1: executing \"\" {e}")))?,
            None => event_line(&ev),
        };
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

/// An event as Go's events.Message: `json` lists its fields in declaration order.
fn event_view(ev: &Value) -> Value {
    let order = |fields: &[&str]| Value::from(fields.to_vec());
    let mut v = ev.clone();
    if let Some(m) = v.as_object_mut() {
        m.insert(
            crate::template::STRUCT_KEY.into(),
            order(&[
                "status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano",
            ]),
        );
        if let Some(actor) = m.get_mut("Actor").and_then(Value::as_object_mut) {
            actor.insert(
                crate::template::STRUCT_KEY.into(),
                order(&["ID", "Attributes"]),
            );
        }
    }
    v
}

/// Docker's default event line: time, type, action, actor ID, sorted attributes.
fn event_line(ev: &Value) -> String {
    let nanos = ev
        .get("timeNano")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| int_field(ev, "time") * 1_000_000_000);
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let (y, mo, d, h, mi, s) = format::civil_from_unix(secs);
    let mut line = format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:09}Z {} {} {}",
        str_field(ev, "Type"),
        str_field(ev, "Action"),
        ev.pointer("/Actor/ID")
            .and_then(Value::as_str)
            .unwrap_or("")
    );
    if let Some(attrs) = ev.pointer("/Actor/Attributes").and_then(Value::as_object) {
        let mut kv: Vec<String> = attrs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        kv.sort();
        if !kv.is_empty() {
            line.push_str(&format!(" ({})", kv.join(", ")));
        }
    }
    line
}

pub fn df(c: &mut Client, a: DfArgs) -> Result<()> {
    let v = c.get_json("/system/df")?;
    let list = |k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let images = list("Images");
    let containers = list("Containers");
    let volumes = list("Volumes");
    let cache = list("BuildCache");
    // Docker's disk-usage formatter: HumanSize (4 significant digits), integer percent.
    let size4 = |n: i64| format::human_size_prec(n as f64, 4);
    let reclaim = |size: i64, reclaimable: i64| {
        if size > 0 {
            format!("{} ({}%)", size4(reclaimable), reclaimable * 100 / size)
        } else {
            size4(reclaimable)
        }
    };
    let images_size = v
        .get("LayersSize")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| images.iter().map(|i| int_field(i, "Size")).sum());
    let images_active = images
        .iter()
        .filter(|i| int_field(i, "Containers") > 0)
        .count();
    let images_used: i64 = images
        .iter()
        .filter(|i| int_field(i, "Containers") != 0)
        .filter(|i| int_field(i, "Size") != -1 && int_field(i, "SharedSize") != -1)
        .map(|i| int_field(i, "Size") - int_field(i, "SharedSize"))
        .sum();
    let active = |c: &Value| matches!(str_field(c, "State"), "running" | "paused" | "restarting");
    let ctr_size: i64 = containers.iter().map(|c| int_field(c, "SizeRw")).sum();
    let ctr_active = containers.iter().filter(|c| active(c)).count();
    let ctr_reclaim: i64 = containers
        .iter()
        .filter(|c| !active(c))
        .map(|c| int_field(c, "SizeRw"))
        .sum();
    let vol_size = |x: &Value| {
        x.pointer("/UsageData/Size")
            .and_then(Value::as_i64)
            .unwrap_or(-1)
    };
    let vol_refs = |x: &Value| {
        x.pointer("/UsageData/RefCount")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let vols_size: i64 = volumes.iter().map(vol_size).filter(|s| *s != -1).sum();
    let vols_active = volumes.iter().filter(|x| vol_refs(x) > 0).count();
    let vols_reclaim: i64 = volumes
        .iter()
        .filter(|x| vol_refs(x) == 0 && vol_size(x) != -1)
        .map(vol_size)
        .sum();
    let flag = |b: &Value, k: &str| b.get(k).and_then(Value::as_bool).unwrap_or(false);
    let cache_size: i64 = cache
        .iter()
        .filter(|b| !flag(b, "Shared"))
        .map(|b| int_field(b, "Size"))
        .sum();
    let cache_active = cache.iter().filter(|b| flag(b, "InUse")).count();
    let cache_in_use: i64 = cache
        .iter()
        .filter(|b| flag(b, "InUse") && !flag(b, "Shared"))
        .map(|b| int_field(b, "Size"))
        .sum();
    let rows = vec![
        json!({"Type": "Images", "TotalCount": images.len().to_string(), "Active": images_active.to_string(),
            "Size": size4(images_size), "Reclaimable": reclaim(images_size, images_size - images_used)}),
        json!({"Type": "Containers", "TotalCount": containers.len().to_string(), "Active": ctr_active.to_string(),
            "Size": size4(ctr_size), "Reclaimable": reclaim(ctr_size, ctr_reclaim)}),
        json!({"Type": "Local Volumes", "TotalCount": volumes.len().to_string(), "Active": vols_active.to_string(),
            "Size": size4(vols_size), "Reclaimable": reclaim(vols_size, vols_reclaim)}),
        json!({"Type": "Build Cache", "TotalCount": cache.len().to_string(), "Active": cache_active.to_string(),
            "Size": size4(cache_size), "Reclaimable": size4(cache_size - cache_in_use)}),
    ];
    let header = json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
    let format = a.format.clone().unwrap_or_else(|| {
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}".into()
    });
    if a.verbose && a.format.is_none() {
        return df_verbose(&images, &containers, &volumes, cache_size);
    }
    print(&render(&format, &header, &rows)?)
}

/// `system df -v`: each image, container and volume with its size, as docker prints.
fn df_verbose(
    images: &[Value],
    containers: &[Value],
    volumes: &[Value],
    cache_size: i64,
) -> Result<()> {
    // Docker's units.HumanSize (4 significant digits), except the image and
    // container SIZE columns, which its formatters print with 3.
    let size = |n: i64| format::human_size_prec(n as f64, 4);
    let size3 = |n: i64| format::human_size(n as f64);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let ago = |t: i64| format!("{} ago", format::human_duration(now - t));
    let mut out = String::from("Images space usage:\n\n");
    let mut rows = vec![
        "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS"
            .to_string(),
    ];
    for i in images {
        let id = str_field(i, "Id").trim_start_matches("sha256:");
        let tags: Vec<String> = i
            .get("RepoTags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let (repo, tag) = tags
            .first()
            .and_then(|t| t.rsplit_once(':'))
            .map(|(r, t)| (r.to_string(), t.to_string()))
            .unwrap_or(("<none>".into(), "<none>".into()));
        let (total, shared) = (int_field(i, "Size"), int_field(i, "SharedSize").max(0));
        rows.push(format!(
            "{repo}\t{tag}\t{}\t{}\t{}\t{}\t{}\t{}",
            &id[..12.min(id.len())],
            ago(int_field(i, "Created")),
            size3(total),
            size(shared),
            size(total - shared),
            int_field(i, "Containers")
        ));
    }
    out.push_str(&tabwrite_with(&(rows.join("\n") + "\n"), 10, 3));
    out.push_str("\nContainers space usage:\n\n");
    let mut rows = vec![
        "CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES".to_string(),
    ];
    for c in containers {
        let id = str_field(c, "Id");
        let volumes = c
            .get("Mounts")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .filter(|x| str_field(x, "Type") == "volume")
                    .count()
            })
            .unwrap_or(0);
        let name = c
            .pointer("/Names/0")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_start_matches('/');
        // As docker's container formatter: truncated, then Go-quoted.
        let command = format::go_quote(&format::ellipsis(str_field(c, "Command"), 20));
        rows.push(format!(
            "{}\t{}\t{command}\t{volumes}\t{}\t{}\t{}\t{name}",
            &id[..12.min(id.len())],
            str_field(c, "Image"),
            size3(int_field(c, "SizeRw")),
            ago(int_field(c, "Created")),
            str_field(c, "Status"),
        ));
    }
    out.push_str(&tabwrite_with(&(rows.join("\n") + "\n"), 10, 3));
    out.push_str("\nLocal Volumes space usage:\n\n");
    let mut rows = vec!["VOLUME NAME\tLINKS\tSIZE".to_string()];
    for v in volumes {
        let links = v
            .pointer("/UsageData/RefCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let bytes = v
            .pointer("/UsageData/Size")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        rows.push(format!(
            "{}\t{links}\t{}",
            str_field(v, "Name"),
            size(bytes)
        ));
    }
    out.push_str(&tabwrite_with(&(rows.join("\n") + "\n"), 10, 3));
    out.push_str(&format!(
        "\nBuild cache usage: {}\n\nCACHE ID   CACHE TYPE   SIZE      CREATED   LAST USED   USAGE     SHARED\n",
        size(cache_size)
    ));
    print(&out)
}

fn config_store(c: &Client) -> crate::context::Store {
    crate::context::Store {
        dir: c.config_dir.clone(),
    }
}

pub fn login(c: &mut Client, a: LoginArgs) -> Result<()> {
    use crate::auth::{store_credentials, DEFAULT_SERVER};
    let server = a
        .server
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let password = if a.password_stdin {
        if a.password.is_some() {
            return Err(CliError::other(
                "--password and --password-stdin are mutually exclusive",
            ));
        }
        let mut p = String::new();
        io::stdin().read_line(&mut p)?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = &a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else {
        return Err(CliError::other(
            "Error: Cannot perform an interactive login from a non TTY device; use --username and --password-stdin",
        ));
    };
    let user = a
        .username
        .clone()
        .ok_or_else(|| CliError::other("Error: Username is required"))?;
    let body = json!({"username": user, "password": password, "serveraddress": server});
    let v = c.post_json("/auth", Some(&body))?;
    store_credentials(&config_store(c), &server, &user, &password)?;
    let status = str_field(&v, "Status");
    println!(
        "{}",
        if status.is_empty() {
            "Login Succeeded"
        } else {
            status
        }
    );
    Ok(())
}

pub fn logout(c: &mut Client, a: LogoutArgs) -> Result<()> {
    let server = a
        .server
        .clone()
        .unwrap_or_else(|| crate::auth::DEFAULT_SERVER.to_string());
    if crate::auth::remove_credentials(&config_store(c), &server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(())
}

/// `system prune`: stopped containers, unused networks, dangling (or all unused)
/// images, and with `--volumes` anonymous volumes, as docker reports them.
pub fn prune(c: &mut Client, a: SystemPruneArgs) -> Result<()> {
    let mut warning = String::from("WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n");
    if a.volumes {
        warning.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    if a.all {
        warning.push_str("  - all images without at least one container associated to them\n");
    } else {
        warning.push_str("  - all dangling images\n");
    }
    warning.push_str("  - unused build cache\n");
    if !a.force && !super::container::confirm(warning.trim_end())? {
        return Ok(());
    }
    let with = |extra: Option<String>| -> Result<String> {
        let mut f = a.filter.clone();
        f.extend(extra);
        Ok(match filters_json(&f)? {
            Some(j) => query(&[("filters", j)]),
            None => String::new(),
        })
    };
    // Docker's order; each part prints as it is done, and the first error ends it.
    let mut space = 0f64;
    let list = |v: &Value, k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let section = |title: &str, items: &[String]| -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        print(&format!("{title}\n{}\n\n", items.join("\n")))
    };
    let reclaimed = |v: &Value| {
        v.get("SpaceReclaimed")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    };
    let containers = c.post_json(&format!("/containers/prune{}", with(None)?), None)?;
    section(
        "Deleted Containers:",
        &list(&containers, "ContainersDeleted"),
    )?;
    space += reclaimed(&containers);
    let networks = c.post_json(&format!("/networks/prune{}", with(None)?), None)?;
    section("Deleted Networks:", &list(&networks, "NetworksDeleted"))?;
    if a.volumes {
        let v = c.post_json(&format!("/volumes/prune{}", with(None)?), None)?;
        section("Deleted Volumes:", &list(&v, "VolumesDeleted"))?;
        space += reclaimed(&v);
    }
    let dangling = format!("dangling={}", !a.all);
    let images = c.post_json(&format!("/images/prune{}", with(Some(dangling))?), None)?;
    let mut lines = Vec::new();
    for item in images
        .get("ImagesDeleted")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (key, label) in [("Untagged", "untagged"), ("Deleted", "deleted")] {
            if let Some(v) = item.get(key).and_then(Value::as_str) {
                lines.push(format!("{label}: {v}"));
            }
        }
    }
    section("Deleted Images:", &lines)?;
    space += reclaimed(&images);
    let q = if a.all { "?all=1" } else { "" };
    let cache = c.post_json(&format!("/build/prune{q}"), None)?;
    section(
        "Deleted build cache objects:",
        &list(&cache, "CachesDeleted"),
    )?;
    space += reclaimed(&cache);
    print(&format!(
        "Total reclaimed space: {}\n",
        crate::format::human_size(space)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_version_block() {
        let sv = json!({"Platform": {"Name": "berth"}, "Components": [{"Name": "Engine", "Version": "0.1.0",
            "Details": {"ApiVersion": "1.50", "MinAPIVersion": "1.24", "GoVersion": "n/a", "GitCommit": "x",
            "BuildTime": "now", "Os": "linux", "Arch": "amd64", "Experimental": "false"}}]});
        let t = tabwrite_with(&server_version_text(&sv), 20, 1);
        assert!(t.contains("\nServer: berth\n Engine:\n  Version:          0.1.0\n  API version:      1.50 (minimum version 1.24)\n"), "{t}");
    }

    #[test]
    fn event_lines() {
        let ev = json!({"Type": "container", "Action": "start", "Actor": {"ID": "abc",
            "Attributes": {"name": "x", "image": "busybox"}}, "timeNano": 1_000_000_001i64});
        assert_eq!(
            event_line(&ev),
            "1970-01-01T00:00:01.000000001Z container start abc (image=busybox, name=x)"
        );
    }
}
