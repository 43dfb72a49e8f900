//! Docker's network model for berthd: a bridge per network, a veth pair per container
//! endpoint, addresses from IPAM, NAT, filtering and port publishing in one nftables table
//! per engine instance, and the embedded DNS resolver of user-defined networks.
//!
//! [`Networks`] is the one owner of this state in berthd. Network definitions live as
//! one JSON file each under `<data-root>/network/networks/` (written atomically); what a
//! running container holds (its addresses, veths, published ports) is recorded by the
//! engine in the container's record and handed back at start-up through
//! [`Networks::restore`], so a restart neither loses nor hands out an address twice.

pub mod dns;
pub mod ipam;
pub mod netlink;
pub mod netns;
pub mod nft;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use ipam::{Allocator, Cidr, Pool};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = NetError> = std::result::Result<T, E>;

fn internal(what: &str, e: impl std::fmt::Display) -> NetError {
    NetError::Internal(format!("{what}: {e}"))
}

/// The daemon's network settings (daemon.json keys of the same names).
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// `<data-root>/network`.
    pub data_dir: PathBuf,
    /// `<exec-root>/netns`: pinned namespaces of running containers.
    pub netns_dir: PathBuf,
    /// `bridge`: the default bridge's device; None for `"bridge": "none"`.
    pub bridge: Option<String>,
    /// `bip`: the default bridge's gateway address and prefix, e.g. 172.20.0.1/16.
    pub bip: Option<String>,
    /// `fixed-cidr`: where the default bridge hands out addresses.
    pub fixed_cidr: Option<String>,
    pub pools: Vec<Pool>,
    pub mtu: Option<u32>,
    pub ip_masq: bool,
    pub ip_forward: bool,
    pub icc: bool,
    pub ipv6: bool,
    pub fixed_cidr_v6: Option<String>,
    /// The nftables table of this instance (`berth-…`).
    pub table: String,
    /// Where the embedded DNS forwards names that are not containers'.
    pub dns_upstreams: Vec<SocketAddr>,
}

/// One IPAM config entry of a network.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Subnet {
    pub subnet: Cidr,
    pub gateway: IpAddr,
    #[serde(default)]
    pub ip_range: Option<Cidr>,
}

/// A network's definition, persisted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created: String,
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// The bridge device (bridge driver only).
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub icc: bool,
    #[serde(default)]
    pub masquerade: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The default `bridge` network (legacy links, no embedded DNS).
    #[serde(default)]
    pub default_bridge: bool,
}

impl Network {
    pub fn predefined(&self) -> bool {
        self.default_bridge || self.driver == "host" || self.driver == "null"
    }

    /// Whether containers on it resolve each other by name (user-defined bridges).
    pub fn has_dns(&self) -> bool {
        self.driver == "bridge" && !self.default_bridge
    }
}

/// A container's attachment to one network, as the engine records it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub network_id: String,
    pub network_name: String,
    pub endpoint_id: String,
    pub ip: Option<IpAddr>,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub ipv6: Option<IpAddr>,
    #[serde(default)]
    pub ipv6_prefix: u8,
    #[serde(default)]
    pub ipv6_gateway: Option<IpAddr>,
    pub mac: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// The host end of its veth pair.
    pub veth: String,
    /// Its name inside the container (eth0, eth1, …).
    pub ifname: String,
}

/// What a container asks of one network.
#[derive(Clone, Debug, Default)]
pub struct EndpointSpec {
    pub network: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<IpAddr>,
    pub aliases: Vec<String>,
    pub mac: Option<String>,
}

/// A port to publish; `host_port` 0 means any free port.
#[derive(Clone, Debug, PartialEq)]
pub struct PortSpec {
    pub container_port: u16,
    pub proto: String,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
}

/// A published port, as recorded and shown (`docker port`, ps).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Published {
    pub container_port: u16,
    pub proto: String,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

/// A container being given its network.
pub struct AttachSpec<'a> {
    pub container_id: &'a str,
    /// Without the leading '/'.
    pub name: &'a str,
    pub networks: Vec<EndpointSpec>,
    pub ports: Vec<PortSpec>,
}

/// What [`Networks::attach`] set up.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Attached {
    pub sandbox_key: String,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<Published>,
}

/// A running container's share of the state.
struct Live {
    name: String,
    netns: PathBuf,
    endpoints: Vec<Endpoint>,
    ports: Vec<Published>,
    /// Sockets bound to the published host ports, so nothing else can take them.
    _reservations: Vec<Reservation>,
}

/// A bound socket, held only so that no one else can bind the port.
type Reservation = std::os::fd::OwnedFd;

#[derive(Default)]
struct State {
    networks: BTreeMap<String, Network>,
    alloc: HashMap<String, Vec<Allocator>>,
    live: HashMap<String, Live>,
}

impl State {
    fn find(&self, key: &str) -> Result<&Network> {
        if let Some(n) = self.networks.get(key) {
            return Ok(n);
        }
        if let Some(n) = self.networks.values().find(|n| n.name == key) {
            return Ok(n);
        }
        let by_prefix: Vec<&Network> = self
            .networks
            .values()
            .filter(|n| !key.is_empty() && n.id.starts_with(key))
            .collect();
        match by_prefix.as_slice() {
            [one] => Ok(one),
            [] => Err(NetError::NotFound(format!("network {key} not found"))),
            _ => Err(NetError::Invalid(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                by_prefix.len()
            ))),
        }
    }

    /// Whether any of these endpoints is on a network with the embedded DNS.
    fn serves_dns(&self, endpoints: &[Endpoint]) -> bool {
        endpoints.iter().any(|e| {
            self.networks
                .get(&e.network_id)
                .is_some_and(Network::has_dns)
        })
    }

    fn users_of(&self, network_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .live
            .iter()
            .filter(|(_, l)| l.endpoints.iter().any(|e| e.network_id == network_id))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// The resolver of the embedded DNS: names of the containers that share a user-defined
/// network with the asking one.
struct Names(Arc<Mutex<State>>);

impl dns::Resolver for Names {
    fn lookup(&self, scope: &str, name: &str) -> Option<Vec<IpAddr>> {
        let st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let me = st.live.get(scope)?;
        let mut out = Vec::new();
        let mut known = false;
        for mine in me.endpoints.iter() {
            let Some(net) = st.networks.get(&mine.network_id) else {
                continue;
            };
            if !net.has_dns() {
                continue;
            }
            let qualified = format!(".{}", net.name.to_lowercase());
            let bare = name.strip_suffix(qualified.as_str()).unwrap_or(name);
            for l in st.live.values() {
                for e in l
                    .endpoints
                    .iter()
                    .filter(|e| e.network_id == mine.network_id)
                {
                    if e.dns_names.iter().any(|n| n.eq_ignore_ascii_case(bare)) {
                        known = true;
                        out.extend(e.ip);
                        out.extend(e.ipv6);
                    }
                }
            }
        }
        known.then_some(out)
    }

    fn reverse(&self, scope: &str, addr: IpAddr) -> Option<String> {
        let st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let me = st.live.get(scope)?;
        for mine in &me.endpoints {
            let net = st.networks.get(&mine.network_id)?;
            if !net.has_dns() {
                continue;
            }
            for l in st.live.values() {
                for e in l
                    .endpoints
                    .iter()
                    .filter(|e| e.network_id == mine.network_id)
                {
                    if e.ip == Some(addr) || e.ipv6 == Some(addr) {
                        return Some(format!("{}.{}", l.name, net.name));
                    }
                }
            }
        }
        None
    }
}

pub struct Networks {
    cfg: NetConfig,
    state: Arc<Mutex<State>>,
    dns: Option<dns::DnsService>,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .map_err(|e| internal("read /dev/urandom", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn now() -> String {
    berth_runtime::state::now_rfc3339()
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn sysctl(path: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

/// A locally administered MAC derived from the IPv4 address, as Docker's bridge does.
fn mac_for(ip: Option<IpAddr>) -> [u8; 6] {
    match ip {
        Some(IpAddr::V4(a)) => {
            let o = a.octets();
            [0x02, 0x42, o[0], o[1], o[2], o[3]]
        }
        _ => {
            let r = random_hex(4).unwrap_or_else(|_| "00000001".into());
            let b = |i: usize| u8::from_str_radix(&r[i * 2..i * 2 + 2], 16).unwrap_or(0);
            [0x02, 0x42, b(0), b(1), b(2), b(3)]
        }
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    parts.try_into().ok()
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The host end's name: stable for a (container, network) pair, so that a restart finds
/// what a crash left behind.
fn veth_name(container_id: &str, network_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain(network_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("veth{:07x}", h & 0xfff_ffff)
}

impl Networks {
    /// Loads the networks, sets up the default bridge and the instance's table.
    pub fn open(cfg: NetConfig) -> Result<Networks> {
        let dir = cfg.data_dir.join("networks");
        std::fs::create_dir_all(&dir).map_err(|e| internal("create network dir", e))?;
        std::fs::create_dir_all(&cfg.netns_dir).map_err(|e| internal("create netns dir", e))?;
        // Which table is this instance's, for the operator (and the tests' cleanup).
        write_atomic(&cfg.data_dir.join("table"), cfg.table.as_bytes())
            .map_err(|e| internal("write the table name", e))?;
        let mut st = State::default();
        for entry in std::fs::read_dir(&dir).map_err(|e| internal("read network dir", e))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<Network>(&text) {
                Ok(n) => {
                    st.networks.insert(n.id.clone(), n);
                }
                Err(e) => eprintln!(
                    "berthd: skipping unreadable network {}: {e}",
                    path.display()
                ),
            }
        }
        let state = Arc::new(Mutex::new(st));
        let dns = dns::DnsService::start(Arc::new(Names(state.clone())))
            .map_err(|e| internal("start the embedded DNS", e))?;
        let nets = Networks {
            cfg,
            state,
            dns: Some(dns),
        };
        nets.ensure_predefined()?;
        if nets.cfg.ip_forward {
            let _ = sysctl("/proc/sys/net/ipv4/ip_forward", "1");
            if nets.cfg.ipv6 {
                let _ = sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1");
            }
        }
        {
            let st = nets.lock();
            for n in st.networks.values().filter(|n| n.driver == "bridge") {
                nets.ensure_bridge(n)?;
            }
        }
        {
            let mut st = nets.lock();
            let ids: Vec<String> = st.networks.keys().cloned().collect();
            for id in ids {
                let subnets = st.networks[&id].subnets.clone();
                let allocs = subnets
                    .iter()
                    .map(|s| {
                        let mut a = Allocator::default();
                        a.reserve(&s.subnet, s.gateway);
                        a
                    })
                    .collect();
                st.alloc.insert(id, allocs);
            }
        }
        nets.sync_rules()?;
        Ok(nets)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save_network(&self, n: &Network) -> Result<()> {
        let path = self
            .cfg
            .data_dir
            .join("networks")
            .join(format!("{}.json", n.id));
        let text = serde_json::to_vec_pretty(n).map_err(|e| internal("encode network", e))?;
        write_atomic(&path, &text).map_err(|e| internal("write network", e))
    }

    /// Subnets already used: by our networks, and by the host's routes (other than the
    /// ones on `own_bridge`).
    fn taken_subnets(&self, st: &State, own_bridge: Option<&str>) -> Vec<Cidr> {
        let mut taken: Vec<Cidr> = st
            .networks
            .values()
            .filter(|n| Some(n.bridge.as_str()) != own_bridge)
            .flat_map(|n| n.subnets.iter().map(|s| s.subnet))
            .collect();
        for (iface, route) in ipam::host_routes() {
            if Some(iface.as_str()) != own_bridge {
                taken.push(route);
            }
        }
        taken
    }

    /// `bridge`, `host` and `none`, as every Docker daemon lists them.
    fn ensure_predefined(&self) -> Result<()> {
        let mut st = self.lock();
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !st.networks.values().any(|n| n.name == name) {
                let n = Network {
                    id: random_hex(32)?,
                    name: name.into(),
                    driver: driver.into(),
                    created: now(),
                    subnets: vec![],
                    bridge: String::new(),
                    internal: false,
                    attachable: false,
                    enable_ipv6: false,
                    icc: false,
                    masquerade: false,
                    mtu: None,
                    options: BTreeMap::new(),
                    labels: BTreeMap::new(),
                    default_bridge: false,
                };
                self.save_network(&n)?;
                st.networks.insert(n.id.clone(), n);
            }
        }
        let existing = st.networks.values().find(|n| n.default_bridge).cloned();
        let Some(device) = self.cfg.bridge.clone() else {
            if let Some(old) = existing {
                st.networks.remove(&old.id);
                let _ = std::fs::remove_file(
                    self.cfg
                        .data_dir
                        .join("networks")
                        .join(format!("{}.json", old.id)),
                );
            }
            return Ok(());
        };
        let subnet = if let Some(bip) = &self.cfg.bip {
            let c: Cidr = bip
                .parse()
                .map_err(|e| NetError::Invalid(format!("bip: {e}")))?;
            Subnet {
                subnet: c.network(),
                gateway: c.addr,
                ip_range: None,
            }
        } else if let Some(old) = existing
            .as_ref()
            .filter(|o| o.bridge == device)
            .and_then(|o| o.subnets.first().cloned())
        {
            old
        } else {
            let taken = self.taken_subnets(&st, Some(&device));
            let taken: Vec<Cidr> = taken
                .into_iter()
                .filter(|c| {
                    !existing
                        .as_ref()
                        .is_some_and(|o| o.subnets.iter().any(|s| s.subnet == *c))
                })
                .collect();
            let s = ipam::pick_subnet(&self.cfg.pools, &taken).ok_or_else(|| {
                NetError::Invalid(
                    "could not find a free subnet for the default bridge in default-address-pools; set bip"
                        .into(),
                )
            })?;
            Subnet {
                subnet: s,
                gateway: s.nth(1).unwrap_or(s.addr),
                ip_range: None,
            }
        };
        let ip_range = match &self.cfg.fixed_cidr {
            Some(f) => {
                let c: Cidr = f
                    .parse()
                    .map_err(|e| NetError::Invalid(format!("fixed-cidr: {e}")))?;
                if !subnet.subnet.contains(c.addr) {
                    return Err(NetError::Invalid(format!(
                        "fixed-cidr {c} is not inside the bridge's subnet {}",
                        subnet.subnet
                    )));
                }
                Some(c.network())
            }
            None => None,
        };
        let mut subnets = vec![Subnet { ip_range, ..subnet }];
        if self.cfg.ipv6 {
            if let Some(v6) = &self.cfg.fixed_cidr_v6 {
                let c: Cidr = v6
                    .parse()
                    .map_err(|e| NetError::Invalid(format!("fixed-cidr-v6: {e}")))?;
                let net = c.network();
                subnets.push(Subnet {
                    subnet: net,
                    gateway: net.nth(1).unwrap_or(net.addr),
                    ip_range: None,
                });
            }
        }
        let mut options = BTreeMap::new();
        options.insert(
            "com.docker.network.bridge.default_bridge".into(),
            "true".into(),
        );
        options.insert(
            "com.docker.network.bridge.enable_icc".into(),
            self.cfg.icc.to_string(),
        );
        options.insert(
            "com.docker.network.bridge.enable_ip_masquerade".into(),
            self.cfg.ip_masq.to_string(),
        );
        options.insert(
            "com.docker.network.bridge.host_binding_ipv4".into(),
            "0.0.0.0".into(),
        );
        options.insert("com.docker.network.bridge.name".into(), device.clone());
        options.insert(
            "com.docker.network.driver.mtu".into(),
            self.cfg.mtu.unwrap_or(1500).to_string(),
        );
        let n = Network {
            id: existing
                .as_ref()
                .map(|o| o.id.clone())
                .map_or_else(|| random_hex(32), Ok)?,
            name: "bridge".into(),
            driver: "bridge".into(),
            created: existing
                .as_ref()
                .map(|o| o.created.clone())
                .unwrap_or_else(now),
            subnets,
            bridge: device,
            internal: false,
            attachable: false,
            enable_ipv6: self.cfg.ipv6,
            icc: self.cfg.icc,
            masquerade: self.cfg.ip_masq,
            mtu: self.cfg.mtu,
            options,
            labels: BTreeMap::new(),
            default_bridge: true,
        };
        self.save_network(&n)?;
        st.networks.insert(n.id.clone(), n);
        Ok(())
    }

    /// The bridge device of a network, up, with its gateway addresses.
    fn ensure_bridge(&self, n: &Network) -> Result<()> {
        let mut nl = netlink::Netlink::open().map_err(|e| internal("netlink", e))?;
        let index = match netlink::link_index(&n.bridge) {
            Some(i) => i,
            None => {
                match nl.create_bridge(&n.bridge, n.mtu) {
                    Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                        return Err(internal(&format!("create bridge {}", n.bridge), e))
                    }
                    _ => {}
                }
                netlink::link_index(&n.bridge).ok_or_else(|| {
                    NetError::Internal(format!("bridge {} vanished after creation", n.bridge))
                })?
            }
        };
        for s in &n.subnets {
            if s.subnet.is_v4() || n.enable_ipv6 {
                nl.add_address(index, s.gateway, s.subnet.prefix)
                    .map_err(|e| internal(&format!("address {} on {}", s.gateway, n.bridge), e))?;
            }
        }
        nl.set_up(index)
            .map_err(|e| internal(&format!("set {} up", n.bridge), e))?;
        // Lets DNAT'd traffic from the host's loopback reach containers (the nft guard
        // chain keeps containers from using it the other way).
        let _ = sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", n.bridge),
            "1",
        );
        Ok(())
    }

    /// Writes the instance's nftables table from the current state.
    pub fn sync_rules(&self) -> Result<()> {
        let st = self.lock();
        self.sync_rules_locked(&st)
    }

    fn sync_rules_locked(&self, st: &State) -> Result<()> {
        let nets: Vec<nft::RuleNet> = st
            .networks
            .values()
            .filter(|n| n.driver == "bridge")
            .map(|n| nft::RuleNet {
                bridge: n.bridge.clone(),
                subnets: n.subnets.iter().map(|s| s.subnet).collect(),
                internal: n.internal,
                masquerade: n.masquerade,
            })
            .collect();
        let mut ports = Vec::new();
        let mut ids: Vec<&String> = st.live.keys().collect();
        ids.sort();
        for id in ids {
            let l = &st.live[id];
            let Some(ep) = l.endpoints.iter().find(|e| e.ip.is_some()) else {
                continue;
            };
            let Some(cip) = ep.ip else { continue };
            for p in &l.ports {
                ports.push(nft::RulePort {
                    proto: p.proto.clone(),
                    host_ip: (!p.host_ip.is_unspecified()).then_some(p.host_ip),
                    host_port: p.host_port,
                    container_ip: cip,
                    container_port: p.container_port,
                });
            }
        }
        if nets.is_empty() {
            // No bridge (`"bridge": "none"`, no user networks): no table at all.
            return nft::delete(&self.cfg.table).map_err(|e| internal("nftables", e));
        }
        let text = nft::render(&self.cfg.table, &nets, &ports);
        nft::apply(&self.cfg.table, &text).map_err(|e| internal("nftables", e))
    }

    /// Removes everything of this instance from the host's network: used by tests and
    /// by a daemon told to tear down (not at a normal exit, which keeps containers live).
    pub fn teardown(&self) -> Result<()> {
        let ids: Vec<String> = self.lock().live.keys().cloned().collect();
        for id in ids {
            self.release(&id);
        }
        let st = self.lock();
        if let Ok(mut nl) = netlink::Netlink::open() {
            for n in st.networks.values().filter(|n| n.driver == "bridge") {
                let _ = netlink::delete_link_named(&mut nl, &n.bridge);
            }
        }
        nft::delete(&self.cfg.table).map_err(|e| internal("nftables", e))
    }

    pub fn list(&self) -> Vec<Network> {
        let st = self.lock();
        let mut v: Vec<Network> = st.networks.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn get(&self, key: &str) -> Result<Network> {
        self.lock().find(key).cloned()
    }

    /// Container ids with an endpoint on the network.
    pub fn users(&self, network_id: &str) -> Vec<String> {
        self.lock().users_of(network_id)
    }

    /// Docker's `GET /networks/{id}` body.
    pub fn inspect(&self, key: &str) -> Result<Value> {
        let st = self.lock();
        let n = st.find(key)?;
        let mut containers = serde_json::Map::new();
        for id in st.users_of(&n.id) {
            let l = &st.live[&id];
            for e in l.endpoints.iter().filter(|e| e.network_id == n.id) {
                containers.insert(
                    id.clone(),
                    json!({
                        "Name": l.name,
                        "EndpointID": e.endpoint_id,
                        "MacAddress": e.mac,
                        "IPv4Address": e.ip.map(|ip| format!("{ip}/{}", e.prefix)).unwrap_or_default(),
                        "IPv6Address": e.ipv6.map(|ip| format!("{ip}/{}", e.ipv6_prefix)).unwrap_or_default(),
                    }),
                );
            }
        }
        Ok(network_json(n, Some(Value::Object(containers))))
    }

    /// `POST /networks/create`.
    pub fn create(&self, req: CreateRequest) -> Result<Network> {
        let name = req.name.trim().to_string();
        if name.is_empty() {
            return Err(NetError::Invalid("network name must not be empty".into()));
        }
        let driver = if req.driver.is_empty() {
            "bridge".to_string()
        } else {
            req.driver.clone()
        };
        if driver != "bridge" {
            return Err(NetError::NotFound(format!("plugin \"{driver}\" not found")));
        }
        let mut st = self.lock();
        if st.networks.values().any(|n| n.name == name) {
            return Err(NetError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let id = random_hex(32)?;
        let taken = self.taken_subnets(&st, None);
        let mut subnets = Vec::new();
        for c in req.ipam.config.iter() {
            let subnet: Cidr = match &c.subnet {
                Some(s) => s.parse().map_err(|e: String| {
                    NetError::Invalid(format!("invalid network config:\ninvalid subnet {s}: {e}"))
                })?,
                None => continue,
            };
            let subnet = subnet.network();
            if let Some(other) = taken.iter().find(|t| t.overlaps(&subnet)) {
                return Err(NetError::Forbidden(format!(
                    "invalid pool request: Pool overlaps with other one on this address space ({other})"
                )));
            }
            if subnets.iter().any(|s: &Subnet| s.subnet.overlaps(&subnet)) {
                return Err(NetError::Invalid(format!(
                    "invalid network config:\nsubnets overlap: {subnet}"
                )));
            }
            let gateway: IpAddr = match &c.gateway {
                Some(g) if !g.is_empty() => g.parse().map_err(|_| {
                    NetError::Invalid(format!(
                        "invalid network config:\ninvalid gateway address {g}"
                    ))
                })?,
                _ => subnet.nth(1).ok_or_else(|| {
                    NetError::Invalid(format!("subnet {subnet} has no room for a gateway"))
                })?,
            };
            if !subnet.contains(gateway) {
                return Err(NetError::Invalid(format!(
                    "invalid network config:\ngateway {gateway} is not in subnet {subnet}"
                )));
            }
            let ip_range = match &c.ip_range {
                Some(r) if !r.is_empty() => {
                    let r: Cidr = r.parse().map_err(|e: String| {
                        NetError::Invalid(format!(
                            "invalid network config:\ninvalid ip-range {r}: {e}"
                        ))
                    })?;
                    if !subnet.contains(r.addr) || r.prefix < subnet.prefix {
                        return Err(NetError::Invalid(format!(
                            "invalid network config:\nip-range {r} is not inside subnet {subnet}"
                        )));
                    }
                    Some(r.network())
                }
                _ => None,
            };
            subnets.push(Subnet {
                subnet,
                gateway,
                ip_range,
            });
        }
        if !subnets.iter().any(|s| s.subnet.is_v4()) {
            let s = ipam::pick_subnet(&self.cfg.pools, &taken).ok_or_else(|| {
                NetError::Forbidden(
                    "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                )
            })?;
            subnets.insert(
                0,
                Subnet {
                    subnet: s,
                    gateway: s.nth(1).unwrap_or(s.addr),
                    ip_range: None,
                },
            );
        }
        let opt = |k: &str| req.options.get(k).map(|v| v.as_str());
        let bool_opt = |k: &str, default: bool| -> Result<bool> {
            match opt(k) {
                None => Ok(default),
                Some("true") | Some("1") => Ok(true),
                Some("false") | Some("0") => Ok(false),
                Some(v) => Err(NetError::Invalid(format!(
                    "invalid value {v:?} for option {k}"
                ))),
            }
        };
        let bridge = opt("com.docker.network.bridge.name")
            .map(str::to_string)
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.len() > 15 {
            return Err(NetError::Invalid(format!(
                "bridge name {bridge:?} is longer than 15 characters"
            )));
        }
        if st.networks.values().any(|n| n.bridge == bridge) {
            return Err(NetError::Conflict(format!(
                "bridge name {bridge} is already used by another network"
            )));
        }
        let mtu = match opt("com.docker.network.driver.mtu") {
            Some(m) => Some(
                m.parse::<u32>()
                    .map_err(|_| NetError::Invalid(format!("invalid MTU {m:?}")))?,
            ),
            None => self.cfg.mtu,
        };
        let n = Network {
            id: id.clone(),
            name,
            driver,
            created: now(),
            subnets,
            bridge,
            internal: req.internal,
            attachable: req.attachable,
            enable_ipv6: req.enable_ipv6.unwrap_or(false),
            icc: bool_opt("com.docker.network.bridge.enable_icc", true)?,
            masquerade: bool_opt("com.docker.network.bridge.enable_ip_masquerade", true)?,
            mtu,
            options: req.options.clone(),
            labels: req.labels.clone(),
            default_bridge: false,
        };
        self.ensure_bridge(&n)?;
        if let Err(e) = self.save_network(&n) {
            if let Ok(mut nl) = netlink::Netlink::open() {
                let _ = netlink::delete_link_named(&mut nl, &n.bridge);
            }
            return Err(e);
        }
        let allocs = n
            .subnets
            .iter()
            .map(|s| {
                let mut a = Allocator::default();
                a.reserve(&s.subnet, s.gateway);
                a
            })
            .collect();
        st.alloc.insert(id.clone(), allocs);
        st.networks.insert(id, n.clone());
        self.sync_rules_locked(&st)?;
        Ok(n)
    }

    /// `DELETE /networks/{id}`.
    pub fn remove(&self, key: &str) -> Result<Network> {
        let mut st = self.lock();
        let n = st.find(key)?.clone();
        if n.predefined() {
            return Err(NetError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if !st.users_of(&n.id).is_empty() {
            return Err(NetError::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        let _ = std::fs::remove_file(
            self.cfg
                .data_dir
                .join("networks")
                .join(format!("{}.json", n.id)),
        );
        st.networks.remove(&n.id);
        st.alloc.remove(&n.id);
        if let Ok(mut nl) = netlink::Netlink::open() {
            let _ = netlink::delete_link_named(&mut nl, &n.bridge);
        }
        self.sync_rules_locked(&st)?;
        Ok(n)
    }

    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        self.cfg.netns_dir.join(container_id)
    }

    /// Gives a starting container its namespace, endpoints and published ports.
    /// All or nothing: on error, nothing of it is left behind.
    pub fn attach(&self, spec: &AttachSpec) -> Result<Attached> {
        let netns = self.netns_path(spec.container_id);
        // A leftover of a crash (same id) goes first.
        self.release(spec.container_id);
        let _ = netns::remove(&netns);
        netns::create(&netns).map_err(|e| internal("create network namespace", e))?;
        let mut live = Live {
            name: spec.name.to_string(),
            netns: netns.clone(),
            endpoints: vec![],
            ports: vec![],
            _reservations: vec![],
        };
        let result = self.attach_into(spec, &mut live);
        match result {
            Ok(()) => {
                let attached = Attached {
                    sandbox_key: netns.display().to_string(),
                    endpoints: live.endpoints.clone(),
                    ports: live.ports.clone(),
                };
                let has_ports = !live.ports.is_empty();
                let mut st = self.lock();
                let dns = st.serves_dns(&live.endpoints);
                st.live.insert(spec.container_id.to_string(), live);
                if has_ports {
                    if let Err(e) = self.sync_rules_locked(&st) {
                        drop(st);
                        self.release(spec.container_id);
                        return Err(e);
                    }
                }
                drop(st);
                if dns {
                    if let Err(e) = self.serve_dns(spec.container_id, &netns) {
                        self.release(spec.container_id);
                        return Err(e);
                    }
                }
                Ok(attached)
            }
            Err(e) => {
                self.undo(&live);
                Err(e)
            }
        }
    }

    fn attach_into(&self, spec: &AttachSpec, live: &mut Live) -> Result<()> {
        for (i, want) in spec.networks.iter().enumerate() {
            let ep = self.plumb(spec.container_id, spec.name, &live.netns, want, i, i == 0)?;
            live.endpoints.push(ep);
        }
        let (published, reservations) = self.reserve_ports(&spec.ports)?;
        live.ports = published;
        live._reservations = reservations;
        Ok(())
    }

    /// Releases what a failed attach had already set up.
    fn undo(&self, live: &Live) {
        let mut st = self.lock();
        for e in &live.endpoints {
            release_ips(&mut st, e);
        }
        drop(st);
        if let Ok(mut nl) = netlink::Netlink::open() {
            for e in &live.endpoints {
                let _ = netlink::delete_link_named(&mut nl, &e.veth);
            }
        }
        let _ = netns::remove(&live.netns);
    }

    /// Allocates the addresses and wires one endpoint into the namespace.
    fn plumb(
        &self,
        container_id: &str,
        name: &str,
        netns_path: &Path,
        want: &EndpointSpec,
        index: usize,
        default_route: bool,
    ) -> Result<Endpoint> {
        let (net, ip, ipv6) = {
            let mut st = self.lock();
            let net = st.find(&want.network)?.clone();
            if net.driver != "bridge" {
                return Err(NetError::Invalid(format!(
                    "container cannot be connected to network {} (driver {})",
                    net.name, net.driver
                )));
            }
            let allocs = st.alloc.entry(net.id.clone()).or_default();
            while allocs.len() < net.subnets.len() {
                allocs.push(Allocator::default());
            }
            let mut ip = None;
            let mut ipv6 = None;
            let mut taken = Vec::new();
            for (s, a) in net.subnets.iter().zip(allocs.iter_mut()) {
                let requested = if s.subnet.is_v4() {
                    want.ipv4.map(IpAddr::V4)
                } else {
                    want.ipv6
                };
                let got = match requested {
                    Some(r) => {
                        if !s.subnet.contains(r) {
                            for (s, ip) in &taken {
                                a.release(s, *ip);
                            }
                            return Err(NetError::Invalid(format!(
                                "Invalid address {r}: It does not belong to any of this network's subnets"
                            )));
                        }
                        if !a.reserve(&s.subnet, r) {
                            return Err(NetError::Conflict(format!(
                                "Address already in use: {r} on network {}",
                                net.name
                            )));
                        }
                        r
                    }
                    None => {
                        if !s.subnet.is_v4() && !net.enable_ipv6 {
                            continue;
                        }
                        a.allocate(&s.subnet, s.ip_range.as_ref()).ok_or_else(|| {
                            NetError::Conflict(format!(
                                "no available IPv{} addresses on network {}",
                                if s.subnet.is_v4() { 4 } else { 6 },
                                net.name
                            ))
                        })?
                    }
                };
                taken.push((s.subnet, got));
                if got.is_ipv4() {
                    ip = Some((got, s.subnet.prefix, s.gateway));
                } else {
                    ipv6 = Some((got, s.subnet.prefix, s.gateway));
                }
            }
            (net, ip, ipv6)
        };
        let mac = want
            .mac
            .as_deref()
            .and_then(parse_mac)
            .unwrap_or_else(|| mac_for(ip.map(|i| i.0)));
        let mut dns_names = vec![name.to_string()];
        for a in &want.aliases {
            if !dns_names.contains(a) {
                dns_names.push(a.clone());
            }
        }
        dns_names.push(container_id.chars().take(12).collect());
        let ep = Endpoint {
            network_id: net.id.clone(),
            network_name: net.name.clone(),
            endpoint_id: random_hex(32)?,
            ip: ip.map(|i| i.0),
            prefix: ip.map(|i| i.1).unwrap_or(0),
            gateway: ip.map(|i| i.2),
            ipv6: ipv6.map(|i| i.0),
            ipv6_prefix: ipv6.map(|i| i.1).unwrap_or(0),
            ipv6_gateway: ipv6.map(|i| i.2),
            mac: mac_text(mac),
            aliases: want.aliases.clone(),
            dns_names,
            veth: veth_name(container_id, &net.id),
            ifname: format!("eth{index}"),
        };
        if let Err(e) = self.wire(&net, &ep, netns_path, mac, default_route) {
            let mut st = self.lock();
            release_ips(&mut st, &ep);
            drop(st);
            if let Ok(mut nl) = netlink::Netlink::open() {
                let _ = netlink::delete_link_named(&mut nl, &ep.veth);
            }
            return Err(e);
        }
        Ok(ep)
    }

    /// The kernel's part: veth pair, bridge port, addresses and route in the namespace.
    fn wire(
        &self,
        net: &Network,
        ep: &Endpoint,
        netns_path: &Path,
        mac: [u8; 6],
        default_route: bool,
    ) -> Result<()> {
        let ns = std::fs::File::open(netns_path).map_err(|e| internal("open netns", e))?;
        let mut nl = netlink::Netlink::open().map_err(|e| internal("netlink", e))?;
        // A veth of the same name is a leftover of a crash.
        let _ = netlink::delete_link_named(&mut nl, &ep.veth);
        nl.create_veth(&netlink::VethSpec {
            name: &ep.veth,
            peer_name: &ep.ifname,
            peer_netns: ns.as_raw_fd(),
            mtu: net.mtu,
            peer_mac: Some(mac),
        })
        .map_err(|e| internal("create veth pair", e))?;
        let index = netlink::link_index(&ep.veth)
            .ok_or_else(|| NetError::Internal(format!("veth {} vanished", ep.veth)))?;
        let bridge = netlink::link_index(&net.bridge).ok_or_else(|| {
            NetError::Internal(format!(
                "bridge {} of network {} is missing",
                net.bridge, net.name
            ))
        })?;
        nl.set_master(index, bridge)
            .map_err(|e| internal("attach veth to bridge", e))?;
        let brport = format!("/sys/class/net/{}/brport", ep.veth);
        // Hairpin: a container may reach its own published port through the host.
        let _ = sysctl(&format!("{brport}/hairpin_mode"), "1");
        if !net.icc {
            // icc=false: ports of the bridge may not talk to each other (only to the
            // host and out), without br_netfilter.
            let _ = sysctl(&format!("{brport}/isolated"), "1");
        }
        nl.set_up(index).map_err(|e| internal("set veth up", e))?;
        let ifname = ep.ifname.clone();
        let addrs: Vec<(IpAddr, u8)> = ep
            .ip
            .map(|ip| (ip, ep.prefix))
            .into_iter()
            .chain(ep.ipv6.map(|ip| (ip, ep.ipv6_prefix)))
            .collect();
        let gateways: Vec<IpAddr> = if default_route && !net.internal {
            ep.gateway.into_iter().chain(ep.ipv6_gateway).collect()
        } else {
            vec![]
        };
        netns::enter(netns_path, move || {
            let mut nl = netlink::Netlink::open()?;
            let index = netlink::link_index(&ifname).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{ifname} missing"))
            })?;
            for (ip, prefix) in &addrs {
                nl.add_address(index, *ip, *prefix)?;
            }
            nl.set_up(index)?;
            for gw in &gateways {
                nl.add_default_route(index, *gw)?;
            }
            Ok(())
        })
        .map_err(|e| internal("configure the container's interface", e))
    }

    fn reserve_ports(&self, ports: &[PortSpec]) -> Result<(Vec<Published>, Vec<Reservation>)> {
        let mut published = Vec::new();
        let mut held = Vec::new();
        for p in ports {
            let ip = p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let addr = SocketAddr::new(ip, p.host_port);
            let fail = |e: std::io::Error| {
                NetError::Conflict(format!(
                    "failed to set up container networking: driver failed programming external connectivity: Bind for {}:{} failed: {}",
                    ip,
                    p.host_port,
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        "port is already allocated".to_string()
                    } else {
                        e.to_string()
                    }
                ))
            };
            let (port, r) = match p.proto.as_str() {
                "udp" => {
                    let s = UdpSocket::bind(addr).map_err(fail)?;
                    let port = s.local_addr().map_err(fail)?.port();
                    (port, Reservation::from(s))
                }
                "tcp" => {
                    let s = TcpListener::bind(addr).map_err(fail)?;
                    let port = s.local_addr().map_err(fail)?.port();
                    (port, Reservation::from(s))
                }
                other => {
                    return Err(NetError::Invalid(format!(
                        "invalid proto: {other} (tcp or udp)"
                    )))
                }
            };
            held.push(r);
            published.push(Published {
                container_port: p.container_port,
                proto: p.proto.clone(),
                host_ip: ip,
                host_port: port,
            });
        }
        Ok((published, held))
    }

    fn serve_dns(&self, container_id: &str, netns_path: &Path) -> Result<()> {
        let Some(dns) = &self.dns else { return Ok(()) };
        let (udp, tcp) = netns::enter(netns_path, || {
            let addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 11), 53));
            Ok((UdpSocket::bind(addr)?, TcpListener::bind(addr)?))
        })
        .map_err(|e| internal("bind the embedded DNS at 127.0.0.11:53", e))?;
        dns.serve(container_id, udp, tcp, self.cfg.dns_upstreams.clone())
            .map_err(|e| internal("serve the embedded DNS", e))
    }

    /// Takes a stopped container's network away: veths, addresses, ports, namespace.
    pub fn release(&self, container_id: &str) {
        let live = self.lock().live.remove(container_id);
        let Some(live) = live else { return };
        if let Some(dns) = &self.dns {
            dns.stop(container_id);
        }
        let had_ports = !live.ports.is_empty();
        {
            let mut st = self.lock();
            for e in &live.endpoints {
                release_ips(&mut st, e);
            }
            if had_ports {
                let _ = self.sync_rules_locked(&st);
            }
        }
        if let Ok(mut nl) = netlink::Netlink::open() {
            for e in &live.endpoints {
                let _ = netlink::delete_link_named(&mut nl, &e.veth);
            }
        }
        let _ = netns::remove(&live.netns);
    }

    /// Takes back a live container found at start-up: its addresses stay its own, its
    /// ports are reserved again and its DNS served again. Call [`Networks::finish_restore`]
    /// once every live container is in.
    pub fn restore(&self, container_id: &str, name: &str, attached: &Attached) {
        let netns = PathBuf::from(&attached.sandbox_key);
        let mut st = self.lock();
        for e in &attached.endpoints {
            let Some(net) = st.networks.get(&e.network_id).cloned() else {
                continue;
            };
            let allocs = st.alloc.entry(net.id.clone()).or_default();
            while allocs.len() < net.subnets.len() {
                allocs.push(Allocator::default());
            }
            for (s, a) in net.subnets.iter().zip(allocs.iter_mut()) {
                for ip in e.ip.iter().chain(e.ipv6.iter()) {
                    if s.subnet.contains(*ip) {
                        a.reserve(&s.subnet, *ip);
                    }
                }
            }
        }
        drop(st);
        let specs: Vec<PortSpec> = attached
            .ports
            .iter()
            .map(|p| PortSpec {
                container_port: p.container_port,
                proto: p.proto.clone(),
                host_ip: (!p.host_ip.is_unspecified()).then_some(p.host_ip),
                host_port: p.host_port,
            })
            .collect();
        // Best effort: the rules forward the ports whether or not the reservation holds.
        let mut reservations = Vec::new();
        for s in &specs {
            if let Ok((_, mut r)) = self.reserve_ports(std::slice::from_ref(s)) {
                reservations.append(&mut r);
            }
        }
        let dns = self.lock().serves_dns(&attached.endpoints);
        self.lock().live.insert(
            container_id.to_string(),
            Live {
                name: name.to_string(),
                netns: netns.clone(),
                endpoints: attached.endpoints.clone(),
                ports: attached.ports.clone(),
                _reservations: reservations,
            },
        );
        if dns && netns::is_pinned(&netns) {
            let _ = self.serve_dns(container_id, &netns);
        }
    }

    /// After restore: removes what no live container owns (veths on our bridges, pinned
    /// namespaces) and rewrites the rules.
    pub fn finish_restore(&self) -> Result<()> {
        let st = self.lock();
        let owned: HashSet<String> = st
            .live
            .values()
            .flat_map(|l| l.endpoints.iter().map(|e| e.veth.clone()))
            .collect();
        let live_ns: HashSet<PathBuf> = st.live.values().map(|l| l.netns.clone()).collect();
        if let Ok(mut nl) = netlink::Netlink::open() {
            for n in st.networks.values().filter(|n| n.driver == "bridge") {
                let dir = format!("/sys/class/net/{}/brif", n.bridge);
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with("veth") && !owned.contains(&name) {
                        let _ = netlink::delete_link_named(&mut nl, &name);
                    }
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.cfg.netns_dir) {
            for e in entries.flatten() {
                if !live_ns.contains(&e.path()) {
                    let _ = netns::remove(&e.path());
                }
            }
        }
        self.sync_rules_locked(&st)
    }

    /// Connects a running container to one more network.
    pub fn connect(&self, container_id: &str, want: &EndpointSpec) -> Result<Endpoint> {
        let (netns, name, index, has_route, had_dns) = {
            let st = self.lock();
            let net = st.find(&want.network)?.clone();
            let Some(l) = st.live.get(container_id) else {
                return Err(NetError::Conflict("container is not running".into()));
            };
            if l.endpoints.iter().any(|e| e.network_id == net.id) {
                return Err(NetError::Forbidden(format!(
                    "endpoint with name {} already exists in network {}",
                    l.name, net.name
                )));
            }
            let has_route = l
                .endpoints
                .iter()
                .any(|e| st.networks.get(&e.network_id).is_some_and(|n| !n.internal));
            // The first free ethN (a disconnect may have left a gap).
            let index = (l.endpoints.len()..)
                .find(|i| !l.endpoints.iter().any(|e| e.ifname == format!("eth{i}")))
                .unwrap_or(l.endpoints.len());
            (
                l.netns.clone(),
                l.name.clone(),
                index,
                has_route,
                st.serves_dns(&l.endpoints),
            )
        };
        let ep = self.plumb(container_id, &name, &netns, want, index, !has_route)?;
        let dns_now = {
            let mut st = self.lock();
            let dns_now = st.serves_dns(std::slice::from_ref(&ep));
            if let Some(l) = st.live.get_mut(container_id) {
                l.endpoints.push(ep.clone());
            }
            dns_now
        };
        if dns_now && !had_dns {
            let _ = self.serve_dns(container_id, &netns);
        }
        Ok(ep)
    }

    /// Disconnects a running container from a network.
    pub fn disconnect(&self, container_id: &str, network: &str) -> Result<Endpoint> {
        let mut st = self.lock();
        let net = st.find(network)?.clone();
        let Some(l) = st.live.get_mut(container_id) else {
            return Err(NetError::Conflict("container is not running".into()));
        };
        let Some(pos) = l.endpoints.iter().position(|e| e.network_id == net.id) else {
            return Err(NetError::Forbidden(format!(
                "container {container_id} is not connected to network {}",
                net.name
            )));
        };
        let ep = l.endpoints.remove(pos);
        release_ips(&mut st, &ep);
        drop(st);
        if let Ok(mut nl) = netlink::Netlink::open() {
            let _ = netlink::delete_link_named(&mut nl, &ep.veth);
        }
        Ok(ep)
    }
}

fn release_ips(st: &mut State, e: &Endpoint) {
    let Some(net) = st.networks.get(&e.network_id).cloned() else {
        return;
    };
    if let Some(allocs) = st.alloc.get_mut(&net.id) {
        for (s, a) in net.subnets.iter().zip(allocs.iter_mut()) {
            for ip in e.ip.iter().chain(e.ipv6.iter()) {
                if s.subnet.contains(*ip) {
                    a.release(&s.subnet, *ip);
                }
            }
        }
    }
}

/// Docker's network JSON (list and inspect).
pub fn network_json(n: &Network, containers: Option<Value>) -> Value {
    let config: Vec<Value> = n
        .subnets
        .iter()
        .map(|s| {
            let mut c = json!({"Subnet": s.subnet.to_string(), "Gateway": s.gateway.to_string()});
            if let Some(r) = &s.ip_range {
                c["IPRange"] = json!(r.to_string());
            }
            c
        })
        .collect();
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv4": n.driver == "bridge",
        "EnableIPv6": n.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": null, "Config": config},
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers.unwrap_or_else(|| json!({})),
        "Options": n.options,
        "Labels": n.labels,
    })
}

/// The body of `POST /networks/create`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateRequest {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    pub ipam: IpamRequest,
    #[serde(deserialize_with = "null_map")]
    pub options: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_map")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamRequest {
    pub driver: String,
    #[serde(deserialize_with = "null_vec")]
    pub config: Vec<IpamConfigRequest>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfigRequest {
    pub subnet: Option<String>,
    #[serde(rename = "IPRange")]
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
}

fn null_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

fn null_vec<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<IpamConfigRequest>, D::Error> {
    Ok(Option::<Vec<IpamConfigRequest>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_are_stable() {
        let a = veth_name("abc", "def");
        assert_eq!(a, veth_name("abc", "def"));
        assert_ne!(a, veth_name("abd", "def"));
        assert!(a.len() <= 15, "{a}");
    }

    #[test]
    fn macs_follow_the_address() {
        assert_eq!(
            mac_text(mac_for(Some("172.18.0.2".parse().unwrap()))),
            "02:42:ac:12:00:02"
        );
        assert_eq!(
            parse_mac("02:42:ac:12:00:02"),
            Some([2, 0x42, 0xac, 0x12, 0, 2])
        );
        assert_eq!(parse_mac("nope"), None);
    }

    #[test]
    fn create_request_reads_dockers_body() {
        let r: CreateRequest = serde_json::from_str(
            r#"{"Name":"n","Driver":"bridge","Internal":true,"IPAM":{"Driver":"default","Config":[{"Subnet":"10.1.0.0/24","Gateway":"10.1.0.1"}]},"Options":null,"Labels":{"a":"b"}}"#,
        )
        .unwrap();
        assert_eq!(r.name, "n");
        assert!(r.internal);
        assert_eq!(r.ipam.config[0].subnet.as_deref(), Some("10.1.0.0/24"));
        assert_eq!(r.labels["a"], "b");
    }
}
