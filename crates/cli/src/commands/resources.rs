//! `port`, `volume …` and `network …`.

use serde_json::{json, Map, Value};

use super::container::confirm;
use super::{filters_json, parse_template, print, render, str_field};
use crate::args::*;
use crate::client::{CliError, Client, Result};
use crate::format::{human_size, short_id};
use crate::http::{encode_path as encode, query};

/// Go's `sortorder.NaturalLess`: runs of digits compare as numbers.
pub fn natural_less(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    while !x.is_empty() && !y.is_empty() {
        if x[0].is_ascii_digit() && y[0].is_ascii_digit() {
            let dx = x.iter().take_while(|c| c.is_ascii_digit()).count();
            let dy = y.iter().take_while(|c| c.is_ascii_digit()).count();
            let (nx, ny) = (&x[..dx], &y[..dy]);
            let tx: &[u8] = {
                let z = nx.iter().take_while(|c| **c == b'0').count();
                &nx[z..]
            };
            let ty: &[u8] = {
                let z = ny.iter().take_while(|c| **c == b'0').count();
                &ny[z..]
            };
            if tx.len() != ty.len() {
                return tx.len() < ty.len();
            }
            if tx != ty {
                return tx < ty;
            }
            if dx != dy {
                return dx < dy;
            }
            x = &x[dx..];
            y = &y[dy..];
        } else {
            if x[0] != y[0] {
                return x[0] < y[0];
            }
            x = &x[1..];
            y = &y[1..];
        }
    }
    x.len() < y.len()
}

/// Go's `net.JoinHostPort`.
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub fn port(c: &mut Client, a: PortArgs) -> Result<()> {
    let info = c.get_json(&format!("/containers/{}/json", encode(&a.container)))?;
    let ports = info
        .pointer("/NetworkSettings/Ports")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let bindings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|b| join_host_port(str_field(b, "HostIp"), str_field(b, "HostPort")))
            .collect()
    };
    let mut out: Vec<String> = Vec::new();
    if let Some(p) = &a.port {
        let key = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        match ports.get(&key).filter(|v| !v.is_null()) {
            Some(v) => out.extend(bindings(v)),
            None => {
                return Err(CliError::other(format!(
                    "Error: No public port '{p}' published for {}",
                    a.container
                )))
            }
        }
    } else {
        for (from, v) in &ports {
            for b in bindings(v) {
                out.push(format!("{from} -> {b}"));
            }
        }
    }
    out.sort_by(|x, y| {
        if natural_less(x, y) {
            std::cmp::Ordering::Less
        } else if natural_less(y, x) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    if !out.is_empty() {
        print(&format!("{}\n", out.join("\n")))?;
    }
    Ok(())
}

fn kv_map(items: &[String]) -> Value {
    let mut m = Map::new();
    for i in items {
        let (k, v) = i.split_once('=').unwrap_or((i, ""));
        m.insert(k.to_string(), json!(v));
    }
    Value::Object(m)
}

fn labels_text(v: &Value) -> String {
    let mut l: Vec<String> = v
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    l.sort();
    l.join(",")
}

fn by_name(list: &mut [Value]) {
    list.sort_by(|a, b| {
        let (x, y) = (str_field(a, "Name"), str_field(b, "Name"));
        if natural_less(x, y) {
            std::cmp::Ordering::Less
        } else if natural_less(y, x) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
}

/// `inspect` of named objects: an indented JSON array, or a template per object.
fn inspect_named(c: &mut Client, base: &str, a: &InspectNamesArgs) -> Result<()> {
    let tmpl = match &a.format {
        Some(f) if f != "json" => Some(parse_template(f)?),
        _ => None,
    };
    let mut docs = Vec::new();
    let mut raw_docs = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        match c.get_raw(&format!("{base}/{}", encode(n))) {
            Ok((raw, v)) => {
                raw_docs.push(raw);
                docs.push(v);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let out = match tmpl {
        Some(t) => {
            let mut out = String::new();
            for d in &docs {
                out.push_str(&t.execute(d).map_err(CliError::Other)?);
                out.push('\n');
            }
            out
        }
        None => format!("{}\n", crate::format::indent_raw(&raw_docs)),
    };
    print(&out)?;
    for e in &errors {
        eprintln!("{e}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::Exit(1))
    }
}

fn remove_each(c: &mut Client, base: &str, names: &[String], force: bool) -> Result<()> {
    let q = if force { "?force=1" } else { "" };
    super::for_each(names, |n| {
        c.call("DELETE", &format!("{base}/{}{q}", encode(n)))
    })
}

pub fn volume(c: &mut Client, command: VolumeCommand) -> Result<()> {
    match command {
        VolumeCommand::Create(a) => {
            let name = a.name.clone().or(a.name_flag.clone()).unwrap_or_default();
            let body = json!({"Name": name, "Driver": a.driver, "DriverOpts": kv_map(&a.opt),
                "Labels": kv_map(&a.label)});
            let v = c.post_json("/volumes/create", Some(&body))?;
            println!("{}", str_field(&v, "Name"));
            Ok(())
        }
        VolumeCommand::Ls(a) => {
            let q = match filters_json(&a.filter)? {
                Some(f) => query(&[("filters", f)]),
                None => String::new(),
            };
            let v = c.get_json(&format!("/volumes{q}"))?;
            let mut list = v
                .get("Volumes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            by_name(&mut list);
            let rows: Vec<Value> = list
                .iter()
                .map(|x| {
                    let size = x.pointer("/UsageData/Size").and_then(Value::as_i64);
                    let refs = x.pointer("/UsageData/RefCount").and_then(Value::as_i64);
                    json!({"Availability": "N/A", "Driver": str_field(x, "Driver"), "Group": "N/A",
                        "Labels": labels_text(x),
                        "Links": refs.map(|r| r.to_string()).unwrap_or_else(|| "N/A".into()),
                        "Mountpoint": str_field(x, "Mountpoint"), "Name": str_field(x, "Name"),
                        "Scope": str_field(x, "Scope"),
                        "Size": size.map(|s| human_size(s as f64)).unwrap_or_else(|| "N/A".into()),
                        "Status": "N/A"})
                })
                .collect();
            let header = json!({"Driver": "DRIVER", "Name": "VOLUME NAME", "Scope": "SCOPE",
                "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE",
                "Group": "GROUP", "Availability": "AVAILABILITY", "Status": "STATUS"});
            let format = if a.quiet {
                "{{.Name}}".to_string()
            } else {
                a.format
                    .clone()
                    .unwrap_or_else(|| "table {{.Driver}}\t{{.Name}}".into())
            };
            print(&render(&format, &header, &rows)?)
        }
        VolumeCommand::Rm(a) => remove_each(c, "/volumes", &a.names, a.force),
        VolumeCommand::Inspect(a) => inspect_named(c, "/volumes", &a),
        VolumeCommand::Prune(a) => {
            let warning = if a.all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !a.force && !confirm(warning)? {
                return Ok(());
            }
            let mut filters = a.filter.clone();
            if a.all {
                filters.push("all=true".into());
            }
            let q = match filters_json(&filters)? {
                Some(f) => query(&[("filters", f)]),
                None => String::new(),
            };
            let v = c.post_json(&format!("/volumes/prune{q}"), None)?;
            prune_report(&v, "VolumesDeleted", "Deleted Volumes:", true)
        }
    }
}

fn prune_report(v: &Value, key: &str, title: &str, space: bool) -> Result<()> {
    let mut out = String::new();
    let deleted: Vec<&str> = v
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str(title);
        out.push('\n');
        for d in deleted {
            out.push_str(d);
            out.push('\n');
        }
        if space {
            out.push('\n');
        }
    }
    if space {
        out.push_str(&format!(
            "Total reclaimed space: {}\n",
            human_size(
                v.get("SpaceReclaimed")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            )
        ));
    }
    print(&out)
}

pub fn network(c: &mut Client, command: NetworkCommand) -> Result<()> {
    match command {
        NetworkCommand::Create(a) => {
            let mut configs = Vec::new();
            for (i, subnet) in a.subnet.iter().enumerate() {
                let mut cfg = Map::new();
                cfg.insert("Subnet".into(), json!(subnet));
                if let Some(r) = a.ip_range.get(i) {
                    cfg.insert("IPRange".into(), json!(r));
                }
                if let Some(g) = a.gateway.get(i) {
                    cfg.insert("Gateway".into(), json!(g));
                }
                configs.push(Value::Object(cfg));
            }
            if a.subnet.is_empty() && !a.gateway.is_empty() {
                return Err(CliError::other(
                    "every ip-range or gateway must have a corresponding subnet",
                ));
            }
            let body = json!({"Name": a.name, "Driver": a.driver,
                "IPAM": {"Driver": "default", "Config": configs, "Options": {}},
                "Internal": a.internal, "Attachable": a.attachable, "EnableIPv6": a.ipv6,
                "Options": kv_map(&a.opt), "Labels": kv_map(&a.label)});
            let v = c.post_json("/networks/create", Some(&body))?;
            let warning = str_field(&v, "Warning");
            if !warning.is_empty() {
                eprintln!("{warning}");
            }
            println!("{}", str_field(&v, "Id"));
            Ok(())
        }
        NetworkCommand::Ls(a) => {
            let q = match filters_json(&a.filter)? {
                Some(f) => query(&[("filters", f)]),
                None => String::new(),
            };
            let v = c.get_json(&format!("/networks{q}"))?;
            let mut list = v.as_array().cloned().unwrap_or_default();
            by_name(&mut list);
            let rows: Vec<Value> = list
                .iter()
                .map(|n| {
                    let id = str_field(n, "Id");
                    let flag = |k: &str| {
                        n.get(k)
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                            .to_string()
                    };
                    json!({"CreatedAt": str_field(n, "Created"), "Driver": str_field(n, "Driver"),
                        "ID": if a.no_trunc { id.to_string() } else { short_id(id) },
                        "IPv4": "true", "IPv6": flag("EnableIPv6"), "Internal": flag("Internal"),
                        "Labels": labels_text(n), "Name": str_field(n, "Name"),
                        "Scope": str_field(n, "Scope")})
                })
                .collect();
            let header = json!({"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER",
                "Scope": "SCOPE", "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL",
                "Labels": "LABELS", "CreatedAt": "CREATED"});
            let format = if a.quiet {
                "{{.ID}}".to_string()
            } else {
                a.format
                    .clone()
                    .unwrap_or_else(|| "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}".into())
            };
            print(&render(&format, &header, &rows)?)
        }
        NetworkCommand::Rm(a) => match remove_each(c, "/networks", &a.names, false) {
            // docker 28 ends a failed `network rm` with its status as text.
            Err(CliError::Exit(code)) => Err(CliError::other(format!("exit status {code}"))),
            other => other,
        },
        NetworkCommand::Inspect(a) => inspect_named(c, "/networks", &a),
        NetworkCommand::Connect(a) => {
            let mut endpoint = Map::new();
            if !a.alias.is_empty() {
                endpoint.insert("Aliases".into(), json!(a.alias));
            }
            if let Some(ip) = &a.ip {
                endpoint.insert("IPAMConfig".into(), json!({"IPv4Address": ip}));
            }
            let body = json!({"Container": a.container, "EndpointConfig": endpoint});
            c.post_json(
                &format!("/networks/{}/connect", encode(&a.network)),
                Some(&body),
            )
            .map(|_| ())
        }
        NetworkCommand::Disconnect(a) => {
            let body = json!({"Container": a.container, "Force": a.force});
            c.post_json(
                &format!("/networks/{}/disconnect", encode(&a.network)),
                Some(&body),
            )
            .map(|_| ())
        }
        NetworkCommand::Prune(a) => {
            if !a.force
                && !confirm(
                    "WARNING! This will remove all custom networks not used by at least one container.",
                )?
            {
                return Ok(());
            }
            let q = match filters_json(&a.filter)? {
                Some(f) => query(&[("filters", f)]),
                None => String::new(),
            };
            let v = c.post_json(&format!("/networks/prune{q}"), None)?;
            prune_report(&v, "NetworksDeleted", "Deleted Networks:", false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        assert!(natural_less("net2", "net10"));
        assert!(natural_less("a", "b"));
        assert!(!natural_less("b", "a"));
        assert!(natural_less(
            "80/tcp -> 0.0.0.0:8080",
            "443/tcp -> 0.0.0.0:8443"
        ));
        assert_eq!(join_host_port("::", "80"), "[::]:80");
    }
}
