//! A container's side of networking: which networks it joins (from `--network` and
//! `NetworkingConfig`), which ports it publishes, what its /etc/hosts and resolv.conf
//! say, and how it shows in inspect and ps. The plumbing itself is crates/network's.

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_network::{Attached, EndpointSpec, NetError, Networks, PortSpec};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::container::Container;
use crate::engine::{EngineError, Result};
use crate::types::{ContainerConfig, HostConfig};

impl From<NetError> for EngineError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::NotFound(m) => EngineError::NotFound(m),
            NetError::Conflict(m) => EngineError::Conflict(m),
            NetError::Invalid(m) => EngineError::Invalid(m),
            NetError::Forbidden(m) => EngineError::Forbidden(m),
            NetError::Internal(m) => EngineError::Internal(m),
        }
    }
}

/// What a container asks of one network (`EndpointsConfig` entry).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WantedEndpoint {
    #[serde(default)]
    pub network_id: String,
    #[serde(default)]
    pub ipv4: Option<String>,
    #[serde(default)]
    pub ipv6: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub links: Vec<String>,
}

/// The container's networks: the configured ones, and what is set up while it runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerNetwork {
    /// Network name → settings, in the order Docker shows them (by name).
    #[serde(default)]
    pub wanted: BTreeMap<String, WantedEndpoint>,
    #[serde(default)]
    pub attached: Option<Attached>,
}

/// Whether the network mode puts the container on bridge networks.
pub fn uses_networks(host: &HostConfig) -> bool {
    !matches!(host.network_mode.as_str(), "none" | "host")
        && !host.network_mode.starts_with("container:")
}

fn wanted_from(v: Option<&Value>) -> WantedEndpoint {
    let Some(v) = v else {
        return WantedEndpoint::default();
    };
    let s = |x: &Value| x.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let list = |x: &Value| -> Vec<String> {
        x.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    WantedEndpoint {
        network_id: String::new(),
        ipv4: s(&v["IPAMConfig"]["IPv4Address"]),
        ipv6: s(&v["IPAMConfig"]["IPv6Address"]),
        aliases: list(&v["Aliases"]),
        mac: s(&v["MacAddress"]),
        links: list(&v["Links"]),
    }
}

/// The networks a new container joins, checked against what exists.
pub fn plan(
    networks: Option<&Networks>,
    config: &ContainerConfig,
    host: &HostConfig,
    endpoints: Option<&Value>,
) -> Result<BTreeMap<String, WantedEndpoint>> {
    let mut out = BTreeMap::new();
    let Some(nets) = networks else {
        return Ok(out);
    };
    if !uses_networks(host) || config.network_disabled == Some(true) {
        return Ok(out);
    }
    let eps = endpoints
        .and_then(|e| e.get("EndpointsConfig"))
        .and_then(Value::as_object);
    let mode = host.network_mode.as_str();
    let primary = match mode {
        "" | "default" | "bridge" => match nets.get("bridge") {
            Ok(n) if n.default_bridge => Some(n),
            Ok(_) | Err(_) if mode == "bridge" => {
                return Err(EngineError::NotFound("network bridge not found".into()))
            }
            _ => None,
        },
        name => Some(
            nets.get(name)
                .map_err(|_| EngineError::NotFound(format!("network {name} not found")))?,
        ),
    };
    if let Some(n) = &primary {
        let mut w = wanted_from(eps.and_then(|e| e.get(&n.name).or_else(|| e.get(mode))));
        w.network_id = n.id.clone();
        if n.default_bridge {
            if w.ipv4.is_some() || w.ipv6.is_some() {
                return Err(EngineError::Invalid(
                    "user specified IP address is supported on user defined networks only".into(),
                ));
            }
            if !w.aliases.is_empty() {
                return Err(EngineError::Invalid(
                    "network-scoped alias is supported only for containers in user defined networks"
                        .into(),
                ));
            }
        }
        out.insert(n.name.clone(), w);
    }
    for (key, v) in eps.into_iter().flatten() {
        // The CLI names the primary network by the mode ("default") too.
        if key == mode || (key == "default" && primary.is_some()) {
            continue;
        }
        let n = nets
            .get(key)
            .map_err(|_| EngineError::NotFound(format!("network {key} not found")))?;
        out.entry(n.name.clone()).or_insert_with(|| WantedEndpoint {
            network_id: n.id.clone(),
            ..wanted_from(Some(v))
        });
    }
    for w in out.values() {
        if let Some(ip) = &w.ipv4 {
            if ip.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(EngineError::Invalid(format!("invalid IPv4 address: {ip}")));
            }
        }
    }
    Ok(out)
}

/// `HostConfig.PortBindings` and `-P`, as ports to publish.
pub fn port_specs(config: &ContainerConfig, host: &HostConfig) -> Result<Vec<PortSpec>> {
    let mut out = Vec::new();
    let bindings = host.port_bindings.as_ref().and_then(Value::as_object);
    let split = |key: &str| -> Result<(u16, String)> {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let port = port
            .parse::<u16>()
            .map_err(|_| EngineError::Invalid(format!("invalid port specification: {key:?}")))?;
        let proto = proto.to_ascii_lowercase();
        if proto != "tcp" && proto != "udp" {
            return Err(EngineError::Invalid(format!(
                "invalid proto: {proto} in {key:?}"
            )));
        }
        Ok((port, proto))
    };
    for (key, list) in bindings.into_iter().flatten() {
        let (container_port, proto) = split(key)?;
        let list = list.as_array().cloned().unwrap_or_default();
        let list = if list.is_empty() {
            vec![json!({})]
        } else {
            list
        };
        for b in list {
            let host_ip = match b["HostIp"].as_str().unwrap_or("") {
                "" => None,
                s => Some(s.parse::<IpAddr>().map_err(|_| {
                    EngineError::Invalid(format!("invalid IP address in port binding: {s}"))
                })?),
            };
            let hp = b["HostPort"].as_str().unwrap_or("");
            let host_port = match hp {
                "" => 0,
                s => {
                    let first = s.split('-').next().unwrap_or(s);
                    first
                        .parse::<u16>()
                        .map_err(|_| EngineError::Invalid(format!("invalid host port: {s:?}")))?
                }
            };
            out.push(PortSpec {
                container_port,
                proto: proto.clone(),
                host_ip,
                host_port,
            });
        }
    }
    if host.publish_all_ports {
        let mut exposed: Vec<&String> =
            config.exposed_ports.iter().flat_map(|m| m.keys()).collect();
        exposed.sort();
        for key in exposed {
            let (container_port, proto) = split(key)?;
            if !out
                .iter()
                .any(|p| p.container_port == container_port && p.proto == proto)
            {
                out.push(PortSpec {
                    container_port,
                    proto,
                    host_ip: None,
                    host_port: 0,
                });
            }
        }
    }
    Ok(out)
}

/// The endpoint specs of a container's wanted networks.
pub fn endpoint_specs(
    wanted: &BTreeMap<String, WantedEndpoint>,
    primary: &str,
) -> Result<Vec<EndpointSpec>> {
    let mut names: Vec<&String> = wanted.keys().collect();
    // The network of --network first: it gives eth0 and the default route.
    names.sort_by_key(|n| (n.as_str() != primary, n.as_str().to_string()));
    let mut out = Vec::new();
    for name in names {
        let w = &wanted[name];
        out.push(EndpointSpec {
            network: name.clone(),
            ipv4: match &w.ipv4 {
                Some(s) => Some(
                    s.parse()
                        .map_err(|_| EngineError::Invalid(format!("invalid IPv4 address: {s}")))?,
                ),
                None => None,
            },
            ipv6: w.ipv6.as_deref().and_then(|s| s.parse().ok()),
            aliases: w.aliases.clone(),
            mac: w.mac.clone(),
        });
    }
    Ok(out)
}

/// The primary network's name for a network mode.
pub fn primary_name(host: &HostConfig) -> &str {
    match host.network_mode.as_str() {
        "" | "default" => "bridge",
        m => m,
    }
}

/// `NetworkSettings.Networks`: each configured network, with its endpoint while running.
fn networks_json(c: &Container, networks: Option<&Networks>) -> serde_json::Map<String, Value> {
    let att = c.network.attached.as_ref();
    let mut nets = serde_json::Map::new();
    for (name, w) in &c.network.wanted {
        let ep = att.and_then(|a| a.endpoints.iter().find(|e| &e.network_name == name));
        let network_id = ep
            .map(|e| e.network_id.clone())
            .unwrap_or_else(|| w.network_id.clone());
        let ipam = if w.ipv4.is_some() || w.ipv6.is_some() {
            json!({"IPv4Address": w.ipv4.clone().unwrap_or_default(), "IPv6Address": w.ipv6.clone().unwrap_or_default()})
        } else {
            Value::Null
        };
        nets.insert(
            name.clone(),
            json!({
                "IPAMConfig": ipam,
                "Links": if w.links.is_empty() { Value::Null } else { json!(w.links) },
                "Aliases": if w.aliases.is_empty() { Value::Null } else { json!(w.aliases) },
                "MacAddress": ep.map(|e| e.mac.clone()).unwrap_or_default(),
                "DriverOpts": null,
                "GwPriority": 0,
                "NetworkID": network_id,
                "EndpointID": ep.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
                "Gateway": ep.and_then(|e| e.gateway).map(|g| g.to_string()).unwrap_or_default(),
                "IPAddress": ep.and_then(|e| e.ip).map(|g| g.to_string()).unwrap_or_default(),
                "IPPrefixLen": ep.map(|e| e.prefix).unwrap_or(0),
                "IPv6Gateway": ep.and_then(|e| e.ipv6_gateway).map(|g| g.to_string()).unwrap_or_default(),
                "GlobalIPv6Address": ep.and_then(|e| e.ipv6).map(|g| g.to_string()).unwrap_or_default(),
                "GlobalIPv6PrefixLen": ep.map(|e| e.ipv6_prefix).unwrap_or(0),
                "DNSNames": ep.filter(|_| name != "bridge").map(|e| json!(e.dns_names)).unwrap_or(Value::Null),
            }),
        );
    }
    if !uses_networks(&c.host_config) {
        let mode = c.host_config.network_mode.as_str();
        if mode == "host" || mode == "none" {
            let id = networks
                .and_then(|n| n.get(mode).ok())
                .map(|n| n.id)
                .unwrap_or_default();
            nets.insert(
                mode.to_string(),
                json!({"IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "",
                       "DriverOpts": null, "NetworkID": id, "EndpointID": "", "Gateway": "",
                       "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                       "GlobalIPv6PrefixLen": 0, "DNSNames": null}),
            );
        }
    }
    nets
}

/// `NetworkSettings` of inspect.
pub fn settings_json(c: &Container, networks: Option<&Networks>) -> Value {
    let att = c.network.attached.as_ref();
    let nets = networks_json(c, networks);
    let mut ports = serde_json::Map::new();
    for key in c.config.exposed_ports.iter().flat_map(|m| m.keys()) {
        ports.insert(key.clone(), Value::Null);
    }
    if let Some(a) = att {
        for p in &a.ports {
            let key = format!("{}/{}", p.container_port, p.proto);
            let entry = ports.entry(key).or_insert_with(|| json!([]));
            if !entry.is_array() {
                *entry = json!([]);
            }
            if let Some(list) = entry.as_array_mut() {
                list.push(
                    json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}),
                );
            }
        }
    } else if let Some(b) = c
        .host_config
        .port_bindings
        .as_ref()
        .and_then(Value::as_object)
    {
        for k in b.keys() {
            ports.entry(k.clone()).or_insert(Value::Null);
        }
    }
    let default_ep = att.and_then(|a| a.endpoints.iter().find(|e| e.network_name == "bridge"));
    json!({
        "Bridge": "",
        "SandboxID": att.map(|a| a.sandbox_key.rsplit('/').next().unwrap_or("").to_string()).unwrap_or_default(),
        "SandboxKey": att.map(|a| a.sandbox_key.clone()).unwrap_or_default(),
        "Ports": if c.state.running || !ports.is_empty() { Value::Object(ports) } else { json!({}) },
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": default_ep.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
        "Gateway": default_ep.and_then(|e| e.gateway).map(|g| g.to_string()).unwrap_or_default(),
        "GlobalIPv6Address": default_ep.and_then(|e| e.ipv6).map(|g| g.to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": default_ep.map(|e| e.ipv6_prefix).unwrap_or(0),
        "IPAddress": default_ep.and_then(|e| e.ip).map(|g| g.to_string()).unwrap_or_default(),
        "IPPrefixLen": default_ep.map(|e| e.prefix).unwrap_or(0),
        "IPv6Gateway": default_ep.and_then(|e| e.ipv6_gateway).map(|g| g.to_string()).unwrap_or_default(),
        "MacAddress": default_ep.map(|e| e.mac.clone()).unwrap_or_default(),
        "Networks": nets,
    })
}

/// `Ports` of a ps entry: published ones, then exposed ones without a binding.
pub fn ps_ports(c: &Container) -> Value {
    let mut out = Vec::new();
    if let Some(a) = &c.network.attached {
        for p in &a.ports {
            out.push(
                json!({"IP": p.host_ip.to_string(), "PrivatePort": p.container_port,
                            "PublicPort": p.host_port, "Type": p.proto}),
            );
        }
    }
    for key in c.config.exposed_ports.iter().flat_map(|m| m.keys()) {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let published = c.network.attached.as_ref().is_some_and(|a| {
            a.ports
                .iter()
                .any(|p| p.container_port == port && p.proto == proto)
        });
        if !published {
            out.push(json!({"PrivatePort": port, "Type": proto}));
        }
    }
    Value::Array(out)
}

/// `NetworkSettings.Networks` of a ps entry.
pub fn ps_networks(c: &Container, networks: Option<&Networks>) -> Value {
    Value::Object(networks_json(c, networks))
}

impl crate::engine::Engine {
    fn nets(&self) -> Result<&std::sync::Arc<Networks>> {
        self.networks()
            .ok_or_else(|| EngineError::Internal("networking is not available".into()))
    }

    /// `POST /networks/{id}/connect`.
    pub fn connect_network(
        &self,
        network: &str,
        container: &str,
        config: Option<&Value>,
    ) -> Result<()> {
        let nets = self.nets()?;
        let net = nets.get(network)?;
        let c = self.get(container)?;
        if !uses_networks(&c.host_config) {
            return Err(EngineError::Forbidden(
                "container sharing network namespace with another container or host cannot be connected to any other network".into(),
            ));
        }
        if net.driver != "bridge" {
            return Err(EngineError::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        if c.network.wanted.contains_key(&net.name) {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                c.name.trim_start_matches('/'),
                net.name
            )));
        }
        let mut w = wanted_from(config);
        w.network_id = net.id.clone();
        if c.state.running {
            let spec = endpoint_specs(&BTreeMap::from([(net.name.clone(), w.clone())]), &net.name)?;
            let ep = nets.connect(&c.id, &spec[0])?;
            self.update_record(&c.id, |c| {
                c.network.wanted.insert(net.name.clone(), w);
                if let Some(a) = c.network.attached.as_mut() {
                    a.endpoints.push(ep);
                }
            });
        } else {
            self.update_record(&c.id, |c| {
                c.network.wanted.insert(net.name.clone(), w);
            });
        }
        self.network_event(&net, "connect", &c.id);
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub fn disconnect_network(&self, network: &str, container: &str) -> Result<()> {
        let nets = self.nets()?;
        let net = nets.get(network)?;
        let c = self.get(container)?;
        if !c.network.wanted.contains_key(&net.name) {
            return Err(EngineError::Forbidden(format!(
                "container {} is not connected to network {}",
                c.id, net.name
            )));
        }
        if c.state.running {
            nets.disconnect(&c.id, &net.id)?;
        }
        self.update_record(&c.id, |c| {
            c.network.wanted.remove(&net.name);
            if let Some(a) = c.network.attached.as_mut() {
                a.endpoints.retain(|e| e.network_id != net.id);
            }
        });
        self.network_event(&net, "disconnect", &c.id);
        Ok(())
    }

    /// The containers of `--link name:alias` that have an address now: (alias, the
    /// container, its address).
    pub(crate) fn links_of(&self, c: &Container) -> Vec<(String, Container, IpAddr)> {
        let mut out = Vec::new();
        for link in &c.host_config.links {
            let (name, alias) = link.split_once(':').unwrap_or((link, link));
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            let Ok(other) = self.get(name.trim_start_matches('/')) else {
                continue;
            };
            let ip = other
                .network
                .attached
                .as_ref()
                .and_then(|a| a.endpoints.iter().find_map(|e| e.ip));
            if let Some(ip) = ip {
                out.push((alias.to_string(), other, ip));
            }
        }
        out
    }

    /// The `<ALIAS>_PORT_…`, `<ALIAS>_NAME` and `<ALIAS>_ENV_…` variables of legacy links,
    /// as Docker still sets them on the default bridge.
    pub(crate) fn link_env(&self, c: &Container) -> Vec<String> {
        let mut out = Vec::new();
        let me = c.name.trim_start_matches('/');
        for (alias, other, ip) in self.links_of(c) {
            let prefix: String = alias
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() {
                        ch.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            let mut ports: Vec<(u16, String)> = other
                .config
                .exposed_ports
                .iter()
                .flat_map(|m| m.keys())
                .filter_map(|k| {
                    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
                    p.parse().ok().map(|p| (p, proto.to_string()))
                })
                .collect();
            ports.sort();
            if let Some((p, proto)) = ports.first() {
                out.push(format!("{prefix}_PORT={proto}://{ip}:{p}"));
            }
            for (p, proto) in &ports {
                let key = format!("{prefix}_PORT_{p}_{}", proto.to_uppercase());
                out.push(format!("{key}={proto}://{ip}:{p}"));
                out.push(format!("{key}_ADDR={ip}"));
                out.push(format!("{key}_PORT={p}"));
                out.push(format!("{key}_PROTO={proto}"));
            }
            out.push(format!("{prefix}_NAME=/{me}/{alias}"));
            for e in &other.config.env {
                if let Some((k, v)) = e.split_once('=') {
                    if k != "HOME" && k != "PATH" && k != "HOSTNAME" {
                        out.push(format!("{prefix}_ENV_{k}={v}"));
                    }
                }
            }
        }
        out
    }

    pub fn network_event(&self, net: &berth_network::Network, action: &str, container: &str) {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), net.name.clone());
        attrs.insert("type".to_string(), net.driver.clone());
        if !container.is_empty() {
            attrs.insert("container".to_string(), container.to_string());
        }
        self.events.publish("network", action, &net.id, attrs);
    }
}
