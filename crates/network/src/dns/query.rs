//! What to do with one query: answer it from the [`Resolver`], refuse it as malformed or
//! unsupported, or hand it to the forwarder. No I/O here, so all of it is unit-tested.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::wire::{
    self, Header, Name, Question, Rcode, Response, CLASSIC_UDP_LIMIT, CLASS_IN, HEADER_LEN,
    OPCODE_QUERY, TYPE_A, TYPE_AAAA, TYPE_PTR,
};
use super::Resolver;

/// TTL of the records we answer, as Docker's embedded DNS.
pub const ANSWER_TTL: u32 = 600;

/// How the query arrived, which bounds the size of the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The outcome of looking at a query.
#[derive(Debug)]
pub enum Action {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: ask the upstreams.
    Forward(Forward),
    /// Not even a header (or a response sent to us): say nothing.
    Drop,
}

/// A query to relay upstream, with what is needed to check and relay the answer.
#[derive(Debug)]
pub struct Forward {
    /// The query as the client sent it.
    pub query: Vec<u8>,
    pub client_id: u16,
    pub question: Question,
    /// The largest response the client takes (UDP: 512 or its EDNS size).
    pub limit: usize,
    /// What to answer if no upstream does: SERVFAIL.
    pub servfail: Vec<u8>,
}

/// Decides what to do with `msg`, a query from container `scope`.
pub fn handle(resolver: &dyn Resolver, scope: &str, msg: &[u8], transport: Transport) -> Action {
    let Some(header) = Header::parse(msg) else {
        return Action::Drop;
    };
    if header.is_response() {
        // Answering a response could start a loop between two servers.
        return Action::Drop;
    }
    if header.opcode() != OPCODE_QUERY {
        return Action::Reply(wire::header_only_response(&header, Rcode::NotImp));
    }
    if header.qdcount != 1 {
        return Action::Reply(wire::header_only_response(&header, Rcode::FormErr));
    }
    let Ok((question, question_end)) = Question::read(msg, HEADER_LEN) else {
        return Action::Reply(wire::header_only_response(&header, Rcode::FormErr));
    };
    let Ok(edns) = wire::read_edns(msg, &header, question_end) else {
        return Action::Reply(wire::header_only_response(&header, Rcode::FormErr));
    };
    let limit = match transport {
        Transport::Udp => edns.map_or(CLASSIC_UDP_LIMIT, |edns| {
            usize::from(edns.udp_payload).max(CLASSIC_UDP_LIMIT)
        }),
        Transport::Tcp => usize::from(u16::MAX),
    };
    let respond =
        |rcode| Response::new(&header, Some(&question), true, rcode, edns.is_some(), limit);

    if question.qclass == CLASS_IN {
        let local = catch_unwind(AssertUnwindSafe(|| {
            answer_locally(resolver, scope, &question)
        }));
        match local {
            Ok(Some(Local::Addresses(addrs))) => {
                let mut response = respond(Rcode::NoError);
                for addr in addrs {
                    let pushed = match addr {
                        IpAddr::V4(v4) => response.push_answer(TYPE_A, ANSWER_TTL, &v4.octets()),
                        IpAddr::V6(v6) => response.push_answer(TYPE_AAAA, ANSWER_TTL, &v6.octets()),
                    };
                    if !pushed {
                        break;
                    }
                }
                return Action::Reply(response.finish());
            }
            Ok(Some(Local::Pointer(target))) => {
                let mut response = respond(Rcode::NoError);
                response.push_answer(TYPE_PTR, ANSWER_TTL, target.wire());
                return Action::Reply(response.finish());
            }
            Ok(None) => {}
            // The resolver is the caller's code: its bug must not end this scope's task.
            Err(_) => return Action::Reply(respond(Rcode::ServFail).finish()),
        }
    }

    let servfail = Response::new(
        &header,
        Some(&question),
        false,
        Rcode::ServFail,
        edns.is_some(),
        limit,
    );
    Action::Forward(Forward {
        query: msg.to_vec(),
        client_id: header.id,
        question,
        limit,
        servfail: servfail.finish(),
    })
}

/// An answer of ours.
enum Local {
    /// A or AAAA: the addresses of the asked family, shuffled; maybe none.
    Addresses(Vec<IpAddr>),
    /// PTR: the name of the address.
    Pointer(Name),
}

fn answer_locally(resolver: &dyn Resolver, scope: &str, question: &Question) -> Option<Local> {
    match question.qtype {
        TYPE_A | TYPE_AAAA => {
            let key = question.name.lookup_key()?;
            let want_v4 = question.qtype == TYPE_A;
            let mut addrs: Vec<IpAddr> = resolver
                .lookup(scope, &key)?
                .into_iter()
                .filter(|addr| addr.is_ipv4() == want_v4)
                .collect();
            shuffle(&mut addrs);
            Some(Local::Addresses(addrs))
        }
        TYPE_PTR => {
            let addr = reverse_address(&question.name)?;
            // A name we cannot encode is treated as not ours rather than answered wrongly.
            Name::from_dotted(&resolver.reverse(scope, addr)?).map(Local::Pointer)
        }
        _ => None,
    }
}

/// The address a reverse name stands for: "4.3.2.1.in-addr.arpa" is 1.2.3.4 and an
/// ip6.arpa name has 32 nibbles. None for anything else, partial names included.
pub fn reverse_address(name: &Name) -> Option<IpAddr> {
    let labels: Vec<&[u8]> = name.labels().collect();
    match labels.as_slice() {
        [octets @ .., zone, arpa]
            if octets.len() == 4
                && zone.eq_ignore_ascii_case(b"in-addr")
                && arpa.eq_ignore_ascii_case(b"arpa") =>
        {
            let mut addr = [0u8; 4];
            for (slot, label) in addr.iter_mut().rev().zip(octets) {
                *slot = decimal_octet(label)?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(addr)))
        }
        [nibbles @ .., zone, arpa]
            if nibbles.len() == 32
                && zone.eq_ignore_ascii_case(b"ip6")
                && arpa.eq_ignore_ascii_case(b"arpa") =>
        {
            let mut addr = 0u128;
            for label in nibbles.iter().rev() {
                let [digit] = label else { return None };
                addr = addr << 4 | u128::from(char::from(*digit).to_digit(16)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(addr)))
        }
        _ => None,
    }
}

/// "0" to "255", without a sign or leading zeros (so one address has one name).
fn decimal_octet(label: &[u8]) -> Option<u8> {
    if label.is_empty() || label.len() > 3 || (label.len() > 1 && label[0] == b'0') {
        return None;
    }
    if !label.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(label).ok()?.parse().ok()
}

/// Fisher–Yates with [`random_u64`]: several addresses come back in a different order
/// each time, which spreads clients over the containers behind one name.
fn shuffle<T>(items: &mut [T]) {
    for upper in (1..items.len()).rev() {
        // The modulus is at most the slice length, so the cast back fits.
        let pick = (random_u64() % (upper as u64 + 1)) as usize;
        items.swap(upper, pick);
    }
}

/// A random number from the standard library's per-process random SipHash keys: enough
/// for shuffling and for the ids of forwarded queries, without a crate for it.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names;

    impl Resolver for Names {
        fn lookup(&self, _scope: &str, name: &str) -> Option<Vec<IpAddr>> {
            match name {
                "web" => Some(vec!["172.18.0.2".parse().ok()?, "172.18.0.3".parse().ok()?]),
                "many" => Some(
                    (0..100)
                        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
                        .collect(),
                ),
                "boom" => panic!("resolver bug"),
                _ => None,
            }
        }
        fn reverse(&self, _scope: &str, addr: IpAddr) -> Option<String> {
            (addr == IpAddr::V4(Ipv4Addr::new(172, 18, 0, 2))).then(|| "web.mynet".to_string())
        }
    }

    fn query(name: &[u8], qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut msg = vec![
            0xab,
            0xcd,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(edns.is_some()),
        ];
        msg.extend_from_slice(name);
        msg.extend_from_slice(&qtype.to_be_bytes());
        msg.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some(size) = edns {
            msg.extend_from_slice(&[0, 0, 41]);
            msg.extend_from_slice(&size.to_be_bytes());
            msg.extend_from_slice(&[0; 6]);
        }
        msg
    }

    fn reply(action: Action) -> Vec<u8> {
        match action {
            Action::Reply(bytes) => bytes,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn rcode_and_counts(msg: &[u8]) -> (u8, u16, u16) {
        let header = Header::parse(msg).expect("header");
        (header.rcode(), header.ancount, header.arcount)
    }

    #[test]
    fn answers_both_addresses_with_ttl_600() {
        let msg = reply(handle(
            &Names,
            "c1",
            &query(b"\x03WEB\x00", TYPE_A, None),
            Transport::Udp,
        ));
        assert_eq!(rcode_and_counts(&msg), (0, 2, 0));
        assert_eq!(&msg[..2], &[0xab, 0xcd]);
        // First answer: pointer, type A, class IN, TTL 600, four octets of 172.18.0.x.
        assert_eq!(
            &msg[21..33],
            &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x02, 0x58, 0, 4]
        );
        assert_eq!(&msg[33..36], &[172, 18, 0]);
        assert_eq!(&msg[12..17], b"\x03WEB\x00", "question echoed as asked");
    }

    #[test]
    fn udp_answer_respects_512_and_edns_size() {
        let plain = reply(handle(
            &Names,
            "c1",
            &query(b"\x04many\x00", TYPE_A, None),
            Transport::Udp,
        ));
        let header = Header::parse(&plain).expect("header");
        assert!(plain.len() <= 512 && header.is_truncated());
        assert_eq!(header.ancount, 30); // (512 - 22) / 16

        let edns = reply(handle(
            &Names,
            "c1",
            &query(b"\x04many\x00", TYPE_A, Some(4096)),
            Transport::Udp,
        ));
        let header = Header::parse(&edns).expect("header");
        assert!(!header.is_truncated());
        assert_eq!((header.ancount, header.arcount), (100, 1));

        let tcp = reply(handle(
            &Names,
            "c1",
            &query(b"\x04many\x00", TYPE_A, None),
            Transport::Tcp,
        ));
        assert_eq!(rcode_and_counts(&tcp), (0, 100, 0));
    }

    #[test]
    fn ptr_and_reverse_names() {
        let name = Name::from_dotted("2.0.18.172.in-addr.arpa").expect("name");
        let msg = reply(handle(
            &Names,
            "c1",
            &query(name.wire(), TYPE_PTR, None),
            Transport::Udp,
        ));
        assert_eq!(rcode_and_counts(&msg), (0, 1, 0));
        assert!(msg.ends_with(b"\x03web\x05mynet\x00"));

        let v6 = "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa";
        assert_eq!(
            reverse_address(&Name::from_dotted(v6).expect("name")),
            "4321:0:1:2:3:4:567:89ab".parse().ok()
        );
        for not_an_address in [
            "0.18.172.in-addr.arpa",
            "02.0.18.172.in-addr.arpa",
            "256.0.18.172.in-addr.arpa",
            "+2.0.18.172.in-addr.arpa",
        ] {
            assert_eq!(
                reverse_address(&Name::from_dotted(not_an_address).expect("name")),
                None,
                "{not_an_address}"
            );
        }
    }

    #[test]
    fn not_ours_is_forwarded_with_a_servfail_ready() {
        let asked = query(b"\x07example\x03com\x00", TYPE_A, None);
        let Action::Forward(forward) = handle(&Names, "c1", &asked, Transport::Udp) else {
            panic!("expected a forward");
        };
        assert_eq!(forward.query, asked);
        assert_eq!((forward.client_id, forward.limit), (0xabcd, 512));
        assert_eq!(rcode_and_counts(&forward.servfail), (2, 0, 0));

        // Other types for our names, too (Docker forwards MX, TXT, SRV...).
        let mx = query(b"\x03web\x00", 15, None);
        assert!(matches!(
            handle(&Names, "c1", &mx, Transport::Udp),
            Action::Forward(_)
        ));
    }

    #[test]
    fn formerr_notimp_and_drop() {
        let two_questions = {
            let mut msg = query(b"\x03web\x00", TYPE_A, None);
            msg[5] = 2;
            msg
        };
        assert_eq!(
            rcode_and_counts(&reply(handle(&Names, "c1", &two_questions, Transport::Udp))),
            (1, 0, 0)
        );

        let status = {
            let mut msg = query(b"\x03web\x00", TYPE_A, None);
            msg[2] = 0x10; // opcode 2
            msg
        };
        let notimp = reply(handle(&Names, "c1", &status, Transport::Udp));
        assert_eq!(rcode_and_counts(&notimp), (4, 0, 0));
        assert_eq!(notimp[2] & 0x78, 0x10, "opcode echoed");

        let response = {
            let mut msg = query(b"\x03web\x00", TYPE_A, None);
            msg[2] |= 0x80;
            msg
        };
        assert!(matches!(
            handle(&Names, "c1", &response, Transport::Udp),
            Action::Drop
        ));
        assert!(matches!(
            handle(&Names, "c1", &[1, 2, 3], Transport::Udp),
            Action::Drop
        ));
    }

    #[test]
    fn a_panicking_resolver_gets_servfail() {
        let msg = reply(handle(
            &Names,
            "c1",
            &query(b"\x04boom\x00", TYPE_A, None),
            Transport::Udp,
        ));
        assert_eq!(rcode_and_counts(&msg), (2, 0, 0));
    }

    /// Every prefix of a valid query, and every single-octet change to it, is handled
    /// without a panic; a simple generator adds random messages.
    #[test]
    fn no_input_panics() {
        let valid = query(b"\x03web\x05mynet\x00", TYPE_A, Some(1232));
        for len in 0..=valid.len() {
            let _ = handle(&Names, "c1", &valid[..len], Transport::Udp);
        }
        for at in 0..valid.len() {
            for value in [0x00, 0x01, 0x3f, 0x40, 0x80, 0xc0, 0xc1, 0xff] {
                let mut changed = valid.clone();
                changed[at] = value;
                let _ = handle(&Names, "c1", &changed, Transport::Tcp);
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 64) as usize;
            let mut msg: Vec<u8> = (0..len)
                .map(|i| (state >> (i % 8 * 8)) as u8 ^ i as u8)
                .collect();
            if let Some(flags) = msg.get_mut(2) {
                *flags &= 0x07; // queries, so parsing goes past the header
            }
            if let Some(counts) = msg.get_mut(4..12).filter(|_| state & 1 == 0) {
                // One question and few records, so parsing goes past the question.
                counts.copy_from_slice(&[
                    0,
                    1,
                    0,
                    (state >> 8) as u8 & 1,
                    0,
                    0,
                    0,
                    (state >> 9) as u8 & 3,
                ]);
            }
            let _ = handle(&Names, "c1", &msg, Transport::Udp);
            let _ = handle(&Names, "c1", &msg, Transport::Tcp);
        }
    }
}
