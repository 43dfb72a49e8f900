//! What Go's typed structs add when `docker inspect --format` prints them: structs
//! print as `{v1 v2}` in declaration order (text/template looks through pointers),
//! `json` of one lists its fields in that order, times print as Go's Time, and absent or
//! null fields print as their type's zero value (`[]`, `map[]`, `<nil>`, `""`).
//! Docker executes inspect templates on its API types, so these come from the
//! Engine API's Go definitions; only the fields people template are listed.

use serde_json::{Map, Value};

use crate::template::{NIL_KEY, STRUCT_KEY};

#[derive(Clone, Copy)]
enum Field {
    Str,
    Int,
    Bool,
    Slice,
    Map,
    Ptr,
    Time,
}

/// (path, ordered struct fields) — `*` matches any map key or list index.
const STRUCTS: &[(&str, &[(&str, Field)])] = {
    use Field::*;
    &[
        (
            "State",
            &[
                ("Status", Str),
                ("Running", Bool),
                ("Paused", Bool),
                ("Restarting", Bool),
                ("OOMKilled", Bool),
                ("Dead", Bool),
                ("Pid", Int),
                ("ExitCode", Int),
                ("Error", Str),
                ("StartedAt", Str),
                ("FinishedAt", Str),
                ("Health", Ptr),
            ],
        ),
        ("GraphDriver", &[("Data", Map), ("Name", Str)]),
        (
            "Mounts.*",
            &[
                ("Type", Str),
                ("Name", Str),
                ("Source", Str),
                ("Destination", Str),
                ("Driver", Str),
                ("Mode", Str),
                ("RW", Bool),
                ("Propagation", Str),
            ],
        ),
        (
            "HostConfig.RestartPolicy",
            &[("Name", Str), ("MaximumRetryCount", Int)],
        ),
        ("HostConfig.LogConfig", &[("Type", Str), ("Config", Map)]),
        (
            "HostConfig.PortBindings.*.*",
            &[("HostIp", Str), ("HostPort", Str)],
        ),
        (
            "NetworkSettings.Ports.*.*",
            &[("HostIp", Str), ("HostPort", Str)],
        ),
        ("RootFS", &[("Type", Str), ("Layers", Slice)]),
        ("Metadata", &[("LastTagTime", Time)]),
    ]
};

/// (path of an object, its fields whose zero value is not "<no value>").
const NILABLE: &[(&str, &[(&str, Field)])] = {
    use Field::*;
    &[
        (
            "",
            &[
                ("Args", Slice),
                ("Node", Ptr),
                ("ExecIDs", Slice),
                ("SizeRw", Ptr),
                ("SizeRootFs", Ptr),
                ("Mounts", Slice),
                ("ImageManifestDescriptor", Ptr),
                ("RepoTags", Slice),
                ("RepoDigests", Slice),
                ("Descriptor", Ptr),
                ("Manifests", Slice),
            ],
        ),
        (
            "HostConfig",
            &[
                ("Binds", Slice),
                ("CapAdd", Slice),
                ("CapDrop", Slice),
                ("Dns", Slice),
                ("DnsOptions", Slice),
                ("DnsSearch", Slice),
                ("ExtraHosts", Slice),
                ("GroupAdd", Slice),
                ("Links", Slice),
                ("SecurityOpt", Slice),
                ("Tmpfs", Map),
                ("Sysctls", Map),
                ("StorageOpt", Map),
                ("Ulimits", Slice),
                ("Devices", Slice),
                ("DeviceCgroupRules", Slice),
                ("DeviceRequests", Slice),
                ("VolumesFrom", Slice),
                ("Mounts", Slice),
                ("MaskedPaths", Slice),
                ("ReadonlyPaths", Slice),
                ("PortBindings", Map),
                ("Init", Ptr),
                ("PidsLimit", Ptr),
                ("OomKillDisable", Ptr),
                ("MemorySwappiness", Ptr),
                ("BlkioWeightDevice", Slice),
                ("BlkioDeviceReadBps", Slice),
                ("BlkioDeviceWriteBps", Slice),
                ("BlkioDeviceReadIOps", Slice),
                ("BlkioDeviceWriteIOps", Slice),
            ],
        ),
        (
            "Config",
            &[
                ("Cmd", Slice),
                ("Entrypoint", Slice),
                ("Env", Slice),
                ("Volumes", Map),
                ("Labels", Map),
                ("ExposedPorts", Map),
                ("OnBuild", Slice),
                ("Shell", Slice),
                ("Healthcheck", Ptr),
                ("StopTimeout", Ptr),
            ],
        ),
        (
            "NetworkSettings",
            &[
                ("Ports", Map),
                ("Networks", Map),
                ("SecondaryIPAddresses", Slice),
                ("SecondaryIPv6Addresses", Slice),
            ],
        ),
        (
            "NetworkSettings.Networks.*",
            &[
                ("Links", Slice),
                ("Aliases", Slice),
                ("DNSNames", Slice),
                ("IPAMConfig", Ptr),
                ("DriverOpts", Map),
            ],
        ),
    ]
};

fn path_matches(pattern: &str, path: &[String]) -> bool {
    let parts: Vec<&str> = if pattern.is_empty() {
        Vec::new()
    } else {
        pattern.split('.').collect()
    };
    parts.len() == path.len() && parts.iter().zip(path).all(|(p, s)| *p == "*" || p == s)
}

fn zero(kind: Field) -> Value {
    match kind {
        Field::Str => Value::from(""),
        Field::Int => Value::from(0),
        Field::Bool => Value::from(false),
        Field::Slice => nil("slice"),
        Field::Map => nil("map"),
        Field::Ptr => nil("ptr"),
        Field::Time => {
            let mut m = Map::new();
            m.insert(
                crate::template::TIME_KEY.into(),
                Value::from("0001-01-01T00:00:00Z"),
            );
            Value::Object(m)
        }
    }
}

fn nil(kind: &str) -> Value {
    let mut m = Map::new();
    m.insert(NIL_KEY.into(), Value::from(kind));
    Value::Object(m)
}

/// The inspect document with Go's typing made visible to the template printer.
pub fn view(v: &Value) -> Value {
    walk(v, &mut Vec::new())
}

fn walk(v: &Value, path: &mut Vec<String>) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                path.push(k.clone());
                out.insert(k.clone(), walk(x, path));
                path.pop();
            }
            let mut added = Vec::new();
            let mut fill =
                |out: &mut Map<String, Value>, name: &str, kind: Field| match out.get(name) {
                    None => {
                        out.insert(name.to_string(), zero(kind));
                        added.push(Value::from(name));
                    }
                    Some(Value::Null) => {
                        out.insert(name.to_string(), zero(kind));
                    }
                    Some(Value::String(t)) if matches!(kind, Field::Time) => {
                        let mut m = Map::new();
                        m.insert(crate::template::TIME_KEY.into(), Value::from(t.clone()));
                        out.insert(name.to_string(), Value::Object(m));
                    }
                    Some(Value::Object(m)) if matches!(kind, Field::Map) => {
                        // A Go map: a key it lacks is <no value>, never an error.
                        let mut m = m.clone();
                        m.insert(crate::template::MAP_KEY.into(), Value::Bool(true));
                        out.insert(name.to_string(), Value::Object(m));
                    }
                    Some(_) => {}
                };
            for (pattern, fields) in NILABLE {
                if path_matches(pattern, path) {
                    for (name, kind) in fields.iter() {
                        fill(&mut out, name, *kind);
                    }
                }
            }
            for (pattern, fields) in STRUCTS {
                if path_matches(pattern, path) {
                    for (name, kind) in fields.iter() {
                        fill(&mut out, name, *kind);
                    }
                    let order: Vec<Value> = fields.iter().map(|(n, _)| Value::from(*n)).collect();
                    out.insert(STRUCT_KEY.into(), Value::Array(order));
                }
            }
            if !added.is_empty() {
                out.insert(crate::template::ADDED_KEY.into(), Value::Array(added));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| {
                    path.push(i.to_string());
                    let r = walk(x, path);
                    path.pop();
                    r
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;
    use serde_json::json;

    fn run(t: &str, v: &Value) -> String {
        Template::parse(t)
            .and_then(|t| t.execute(&view(v)))
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn structs_and_zero_values_print_as_go() {
        let v = json!({
            "State": {"Status": "running", "Running": true, "Pid": 7, "ExitCode": 0},
            "HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, "Binds": null},
            "Config": {"Cmd": null, "Env": ["A=1"]},
            "Mounts": [{"Type": "bind", "Source": "/tmp", "Destination": "/t", "RW": false, "Propagation": "rprivate"}],
            "GraphDriver": {"Name": "overlay2", "Data": {"B": "2", "A": "1"}}
        });
        assert_eq!(run("{{.HostConfig.RestartPolicy}}", &v), "{always 0}");
        assert_eq!(
            run("{{.HostConfig.PortBindings}}", &v),
            "map[80/tcp:[{ 8080}]]"
        );
        assert_eq!(
            run("{{.Config.Cmd}} {{.HostConfig.Binds}} {{.SizeRw}}", &v),
            "[] [] <nil>"
        );
        assert_eq!(run("{{.Mounts}}", &v), "[{bind  /tmp /t   false rprivate}]");
        assert_eq!(run("{{.GraphDriver}}", &v), "{map[A:1 B:2] overlay2}");
        assert_eq!(run("{{.GraphDriver.Data}}", &v), "map[A:1 B:2]");
        assert_eq!(
            run("{{.State}}", &v),
            "{running true false false false false 7 0    <nil>}"
        );
        assert_eq!(
            run("{{json .HostConfig.RestartPolicy}}", &v),
            r#"{"Name":"always","MaximumRetryCount":0}"#
        );
        assert_eq!(run("{{json .Config.Cmd}}", &v), "null");
        assert_eq!(
            run("{{json .State}}", &v),
            r#"{"Status":"running","Running":true,"Pid":7,"ExitCode":0}"#
        );
        assert_eq!(
            run("{{range .Config.Cmd}}x{{end}}{{len .Config.Env}}", &v),
            "1"
        );
        assert_eq!(run("{{.Nope}}", &v), "<no value>");
    }
}
