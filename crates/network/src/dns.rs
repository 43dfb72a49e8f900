//! The embedded DNS resolver (127.0.0.11 inside containers on user-defined networks).
//! Placeholder with the final interface; the resolver itself lands from its branch.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;

pub trait Resolver: Send + Sync + 'static {
    fn lookup(&self, scope: &str, name: &str) -> Option<Vec<IpAddr>>;
    fn reverse(&self, scope: &str, addr: IpAddr) -> Option<String>;
}

pub struct DnsService {
    _resolver: Arc<dyn Resolver>,
}

impl DnsService {
    pub fn start(resolver: Arc<dyn Resolver>) -> std::io::Result<DnsService> {
        Ok(DnsService {
            _resolver: resolver,
        })
    }
    pub fn serve(
        &self,
        _scope: &str,
        _udp: UdpSocket,
        _tcp: TcpListener,
        _upstreams: Vec<SocketAddr>,
    ) -> std::io::Result<()> {
        Ok(())
    }
    pub fn stop(&self, _scope: &str) {}
}
