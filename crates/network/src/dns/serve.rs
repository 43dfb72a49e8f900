//! The tasks serving one scope: one reading the UDP socket, one accepting on the TCP
//! listener, one per TCP connection and one per UDP query being forwarded. Each holds a
//! [`Scope`]; all end when the scope's cancel sender is dropped, and the scope's owner
//! learns they have ended when the last `Scope` (and its `alive` sender) is gone.

use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout};

use super::forward::{forward, read_framed, write_framed};
use super::query::{handle, Action, Forward, Transport};
use super::{DnsConfig, Resolver};

/// Pause after an unexpected socket error (EMFILE on accept, say), so a persistent one
/// does not spin the runtime's only thread.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// What every task of a scope shares.
#[derive(Clone)]
pub struct Scope {
    name: Arc<str>,
    resolver: Arc<dyn Resolver>,
    upstreams: Arc<[SocketAddr]>,
    config: DnsConfig,
    forwards: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    cancel: watch::Receiver<()>,
    /// Never sent on: dropped with the task, which is what the owner waits for.
    _alive: mpsc::Sender<()>,
}

impl Scope {
    pub fn new(
        name: &str,
        resolver: Arc<dyn Resolver>,
        upstreams: Vec<SocketAddr>,
        config: DnsConfig,
        cancel: watch::Receiver<()>,
        alive: mpsc::Sender<()>,
    ) -> Scope {
        Scope {
            name: name.into(),
            resolver,
            upstreams: upstreams.into(),
            forwards: Arc::new(Semaphore::new(
                config.max_concurrent_forwards.min(Semaphore::MAX_PERMITS),
            )),
            connections: Arc::new(Semaphore::new(
                config.max_tcp_connections.min(Semaphore::MAX_PERMITS),
            )),
            config,
            cancel,
            _alive: alive,
        }
    }

    /// Completes when the scope is stopped (its cancel sender dropped).
    async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        while cancel.changed().await.is_ok() {}
    }

    fn handle(&self, msg: &[u8], transport: Transport) -> Action {
        handle(&*self.resolver, &self.name, msg, transport)
    }
}

/// Answers the datagrams arriving on `socket` until the scope is stopped.
pub async fn serve_udp(scope: Scope, socket: UdpSocket) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let (len, client) = tokio::select! {
            () = scope.cancelled() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(_) => {
                    sleep(ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let msg = buf.get(..len).unwrap_or_default();
        match scope.handle(msg, Transport::Udp) {
            Action::Reply(reply) => {
                // A lost UDP answer is the client's to retry, as any lost datagram.
                let _ = socket.send_to(&reply, client).await;
            }
            Action::Drop => {}
            Action::Forward(request) => {
                let Ok(permit) = scope.forwards.clone().try_acquire_owned() else {
                    let _ = socket.send_to(&request.servfail, client).await;
                    continue;
                };
                let task =
                    forward_datagram(scope.clone(), Arc::clone(&socket), request, client, permit);
                tokio::spawn(task);
            }
        }
    }
}

/// Forwards one UDP query and sends the answer (or SERVFAIL) back to `client`. An
/// `async fn`, not an `async move` block, so the task owns the whole [`Scope`] (an
/// async block would capture only the fields it uses, and `stop` waits for the scope's
/// `alive` sender to go).
async fn forward_datagram(
    scope: Scope,
    socket: Arc<UdpSocket>,
    request: Forward,
    client: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let timeout = scope.config.forward_timeout;
    tokio::select! {
        () = scope.cancelled() => {}
        answer = forward(&request, &scope.upstreams, Transport::Udp, timeout) => {
            let reply = answer.unwrap_or_else(|| request.servfail.clone());
            let _ = socket.send_to(&reply, client).await;
        }
    }
}

/// Accepts connections on `listener` until the scope is stopped, each served by its
/// own task; past the scope's connection limit, new connections are closed at once.
pub async fn serve_tcp(scope: Scope, listener: TcpListener) {
    loop {
        let stream = tokio::select! {
            () = scope.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    sleep(ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = scope.connections.clone().try_acquire_owned() else {
            continue;
        };
        tokio::spawn(connection_task(scope.clone(), stream, permit));
    }
}

/// Serves one connection until it ends or the scope is stopped (an `async fn` for the
/// reason given at [`forward_datagram`]).
async fn connection_task(scope: Scope, stream: TcpStream, _permit: OwnedSemaphorePermit) {
    tokio::select! {
        () = scope.cancelled() => {}
        _ = serve_connection(&scope, stream) => {}
    }
}

/// Answers the messages of one connection in order (RFC 7766 allows several per
/// connection) until the client closes it, idles past the limit, or sends something
/// without a header.
async fn serve_connection(scope: &Scope, mut stream: TcpStream) -> io::Result<()> {
    let idle = scope.config.tcp_idle_timeout;
    loop {
        let Ok(msg) = timeout(idle, read_framed(&mut stream)).await else {
            return Ok(());
        };
        let reply = match scope.handle(&msg?, Transport::Tcp) {
            Action::Reply(reply) => reply,
            Action::Drop => return Ok(()),
            Action::Forward(request) => {
                let timeout = scope.config.forward_timeout;
                forward(&request, &scope.upstreams, Transport::Tcp, timeout)
                    .await
                    .unwrap_or(request.servfail)
            }
        };
        timeout(idle, write_framed(&mut stream, &reply))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client does not read"))??;
    }
}
