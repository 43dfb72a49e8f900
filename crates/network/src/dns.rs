//! The embedded DNS resolver (127.0.0.11 inside containers on user-defined networks).
//!
//! It answers A, AAAA and PTR queries for the names a [`Resolver`] knows, authoritatively
//! and with a TTL of 600 s as Docker's does, and forwards everything else to the
//! upstream servers it was given for the container. The caller owns names and sockets:
//! it binds the sockets inside the container's network namespace and hands them to
//! [`DnsService::serve`]; this module never enters a namespace, touches netlink or
//! firewall rules, or reads resolv.conf.
//!
//! One background thread runs a current-thread tokio runtime for every scope; a scope
//! is a few tasks (UDP reader, TCP acceptor, one per TCP connection and per query being
//! forwarded), never a thread.
//!
//! The wire format is read by our own small parser (`wire`), bounds-checked throughout:
//! malformed queries get FORMERR when their header can be read and are dropped otherwise.

mod forward;
mod query;
mod serve;
mod wire;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

/// Answers for one container endpoint: names it may resolve and what to forward.
///
/// Called on the DNS thread for every query, so it must answer from memory, quickly:
/// no blocking I/O. A panic in it is caught and answered with SERVFAIL.
pub trait Resolver: Send + Sync + 'static {
    /// A/AAAA answers for `name` (lowercase, no trailing dot) as seen from container
    /// `scope` (an opaque key the caller registered the sockets with). None = not ours:
    /// forward. Some with no address of the asked family is answered NOERROR, empty.
    fn lookup(&self, scope: &str, name: &str) -> Option<Vec<IpAddr>>;
    /// PTR: the name for an address of ours (e.g. "web.mynet"), None = forward.
    fn reverse(&self, scope: &str, addr: IpAddr) -> Option<String>;
}

/// Limits and timeouts of the service; [`Default`] gives Docker's values where Docker
/// has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// How long to wait for one upstream before trying the next (Docker: 4 s).
    pub forward_timeout: Duration,
    /// UDP queries being forwarded at once per scope; past it, SERVFAIL (Docker: 100).
    pub max_concurrent_forwards: usize,
    /// Open TCP connections per scope; past it, new ones are closed.
    pub max_tcp_connections: usize,
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> DnsConfig {
        DnsConfig {
            forward_timeout: Duration::from_secs(4),
            max_concurrent_forwards: 100,
            max_tcp_connections: 100,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// How long [`DnsService::stop`] waits for a scope's tasks to end. They end at their
/// next poll, so this is only a bound should the DNS thread be stuck in a resolver.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The embedded DNS server of every container of this engine.
pub struct DnsService {
    runtime: tokio::runtime::Handle,
    runtime_thread: thread::ThreadId,
    resolver: Arc<dyn Resolver>,
    config: DnsConfig,
    scopes: Mutex<HashMap<String, ScopeHandle>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// The service's side of a served scope.
struct ScopeHandle {
    /// Dropping it stops the scope's tasks.
    cancel: watch::Sender<()>,
    /// Disconnects when the last task of the scope has ended.
    ended: mpsc::Receiver<()>,
}

impl DnsService {
    /// Starts the DNS thread with the default [`DnsConfig`].
    pub fn start(resolver: Arc<dyn Resolver>) -> io::Result<DnsService> {
        DnsService::start_with_config(resolver, DnsConfig::default())
    }

    /// Starts the DNS thread; it serves nothing until [`DnsService::serve`].
    pub fn start_with_config(
        resolver: Arc<dyn Resolver>,
        config: DnsConfig,
    ) -> io::Result<DnsService> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let handle = runtime.handle().clone();
        let (shutdown, shutdown_requested) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("berth-dns".into())
            .spawn(move || {
                // Runs every scope's tasks until the service is dropped; dropping the runtime
                // then drops the tasks, which closes their sockets.
                runtime.block_on(async {
                    let _ = shutdown_requested.await;
                });
            })?;
        Ok(DnsService {
            runtime: handle,
            runtime_thread: thread.thread().id(),
            resolver,
            config,
            scopes: Mutex::new(HashMap::new()),
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// Serve on these already-bound sockets (the caller binds them to 127.0.0.11:53
    /// inside the container's network namespace; sockets keep their namespace, so they
    /// are just used). `upstreams`: where to forward names that are not ours (the host's
    /// resolvers), tried in order; UDP queries go over UDP, then TCP on truncation.
    ///
    /// Bind the UDP socket to the address itself (127.0.0.11), not a wildcard: answers
    /// leave from the socket's address, and a client drops those from another.
    ///
    /// Fails with [`io::ErrorKind::AlreadyExists`] if `scope` is being served: `stop` it
    /// first. On any error the sockets are closed.
    pub fn serve(
        &self,
        scope: &str,
        udp: UdpSocket,
        tcp: TcpListener,
        upstreams: Vec<SocketAddr>,
    ) -> io::Result<()> {
        let mut scopes = self.scopes.lock().unwrap_or_else(PoisonError::into_inner);
        if scopes.contains_key(scope) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("DNS already served for {scope}"),
            ));
        }
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        // Registers the sockets with the DNS thread's reactor.
        let _runtime = self.runtime.enter();
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;

        let (cancel, cancelled) = watch::channel(());
        let (alive, ended) = mpsc::channel();
        let tasks = serve::Scope::new(
            scope,
            Arc::clone(&self.resolver),
            upstreams,
            self.config,
            cancelled,
            alive,
        );
        self.runtime.spawn(serve::serve_udp(tasks.clone(), udp));
        self.runtime.spawn(serve::serve_tcp(tasks, tcp));
        scopes.insert(scope.to_owned(), ScopeHandle { cancel, ended });
        Ok(())
    }

    /// Stop serving `scope` (container stopped): its tasks end and its sockets are
    /// closed by the time this returns. Unknown scopes are ignored.
    pub fn stop(&self, scope: &str) {
        let removed = self
            .scopes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(scope);
        let Some(ScopeHandle { cancel, ended }) = removed else {
            return;
        };
        drop(cancel);
        // Called from a resolver on the DNS thread, waiting would only block the tasks
        // that are to end: they end once control returns to the runtime.
        if thread::current().id() != self.runtime_thread {
            // Disconnected (every task gone) is the expected result; timing out leaves
            // the tasks to end on their own.
            let _ = ended.recv_timeout(STOP_WAIT);
        }
    }
}

impl Drop for DnsService {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != thread::current().id() {
                // A panic on the DNS thread has nothing left to clean up.
                let _ = thread.join();
            }
        }
    }
}
