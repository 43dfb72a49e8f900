//! Docker's network model for berthd: a bridge per network, a veth pair per container
//! endpoint, addresses from IPAM, NAT, filtering and port publishing in one nftables table
//! per engine instance, and the embedded DNS resolver of user-defined networks.

pub mod dns;
