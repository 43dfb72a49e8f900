//! Forwarding the queries that are not ours to the upstream servers: in order, each with
//! a timeout, over UDP (then TCP when the answer is truncated) or over TCP.
//!
//! Sockets towards upstreams are opened from berthd's own network namespace (the
//! runtime's thread never enters a container's), which is what makes host-loopback
//! resolvers such as systemd-resolved's 127.0.0.53 reachable.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, timeout_at, Instant};

use super::query::{random_u64, Forward, Transport};
use super::wire::{self, Header, Question, Rcode, HEADER_LEN};

/// Asks each upstream in turn until one gives a usable answer; returns it with the
/// client's id, fitted to the client's size on UDP. None when all failed (or there are
/// none): the caller answers SERVFAIL.
pub async fn forward(
    request: &Forward,
    upstreams: &[SocketAddr],
    transport: Transport,
    per_upstream: Duration,
) -> Option<Vec<u8>> {
    for &upstream in upstreams {
        // A fresh id per attempt: the client's may be guessable, ours is not.
        let id = random_u64() as u16;
        let mut query = request.query.clone();
        wire::set_id(&mut query, id);
        let question = &request.question;
        let answer = match transport {
            Transport::Udp => {
                let Ok(answer) = udp_exchange(upstream, &query, id, question, per_upstream).await
                else {
                    continue;
                };
                if is_truncated(&answer) {
                    // The full answer over TCP; should that fail, the truncated one still
                    // tells the client to come back over TCP itself.
                    tcp_exchange(upstream, &query, id, question, per_upstream)
                        .await
                        .unwrap_or(answer)
                } else {
                    answer
                }
            }
            Transport::Tcp => {
                let Ok(answer) = tcp_exchange(upstream, &query, id, question, per_upstream).await
                else {
                    continue;
                };
                answer
            }
        };
        if gives_up(&answer) {
            continue;
        }
        let mut answer = match transport {
            Transport::Udp => wire::fit_udp(answer, request.limit),
            Transport::Tcp => answer,
        };
        wire::set_id(&mut answer, request.client_id);
        return Some(answer);
    }
    None
}

fn is_truncated(msg: &[u8]) -> bool {
    Header::parse(msg).is_some_and(|header| header.is_truncated())
}

/// SERVFAIL and REFUSED say "ask someone else", as stub resolvers read them.
fn gives_up(msg: &[u8]) -> bool {
    Header::parse(msg).is_some_and(|header| {
        header.rcode() == Rcode::ServFail as u8 || header.rcode() == Rcode::Refused as u8
    })
}

/// Whether `msg` answers our query: our id, a response, and the same question (an
/// error response may leave the question out).
fn answers(msg: &[u8], id: u16, question: &Question) -> bool {
    let Some(header) = Header::parse(msg) else {
        return false;
    };
    if header.id != id || !header.is_response() {
        return false;
    }
    match header.qdcount {
        0 => header.rcode() != Rcode::NoError as u8,
        1 => Question::read(msg, HEADER_LEN).is_ok_and(|(asked, _)| asked.matches(question)),
        _ => false,
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "upstream did not answer in time")
}

async fn udp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Question,
    limit: Duration,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from anyone else, and an ICMP "port
    // unreachable" ends the wait at once instead of at the timeout.
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    timeout_at(deadline, async {
        loop {
            let len = socket.recv(&mut buf).await?;
            let msg = buf.get(..len).unwrap_or_default();
            if answers(msg, id, question) {
                return Ok(msg.to_vec());
            }
            // A stray or stale datagram: keep waiting for ours.
        }
    })
    .await
    .map_err(|_| timed_out())?
}

async fn tcp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Question,
    limit: Duration,
) -> io::Result<Vec<u8>> {
    timeout(limit, async {
        let mut stream = TcpStream::connect(upstream).await?;
        write_framed(&mut stream, query).await?;
        loop {
            let msg = read_framed(&mut stream).await?;
            if answers(&msg, id, question) {
                return Ok(msg);
            }
        }
    })
    .await
    .map_err(|_| timed_out())?
}

/// Reads one length-prefixed message (RFC 1035 §4.2.2).
pub async fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut msg).await?;
    Ok(msg)
}

/// Writes one message with its length prefix, in one write.
pub async fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let length = u16::try_from(msg.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "message too long for TCP"))?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await
}
