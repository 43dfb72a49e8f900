//! Addresses: CIDR arithmetic, Docker's default address pools, the choice of a free
//! subnet, and per-network allocation of container addresses.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An address with a prefix length: `172.18.0.0/16`, `fd00::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

fn to_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(v4: bool, bits: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

impl Cidr {
    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    fn width(&self) -> u8 {
        if self.is_v4() {
            32
        } else {
            128
        }
    }

    fn host_mask(&self) -> u128 {
        let host = u32::from(self.width() - self.prefix);
        if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Cidr {
        Cidr {
            addr: from_bits(self.is_v4(), to_bits(self.addr) & !self.host_mask()),
            prefix: self.prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_v4()
            && to_bits(ip) & !self.host_mask() == to_bits(self.addr) & !self.host_mask()
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        if self.is_v4() != other.is_v4() {
            return false;
        }
        let shorter = if self.prefix <= other.prefix {
            self
        } else {
            other
        };
        let longer = if self.prefix <= other.prefix {
            other
        } else {
            self
        };
        shorter.contains(longer.addr)
    }

    /// The address `offset` hosts into the network, if the network has it.
    pub fn nth(&self, offset: u128) -> Option<IpAddr> {
        (offset <= self.host_mask()).then(|| {
            from_bits(
                self.is_v4(),
                (to_bits(self.addr) & !self.host_mask()) + offset,
            )
        })
    }

    /// The offset of `ip` inside the network.
    pub fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        self.contains(ip).then(|| to_bits(ip) & self.host_mask())
    }

    /// The last offset that may be handed out (IPv4 keeps its broadcast address).
    fn last_host(&self) -> u128 {
        if self.is_v4() && self.prefix < 31 {
            self.host_mask() - 1
        } else {
            self.host_mask()
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("invalid CIDR address: {s}");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One entry of `default-address-pools`: `base` cut into subnets of prefix `size`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub base: Cidr,
    pub size: u8,
}

/// Docker's default pools: 172.17–31.0.0/16, then 192.168.0.0/16 cut into /20s.
pub fn default_pools() -> Vec<Pool> {
    let mut pools = Vec::new();
    for second in 17..=31u8 {
        pools.push(Pool {
            base: Cidr {
                addr: IpAddr::V4(Ipv4Addr::new(172, second, 0, 0)),
                prefix: 16,
            },
            size: 16,
        });
    }
    pools.push(Pool {
        base: Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)),
            prefix: 16,
        },
        size: 20,
    });
    pools
}

/// The first subnet of the pools that overlaps none of `taken`.
pub fn pick_subnet(pools: &[Pool], taken: &[Cidr]) -> Option<Cidr> {
    for pool in pools {
        if pool.size < pool.base.prefix || pool.size > pool.base.width() {
            continue;
        }
        let count: u128 = 1u128 << u32::from(pool.size - pool.base.prefix).min(20);
        let step: u128 = 1u128 << u32::from(pool.base.width() - pool.size);
        for i in 0..count {
            let Some(addr) = pool.base.network().nth(i * step) else {
                break;
            };
            let candidate = Cidr {
                addr,
                prefix: pool.size,
            };
            if !taken.iter().any(|t| t.overlaps(&candidate)) {
                return Some(candidate);
            }
        }
    }
    None
}

/// IPv4 routes of the host (from /proc/net/route) with their interfaces, without the
/// default route: the subnets a new network must not overlap.
pub fn host_routes() -> Vec<(String, Cidr)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (
            u32::from_str_radix(cols[1], 16),
            u32::from_str_radix(cols[7], 16),
        ) else {
            continue;
        };
        // The kernel prints the network-order word as a host integer: its bytes in
        // memory order are the address.
        if mask == 0 {
            continue;
        }
        out.push((
            cols[0].to_string(),
            Cidr {
                addr: IpAddr::V4(Ipv4Addr::from(dest.to_ne_bytes())),
                prefix: mask.count_ones() as u8,
            },
        ));
    }
    out
}

/// The addresses in use in one subnet.
#[derive(Clone, Debug, Default)]
pub struct Allocator {
    used: BTreeSet<u128>,
}

impl Allocator {
    /// Marks an address as used (gateway, restored containers); false if it already was.
    pub fn reserve(&mut self, subnet: &Cidr, ip: IpAddr) -> bool {
        match subnet.offset_of(ip) {
            Some(off) => self.used.insert(off),
            None => false,
        }
    }

    pub fn release(&mut self, subnet: &Cidr, ip: IpAddr) {
        if let Some(off) = subnet.offset_of(ip) {
            self.used.remove(&off);
        }
    }

    pub fn is_used(&self, subnet: &Cidr, ip: IpAddr) -> bool {
        subnet
            .offset_of(ip)
            .is_some_and(|off| self.used.contains(&off))
    }

    /// The lowest free address of `range` (a part of `subnet`, or the subnet itself).
    pub fn allocate(&mut self, subnet: &Cidr, range: Option<&Cidr>) -> Option<IpAddr> {
        let range = range.unwrap_or(subnet);
        let start = subnet.offset_of(range.network().addr)?.max(1);
        let end = subnet
            .offset_of(range.nth(range.host_mask())?)?
            .min(subnet.last_host());
        let mut candidate = start;
        for &used in self.used.range(start..) {
            if used > candidate {
                break;
            }
            candidate = used + 1;
        }
        if candidate > end {
            return None;
        }
        self.used.insert(candidate);
        subnet.nth(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(c("172.18.0.0/16").to_string(), "172.18.0.0/16");
        assert!("172.18.0.0".parse::<Cidr>().is_err());
        assert!("172.18.0.0/33".parse::<Cidr>().is_err());
        assert!("300.1.0.0/16".parse::<Cidr>().is_err());
        assert_eq!(c("fd00::/64").to_string(), "fd00::/64");
    }

    #[test]
    fn overlap_and_contains() {
        assert!(c("10.0.0.0/8").overlaps(&c("10.1.2.0/24")));
        assert!(c("10.1.2.0/24").overlaps(&c("10.0.0.0/8")));
        assert!(!c("10.1.2.0/24").overlaps(&c("10.1.3.0/24")));
        assert!(c("10.1.2.0/24").contains("10.1.2.200".parse().unwrap()));
        assert!(!c("10.1.2.0/24").contains("10.1.3.1".parse().unwrap()));
    }

    #[test]
    fn picks_the_first_free_subnet() {
        let pools = default_pools();
        assert_eq!(pick_subnet(&pools, &[]), Some(c("172.17.0.0/16")));
        let taken = [c("172.17.0.0/16"), c("172.18.5.0/24")];
        assert_eq!(pick_subnet(&pools, &taken), Some(c("172.19.0.0/16")));
        let small = [Pool {
            base: c("10.10.0.0/16"),
            size: 24,
        }];
        assert_eq!(
            pick_subnet(&small, &[c("10.10.0.0/24")]),
            Some(c("10.10.1.0/24"))
        );
    }

    #[test]
    fn allocates_lowest_free_and_never_twice() {
        let subnet = c("10.5.0.0/29");
        let mut a = Allocator::default();
        assert!(a.reserve(&subnet, "10.5.0.1".parse().unwrap()));
        let got: Vec<String> = std::iter::from_fn(|| a.allocate(&subnet, None))
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(
            got,
            ["10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6"]
        );
        a.release(&subnet, "10.5.0.4".parse().unwrap());
        assert_eq!(a.allocate(&subnet, None).unwrap().to_string(), "10.5.0.4");
        assert!(!a.reserve(&subnet, "10.5.0.4".parse().unwrap()));
    }

    #[test]
    fn allocates_inside_the_range() {
        let subnet = c("10.6.0.0/16");
        let range = c("10.6.3.0/30");
        let mut a = Allocator::default();
        assert_eq!(
            a.allocate(&subnet, Some(&range)).unwrap().to_string(),
            "10.6.3.0"
        );
        assert_eq!(
            a.allocate(&subnet, Some(&range)).unwrap().to_string(),
            "10.6.3.1"
        );
    }
}
