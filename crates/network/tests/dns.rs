//! The embedded DNS resolver over real sockets, on loopback only: a test resolver, fake
//! upstream servers on 127.0.0.1, and queries built by hand.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use berth_network::dns::{DnsConfig, DnsService, Resolver};

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_MX: u16 = 15;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;
/// Long enough for any answer on a loaded machine; only waited out when none comes.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Knows "web" (two v4 addresses) and "v6only" in scope "c1", nothing in other scopes.
struct Names;

impl Resolver for Names {
    fn lookup(&self, scope: &str, name: &str) -> Option<Vec<IpAddr>> {
        if scope != "c1" {
            return None;
        }
        match name {
            "web" | "web.mynet" => Some(vec![
                IpAddr::V4(Ipv4Addr::new(172, 18, 0, 2)),
                IpAddr::V4(Ipv4Addr::new(172, 18, 0, 3)),
            ]),
            "v6only" => Some(vec!["fd00::5".parse().expect("address")]),
            _ => None,
        }
    }

    fn reverse(&self, scope: &str, addr: IpAddr) -> Option<String> {
        (scope == "c1" && addr == IpAddr::V4(Ipv4Addr::new(172, 18, 0, 2)))
            .then(|| "web.mynet".to_string())
    }
}

fn service() -> DnsService {
    DnsService::start(Arc::new(Names)).expect("start the DNS service")
}

/// Binds a UDP socket and a TCP listener on 127.0.0.1 and serves them as `scope`.
fn serve(
    service: &DnsService,
    scope: &str,
    upstreams: Vec<SocketAddr>,
) -> (SocketAddr, SocketAddr) {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let addrs = (
        udp.local_addr().expect("udp addr"),
        tcp.local_addr().expect("tcp addr"),
    );
    service.serve(scope, udp, tcp, upstreams).expect("serve");
    addrs
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|label| !label.is_empty())
    {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

/// A standard query with RD set.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut msg = id.to_be_bytes().to_vec();
    msg.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    msg.extend_from_slice(&encode_name(name));
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    msg
}

/// A response as the tests look at it.
#[derive(Debug)]
struct Reply {
    id: u16,
    flags: u16,
    qdcount: u16,
    answers: Vec<Record>,
}

#[derive(Debug)]
struct Record {
    rtype: u16,
    ttl: u32,
    rdata: Vec<u8>,
}

impl Reply {
    fn rcode(&self) -> u16 {
        self.flags & 0x000f
    }
    fn authoritative(&self) -> bool {
        self.flags & 0x0400 != 0
    }
    fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    fn addresses(&self) -> HashSet<IpAddr> {
        self.answers
            .iter()
            .filter_map(|record| match record.rdata.len() {
                4 => <[u8; 4]>::try_from(record.rdata.as_slice())
                    .ok()
                    .map(IpAddr::from),
                16 => <[u8; 16]>::try_from(record.rdata.as_slice())
                    .ok()
                    .map(IpAddr::from),
                _ => None,
            })
            .collect()
    }
}

fn be16(msg: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([msg[at], msg[at + 1]])
}

/// Offset past the name at `at` (a pointer ends it).
fn skip_name(msg: &[u8], mut at: usize) -> usize {
    loop {
        match msg[at] {
            0 => return at + 1,
            len if len & 0xc0 == 0xc0 => return at + 2,
            len => at += 1 + usize::from(len),
        }
    }
}

/// Parses a response; panics (failing the test) on anything malformed.
fn parse(msg: &[u8]) -> Reply {
    assert!(msg.len() >= 12, "response shorter than a header: {msg:?}");
    let (qdcount, ancount) = (be16(msg, 4), be16(msg, 6));
    let mut at = 12;
    for _ in 0..qdcount {
        at = skip_name(msg, at) + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..ancount {
        at = skip_name(msg, at);
        let rtype = be16(msg, at);
        let ttl = u32::from_be_bytes([msg[at + 4], msg[at + 5], msg[at + 6], msg[at + 7]]);
        let rdlength = usize::from(be16(msg, at + 8));
        answers.push(Record {
            rtype,
            ttl,
            rdata: msg[at + 10..at + 10 + rdlength].to_vec(),
        });
        at += 10 + rdlength;
    }
    Reply {
        id: be16(msg, 0),
        flags: be16(msg, 2),
        qdcount,
        answers,
    }
}

/// The dotted form of an uncompressed name in rdata.
fn decode_name(wire: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut at = 0;
    while wire[at] != 0 {
        let len = usize::from(wire[at]);
        labels.push(String::from_utf8_lossy(&wire[at + 1..at + 1 + len]).into_owned());
        at += 1 + len;
    }
    labels.join(".")
}

fn udp_client(server: SocketAddr, wait: Duration) -> UdpSocket {
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    client.connect(server).expect("connect client");
    client.set_read_timeout(Some(wait)).expect("timeout");
    client
}

fn recv(client: &UdpSocket) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 65535];
    let len = client.recv(&mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

fn ask_udp(server: SocketAddr, msg: &[u8]) -> Reply {
    let client = udp_client(server, ANSWER_WAIT);
    client.send(msg).expect("send");
    parse(&recv(&client).expect("an answer"))
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = (msg.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    out
}

fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 2];
    stream.read_exact(&mut length)?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut msg)?;
    Ok(msg)
}

/// Sends all `msgs` on one connection, in one write, and reads as many answers.
fn ask_tcp(server: SocketAddr, msgs: &[Vec<u8>]) -> Vec<Reply> {
    let mut stream = TcpStream::connect(server).expect("connect");
    stream.set_read_timeout(Some(ANSWER_WAIT)).expect("timeout");
    let all: Vec<u8> = msgs.iter().flat_map(|msg| framed(msg)).collect();
    stream.write_all(&all).expect("write");
    msgs.iter()
        .map(|_| parse(&read_framed(&mut stream).expect("an answer")))
        .collect()
}

/// An upstream's answer to `query`: its id and question, one A record for `addr` unless
/// `truncated` (then none, and TC set).
fn upstream_answer(query: &[u8], addr: [u8; 4], truncated: bool) -> Vec<u8> {
    let question_end = skip_name(query, 12) + 4;
    let mut msg = query[..2].to_vec();
    let flags: u16 = 0x8180 | if truncated { 0x0200 } else { 0 };
    msg.extend_from_slice(&flags.to_be_bytes());
    msg.extend_from_slice(&[0, 1, 0, u8::from(!truncated), 0, 0, 0, 0]);
    msg.extend_from_slice(&query[12..question_end]);
    if !truncated {
        msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        msg.extend_from_slice(&addr);
    }
    msg
}

/// An answer with one record of `rtype` carrying `rdata`.
fn upstream_record(query: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let question_end = skip_name(query, 12) + 4;
    let mut msg = query[..2].to_vec();
    msg.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    msg.extend_from_slice(&query[12..question_end]);
    msg.extend_from_slice(&[0xc0, 12]);
    msg.extend_from_slice(&rtype.to_be_bytes());
    msg.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
    msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    msg.extend_from_slice(rdata);
    msg
}

/// The same query's header with another rcode and nothing else.
fn upstream_rcode(query: &[u8], rcode: u8) -> Vec<u8> {
    let question_end = skip_name(query, 12) + 4;
    let mut msg = query[..question_end].to_vec();
    msg[2] |= 0x80;
    msg[3] = 0x80 | rcode;
    msg
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Udp,
    Tcp,
}

/// What a fake upstream was asked, over which protocol, in order.
type Asked = Arc<Mutex<Vec<(Proto, Vec<u8>)>>>;

type Behaviour = dyn Fn(&[u8], Proto) -> Option<Vec<u8>> + Send + Sync;

/// A fake upstream on 127.0.0.1 (UDP and TCP on one port) answering with `behaviour`
/// and recording what it was asked. Its threads end when it is dropped.
struct FakeUpstream {
    addr: SocketAddr,
    asked: Asked,
    done: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl FakeUpstream {
    fn start(
        behaviour: impl Fn(&[u8], Proto) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> FakeUpstream {
        let (udp, tcp) = (0..50)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let tcp = TcpListener::bind(udp.local_addr().ok()?).ok()?;
                Some((udp, tcp))
            })
            .expect("a port free for both UDP and TCP");
        let addr = udp.local_addr().expect("addr");
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        let asked: Asked = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");

        let udp_thread = {
            let (behaviour, asked, done) = (behaviour.clone(), asked.clone(), done.clone());
            thread::spawn(move || {
                let mut buf = vec![0u8; 65535];
                while !done.load(Ordering::Relaxed) {
                    let Ok((len, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let msg = buf[..len].to_vec();
                    asked.lock().expect("lock").push((Proto::Udp, msg.clone()));
                    if let Some(answer) = behaviour(&msg, Proto::Udp) {
                        let _ = udp.send_to(&answer, from);
                    }
                }
            })
        };
        let tcp_thread = {
            let (behaviour, asked, done) = (behaviour, asked.clone(), done.clone());
            thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = tcp.accept() else {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    while let Ok(msg) = read_framed(&mut stream) {
                        asked.lock().expect("lock").push((Proto::Tcp, msg.clone()));
                        if let Some(answer) = behaviour(&msg, Proto::Tcp) {
                            let _ = stream.write_all(&framed(&answer));
                        }
                    }
                }
            })
        };
        FakeUpstream {
            addr,
            asked,
            done,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn asked(&self) -> Vec<(Proto, Vec<u8>)> {
        self.asked.lock().expect("lock").clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[test]
fn answers_a_for_a_known_name_in_any_case_with_a_trailing_dot() {
    let service = service();
    let (udp, _) = serve(&service, "c1", vec![]);
    let reply = ask_udp(udp, &query(0x1234, "Web.MyNet.", TYPE_A));
    assert_eq!(reply.id, 0x1234);
    assert_eq!(reply.rcode(), 0);
    assert!(reply.authoritative());
    assert_eq!(reply.qdcount, 1);
    assert_eq!(
        reply.addresses(),
        HashSet::from([IpAddr::from([172, 18, 0, 2]), IpAddr::from([172, 18, 0, 3])])
    );
    assert!(reply
        .answers
        .iter()
        .all(|record| record.rtype == TYPE_A && record.ttl == 600));
}

#[test]
fn aaaa_for_a_v4_only_name_is_noerror_and_empty_and_not_forwarded() {
    let upstream =
        FakeUpstream::start(|query, _| Some(upstream_answer(query, [192, 0, 2, 1], false)));
    let service = service();
    let (udp, _) = serve(&service, "c1", vec![upstream.addr]);
    let reply = ask_udp(udp, &query(7, "web", TYPE_AAAA));
    assert_eq!((reply.id, reply.rcode()), (7, 0));
    assert!(reply.authoritative());
    assert!(reply.answers.is_empty());
    assert!(
        upstream.asked().is_empty(),
        "a name of ours is never forwarded"
    );

    let reply = ask_udp(udp, &query(8, "v6only", TYPE_AAAA));
    assert_eq!(
        reply.addresses(),
        HashSet::from(["fd00::5".parse::<IpAddr>().expect("address")])
    );
    assert_eq!(reply.answers[0].rtype, TYPE_AAAA);
}

#[test]
fn the_scope_decides_what_is_known() {
    // "web" is known in c1 only; c2 has no upstream, so its query fails over to SERVFAIL.
    let service = service();
    let (c1, _) = serve(&service, "c1", vec![]);
    let (c2, _) = serve(&service, "c2", vec![]);
    assert_eq!(ask_udp(c1, &query(1, "web", TYPE_A)).answers.len(), 2);
    assert_eq!(ask_udp(c2, &query(2, "web", TYPE_A)).rcode(), 2);
}

#[test]
fn unknown_names_and_other_types_are_forwarded_and_relayed_with_the_clients_id() {
    let upstream = FakeUpstream::start(|query, _| {
        let qtype = be16(query, skip_name(query, 12));
        Some(match qtype {
            TYPE_MX => upstream_record(query, TYPE_MX, b"\x00\x0a\x04mail\x00"),
            _ => upstream_answer(query, [192, 0, 2, 80], false),
        })
    });
    let service = service();
    let (udp, _) = serve(&service, "c1", vec![upstream.addr]);

    let reply = ask_udp(udp, &query(0xbeef, "Example.COM", TYPE_A));
    assert_eq!(reply.id, 0xbeef);
    assert_eq!(reply.rcode(), 0);
    assert!(!reply.authoritative(), "relayed as the upstream sent it");
    assert_eq!(
        reply.addresses(),
        HashSet::from([IpAddr::from([192, 0, 2, 80])])
    );
    assert_eq!(reply.answers[0].ttl, 60, "the upstream's TTL, not ours");

    // MX for one of our names still goes upstream.
    let reply = ask_udp(udp, &query(0xbef0, "web", TYPE_MX));
    assert_eq!(reply.id, 0xbef0);
    assert_eq!(reply.answers[0].rtype, TYPE_MX);

    let asked = upstream.asked();
    assert_eq!(asked.len(), 2);
    assert!(asked.iter().all(|(proto, _)| *proto == Proto::Udp));
    // The question went upstream unchanged, as asked.
    assert_eq!(&asked[0].1[12..], &query(0, "Example.COM", TYPE_A)[12..]);
}

#[test]
fn a_silent_upstream_is_given_up_for_the_next() {
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let servfail = FakeUpstream::start(|query, _| Some(upstream_rcode(query, 2)));
    let working =
        FakeUpstream::start(|query, _| Some(upstream_answer(query, [198, 51, 100, 7], false)));
    let config = DnsConfig {
        forward_timeout: Duration::from_millis(300),
        ..DnsConfig::default()
    };
    let service = DnsService::start_with_config(Arc::new(Names), config).expect("start");
    let upstreams = vec![
        silent.local_addr().expect("addr"),
        servfail.addr,
        working.addr,
    ];
    let (udp, _) = serve(&service, "c1", upstreams);

    let reply = ask_udp(udp, &query(0x4242, "elsewhere.example", TYPE_A));
    assert_eq!((reply.id, reply.rcode()), (0x4242, 0));
    assert_eq!(
        reply.addresses(),
        HashSet::from([IpAddr::from([198, 51, 100, 7])])
    );

    // Asked in order: the silent one got the query first, the SERVFAIL one next.
    silent.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 512];
    let len = silent
        .recv(&mut buf)
        .expect("the silent upstream was asked");
    assert_eq!(&buf[12..len], &query(0, "elsewhere.example", TYPE_A)[12..]);
    assert_eq!(servfail.asked().len(), 1);
    assert_eq!(working.asked().len(), 1);
}

#[test]
fn no_upstream_or_none_reachable_is_servfail() {
    let service = service();
    let (none, _) = serve(&service, "c1", vec![]);
    let reply = ask_udp(none, &query(0x0101, "example.org", TYPE_A));
    assert_eq!((reply.id, reply.rcode()), (0x0101, 2));
    assert!(reply.answers.is_empty());

    // A port nobody listens on: the ICMP refusal fails the upstream at once.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let (unreachable, tcp) = serve(&service, "c2", vec![closed]);
    let reply = ask_udp(unreachable, &query(0x0202, "example.org", TYPE_TXT));
    assert_eq!((reply.id, reply.rcode()), (0x0202, 2));
    let replies = ask_tcp(tcp, &[query(0x0303, "example.org", TYPE_A)]);
    assert_eq!((replies[0].id, replies[0].rcode()), (0x0303, 2));
}

#[test]
fn a_truncated_upstream_answer_is_fetched_again_over_tcp() {
    // Four character-strings of 255 octets: 1024 octets of rdata.
    let big_txt: Vec<u8> = (0..4)
        .flat_map(|_| std::iter::once(255u8).chain(std::iter::repeat_n(b'x', 255)))
        .collect();
    let upstream = FakeUpstream::start(move |query, proto| {
        let name_end = skip_name(query, 12);
        let qtype = be16(query, name_end);
        Some(match (proto, qtype) {
            (Proto::Udp, _) => upstream_answer(query, [0; 4], true),
            (Proto::Tcp, TYPE_TXT) => upstream_record(query, TYPE_TXT, &big_txt),
            (Proto::Tcp, _) => upstream_answer(query, [203, 0, 113, 9], false),
        })
    });
    let service = service();
    let (udp, tcp) = serve(&service, "c1", vec![upstream.addr]);

    // Fits in 512 once fetched over TCP: relayed whole, TC clear.
    let reply = ask_udp(udp, &query(0x5151, "big.example", TYPE_A));
    assert_eq!(reply.id, 0x5151);
    assert!(!reply.truncated());
    assert_eq!(
        reply.addresses(),
        HashSet::from([IpAddr::from([203, 0, 113, 9])])
    );
    let protos: Vec<Proto> = upstream
        .asked()
        .into_iter()
        .map(|(proto, _)| proto)
        .collect();
    assert_eq!(protos, [Proto::Udp, Proto::Tcp]);

    // Too big for a UDP client: TC and the question only, so the client moves to TCP...
    let reply = ask_udp(udp, &query(0x5252, "huge.example", TYPE_TXT));
    assert_eq!((reply.id, reply.qdcount), (0x5252, 1));
    assert!(reply.truncated());
    assert!(reply.answers.is_empty());
    // ...where it gets the whole answer.
    let replies = ask_tcp(tcp, &[query(0x5353, "huge.example", TYPE_TXT)]);
    assert_eq!(replies[0].id, 0x5353);
    assert!(!replies[0].truncated());
    assert_eq!(replies[0].answers[0].rdata.len(), 1024);
}

#[test]
fn tcp_serves_several_queries_on_one_connection() {
    let upstream =
        FakeUpstream::start(|query, _| Some(upstream_answer(query, [192, 0, 2, 53], false)));
    let service = service();
    let (_, tcp) = serve(&service, "c1", vec![upstream.addr]);
    let replies = ask_tcp(
        tcp,
        &[
            query(0x0a0a, "WEB", TYPE_A),
            query(0x0b0b, "outside.example", TYPE_A),
            query(0x0c0c, "web", TYPE_AAAA),
        ],
    );
    assert_eq!(replies[0].id, 0x0a0a);
    assert_eq!(replies[0].answers.len(), 2);
    assert!(replies[0].authoritative());
    assert_eq!(replies[1].id, 0x0b0b);
    assert_eq!(
        replies[1].addresses(),
        HashSet::from([IpAddr::from([192, 0, 2, 53])])
    );
    assert_eq!(
        (replies[2].id, replies[2].rcode(), replies[2].answers.len()),
        (0x0c0c, 0, 0)
    );
    // A TCP query is forwarded over TCP.
    let asked = upstream.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, Proto::Tcp);
}

#[test]
fn ptr_for_our_address_is_answered_and_others_forwarded() {
    let upstream = FakeUpstream::start(|query, _| Some(upstream_rcode(query, 3)));
    let service = service();
    let (udp, _) = serve(&service, "c1", vec![upstream.addr]);

    let reply = ask_udp(udp, &query(0x0d0d, "2.0.18.172.in-addr.arpa.", TYPE_PTR));
    assert_eq!((reply.id, reply.rcode()), (0x0d0d, 0));
    assert!(reply.authoritative());
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.answers[0].rtype, TYPE_PTR);
    assert_eq!(decode_name(&reply.answers[0].rdata), "web.mynet");
    assert!(upstream.asked().is_empty());

    let reply = ask_udp(udp, &query(0x0e0e, "9.9.9.10.in-addr.arpa", TYPE_PTR));
    assert_eq!(
        (reply.id, reply.rcode()),
        (0x0e0e, 3),
        "the upstream's NXDOMAIN relayed"
    );
    assert_eq!(upstream.asked().len(), 1);
}

/// Sends `bad`, then a good query: the first datagram back must be `expected` (an rcode
/// for `bad`'s id), or the good query's answer when `bad` is to be dropped.
fn expect_after_malformed(client: &UdpSocket, bad: &[u8], expected: Option<u16>) {
    client.send(bad).expect("send");
    client.send(&query(0x7777, "web", TYPE_A)).expect("send");
    let first = parse(&recv(client).expect("an answer"));
    match expected {
        Some(rcode) => {
            assert_eq!(first.id, be16(bad, 0), "{bad:x?}");
            assert_eq!(first.rcode(), rcode, "{bad:x?}");
            assert!(first.flags & 0x8000 != 0);
            let good = parse(&recv(client).expect("an answer"));
            assert_eq!((good.id, good.answers.len()), (0x7777, 2));
        }
        None => assert_eq!(
            (first.id, first.answers.len()),
            (0x7777, 2),
            "{bad:x?} not dropped"
        ),
    }
}

#[test]
fn malformed_queries_get_formerr_or_are_dropped() {
    let service = service();
    let (udp, _) = serve(&service, "c1", vec![]);
    let client = udp_client(udp, ANSWER_WAIT);
    let header = |id: u16, flags: u16, qdcount: u16| {
        let mut msg = id.to_be_bytes().to_vec();
        msg.extend_from_slice(&flags.to_be_bytes());
        msg.extend_from_slice(&qdcount.to_be_bytes());
        msg.extend_from_slice(&[0; 6]);
        msg
    };

    expect_after_malformed(&client, b"\x01\x02\x03", None);
    expect_after_malformed(&client, &[], None);
    // A response sent to us.
    expect_after_malformed(
        &client,
        &query(0x1111, "web", TYPE_A)
            .iter()
            .enumerate()
            .map(|(i, b)| if i == 2 { b | 0x80 } else { *b })
            .collect::<Vec<u8>>(),
        None,
    );

    let mut pointer_loop = header(0x2222, 0x0100, 1);
    pointer_loop.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01");
    expect_after_malformed(&client, &pointer_loop, Some(1));

    let mut past_end = header(0x3333, 0x0100, 1);
    past_end.extend_from_slice(b"\x3fabc");
    expect_after_malformed(&client, &past_end, Some(1));

    expect_after_malformed(&client, &header(0x4444, 0x0100, 0), Some(1));
    let mut two = query(0x5555, "web", TYPE_A);
    two[5] = 2;
    expect_after_malformed(&client, &two, Some(1));

    let mut status = query(0x6666, "web", TYPE_A);
    status[2] = 0x10; // opcode STATUS
    expect_after_malformed(&client, &status, Some(4));

    // Random junk: whatever comes back answers some junk's id (a forwarded one may come
    // late), and the server lives on.
    let mut junk_ids = HashSet::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..300u16 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 80) as usize;
        let junk: Vec<u8> = (0..len)
            .map(|i| (state.rotate_left(i as u32 * 7) as u8) ^ (i as u8))
            .collect();
        if junk.len() >= 2 {
            junk_ids.insert(be16(&junk, 0));
        }
        client.send(&junk).expect("send");
        let good_id = 0x8000 | round;
        client.send(&query(good_id, "web", TYPE_A)).expect("send");
        loop {
            let reply = parse(&recv(&client).expect("an answer"));
            if reply.id == good_id && reply.answers.len() == 2 {
                break;
            }
            assert!(junk_ids.contains(&reply.id), "{junk:x?} got {reply:?}");
        }
    }
}

#[test]
fn stop_closes_the_scopes_sockets_and_leaves_others_served() {
    let service = service();
    let (udp, tcp) = serve(&service, "c1", vec![]);
    let (other, _) = serve(&service, "c2", vec![]);
    assert_eq!(ask_udp(udp, &query(1, "web", TYPE_A)).answers.len(), 2);
    let mut open = TcpStream::connect(tcp).expect("connect");
    open.set_read_timeout(Some(ANSWER_WAIT)).expect("timeout");
    open.write_all(&framed(&query(4, "web", TYPE_A)))
        .expect("write");
    assert_eq!(parse(&read_framed(&mut open).expect("an answer")).id, 4);

    service.stop("c1");
    let mut buf = [0u8; 1];
    assert_eq!(
        open.read(&mut buf).expect("EOF, not a timeout"),
        0,
        "connection closed"
    );
    let refused = TcpStream::connect(tcp).expect_err("the listener is closed");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    let client = udp_client(udp, Duration::from_millis(500));
    client.send(&query(2, "web", TYPE_A)).expect("send");
    assert!(recv(&client).is_err(), "no answer from a stopped scope");
    assert_eq!(ask_udp(other, &query(3, "web", TYPE_A)).id, 3);

    // Stopped, the scope can be served again; served, it cannot be twice.
    serve(&service, "c1", vec![]);
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
    let again = service
        .serve("c1", udp, tcp, vec![])
        .expect_err("served twice");
    assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    service.stop("not-served");
}

#[test]
fn stop_ends_a_forward_in_flight() {
    // The upstream never answers and the timeout is far away: only `stop` ends the wait.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    silent.set_read_timeout(Some(ANSWER_WAIT)).expect("timeout");
    let config = DnsConfig {
        forward_timeout: Duration::from_secs(600),
        ..DnsConfig::default()
    };
    let service = DnsService::start_with_config(Arc::new(Names), config).expect("start");
    let (udp, _) = serve(&service, "c1", vec![silent.local_addr().expect("addr")]);
    let client = udp_client(udp, Duration::from_millis(500));
    client
        .send(&query(0x1010, "slow.example", TYPE_A))
        .expect("send");
    let mut buf = [0u8; 512];
    let (_, forwarder) = silent
        .recv_from(&mut buf)
        .expect("the query reached the upstream");

    service.stop("c1");
    // The forwarding socket is closed: a late answer from the upstream it is connected
    // to is refused (from any other address it would be refused even while open).
    silent.connect(forwarder).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    silent
        .send(&upstream_answer(&buf, [192, 0, 2, 1], false))
        .expect("send");
    let refused = recv(&silent).expect_err("nobody listens any more");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    assert!(recv(&client).is_err(), "no answer after stop");
}

#[test]
fn the_service_can_be_shared_between_threads() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<DnsService>();
    let service = Arc::new(service());
    let (udp, _) = serve(&service, "c1", vec![]);
    let from_another = {
        let service = Arc::clone(&service);
        thread::spawn(move || serve(&service, "c2", vec![]))
            .join()
            .expect("thread")
    };
    assert_eq!(ask_udp(udp, &query(1, "web", TYPE_A)).id, 1);
    assert_eq!(ask_udp(from_another.0, &query(2, "web", TYPE_A)).rcode(), 2);
}

#[test]
fn dropping_the_service_closes_every_socket() {
    let service = service();
    let (udp, tcp) = serve(&service, "c1", vec![]);
    // An open connection ends too.
    let mut open = TcpStream::connect(tcp).expect("connect");
    assert_eq!(ask_udp(udp, &query(1, "web", TYPE_A)).answers.len(), 2);
    drop(service);
    let refused = TcpStream::connect(tcp).expect_err("the listener is closed");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    open.set_read_timeout(Some(ANSWER_WAIT)).expect("timeout");
    let mut buf = [0u8; 1];
    assert_eq!(open.read(&mut buf).expect("EOF, not a timeout"), 0);
}
