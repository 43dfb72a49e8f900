//! The engine instance's nftables table: NAT for outgoing traffic, DNAT for published
//! ports, isolation between networks and the walls of internal networks.
//!
//! The table is one pure function of the networks and the published ports, replaced
//! whole in one `nft` transaction (`add table`, `delete table`, the new table) whenever
//! either changes. A crash can therefore never leave half a rule set or duplicated rules:
//! the next replace writes exactly what the state says. Other tables (another berthd's,
//! dockerd's iptables-nft ones) are never read or touched.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::process::{Command, Stdio};

use crate::ipam::Cidr;

/// What the rules need of one network.
#[derive(Clone, Debug)]
pub struct RuleNet {
    pub bridge: String,
    pub subnets: Vec<Cidr>,
    pub internal: bool,
    pub masquerade: bool,
}

/// One published port: host side to container side.
#[derive(Clone, Debug)]
pub struct RulePort {
    pub proto: String,
    /// None: every address of the host.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
}

fn set(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("{{ {} }}", quoted.join(", "))
}

/// The whole table, as `nft -f` reads it.
pub fn render(table: &str, nets: &[RuleNet], ports: &[RulePort]) -> String {
    let bridges: Vec<&str> = nets.iter().map(|n| n.bridge.as_str()).collect();
    let mut t = String::new();
    let _ = writeln!(t, "table inet {table} {{");
    if !bridges.is_empty() {
        // route_localnet on our bridges lets DNAT'd loopback traffic reach containers;
        // this keeps a container from using it to reach the host's loopback services.
        let _ = writeln!(
            t,
            "  chain guard {{\n    type filter hook prerouting priority -300; policy accept;\n    iifname {} ip daddr 127.0.0.0/8 drop\n  }}",
            set(&bridges)
        );
    }
    let _ = writeln!(
        t,
        "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump ports\n  }}"
    );
    let _ = writeln!(
        t,
        "  chain output {{\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump ports\n  }}"
    );
    let _ = writeln!(t, "  chain ports {{");
    for p in ports {
        let family = if p.container_ip.is_ipv4() {
            "ip"
        } else {
            "ip6"
        };
        let dest = match p.container_ip {
            IpAddr::V4(a) => format!("{a}:{}", p.container_port),
            IpAddr::V6(a) => format!("[{a}]:{}", p.container_port),
        };
        let daddr = match p.host_ip {
            Some(IpAddr::V4(a)) => format!("ip daddr {a} "),
            Some(IpAddr::V6(a)) => format!("ip6 daddr {a} "),
            None => format!(
                "meta nfproto {} ",
                if family == "ip" { "ipv4" } else { "ipv6" }
            ),
        };
        let _ = writeln!(
            t,
            "    {daddr}{} dport {} dnat {family} to {dest}",
            p.proto, p.host_port
        );
    }
    let _ = writeln!(t, "  }}");
    let _ = writeln!(
        t,
        "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;"
    );
    for n in nets {
        let br = &n.bridge;
        // Loopback clients of a published port, and containers reaching a published
        // port of their own network (hairpin): answers must come back through NAT.
        let _ = writeln!(t, "    oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade");
        // By address, not interface: with br_netfilter loaded (dockerd loads it) the
        // hairpin packet is bridged and its interfaces are the veths.
        for s in n.subnets.iter().filter(|s| s.is_v4()) {
            let net = s.network();
            let _ = writeln!(
                t,
                "    ct status dnat ip saddr {net} ip daddr {net} masquerade"
            );
        }
        if n.masquerade && !n.internal {
            for s in &n.subnets {
                let family = if s.is_v4() { "ip" } else { "ip6" };
                let _ = writeln!(
                    t,
                    "    {family} saddr {} oifname != \"{br}\" masquerade",
                    s.network()
                );
            }
        }
    }
    let _ = writeln!(t, "  }}");
    let _ = writeln!(
        t,
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;"
    );
    for n in nets.iter().filter(|n| n.internal) {
        let br = &n.bridge;
        let _ = writeln!(t, "    iifname \"{br}\" oifname != \"{br}\" drop");
        let _ = writeln!(t, "    oifname \"{br}\" iifname != \"{br}\" drop");
    }
    // A published port is open to everyone, containers of other networks included.
    let _ = writeln!(t, "    ct status dnat accept");
    for n in nets {
        let br = &n.bridge;
        let others: Vec<&str> = bridges.iter().copied().filter(|b| b != br).collect();
        if !others.is_empty() {
            let _ = writeln!(t, "    iifname \"{br}\" oifname {} drop", set(&others));
        }
    }
    let _ = writeln!(t, "  }}");
    let _ = writeln!(t, "}}");
    t
}

fn nft(input: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run nft (package nftables): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Replaces the table with `render`'s text in one transaction.
pub fn apply(table: &str, text: &str) -> io::Result<()> {
    nft(&format!(
        "add table inet {table}\ndelete table inet {table}\n{text}"
    ))
}

/// Deletes the table (nothing if there is none).
pub fn delete(table: &str) -> io::Result<()> {
    nft(&format!(
        "add table inet {table}\ndelete table inet {table}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ports_nat_and_isolation() {
        let nets = vec![
            RuleNet {
                bridge: "berth0".into(),
                subnets: vec!["172.18.0.1/16".parse().unwrap()],
                internal: false,
                masquerade: true,
            },
            RuleNet {
                bridge: "br-1234".into(),
                subnets: vec!["10.9.0.0/24".parse().unwrap()],
                internal: true,
                masquerade: true,
            },
        ];
        let ports = vec![RulePort {
            proto: "tcp".into(),
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 8080,
            container_ip: "172.18.0.2".parse().unwrap(),
            container_port: 80,
        }];
        let t = render("berth-x", &nets, &ports);
        assert!(t.contains("ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 172.18.0.2:80"));
        assert!(t.contains("ip saddr 172.18.0.0/16 oifname != \"berth0\" masquerade"));
        // An internal network gets walls and no masquerade.
        assert!(!t.contains("10.9.0.0/24 oifname"));
        assert!(t.contains("iifname \"br-1234\" oifname != \"br-1234\" drop"));
        assert!(t.contains("iifname \"berth0\" oifname { \"br-1234\" } drop"));
    }
}
