//! The DNS wire format (RFC 1035 §4, EDNS from RFC 6891) as far as the embedded resolver
//! needs it: read a header, a question and the records of a query (to find its OPT), and
//! build the few responses we answer ourselves.
//!
//! Every read is bounds-checked and returns a [`WireError`] instead of panicking: the
//! input comes from containers and from upstream servers, and neither is trusted.

use std::fmt;

/// Length of the fixed header that starts every message.
pub const HEADER_LEN: usize = 12;
/// The largest UDP message a client may assume without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_LIMIT: usize = 512;
/// The UDP payload size we advertise in our own OPT records (DNS flag day 2020).
pub const OUR_UDP_PAYLOAD: u16 = 1232;
/// The largest name, in wire form, including the terminating root label.
const MAX_NAME_LEN: usize = 255;
/// Compression pointers followed in one name before it is judged a loop. Each pointer
/// must also point before the labels that led to it, so this only caps the work.
const MAX_POINTERS: usize = 64;

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;

pub const OPCODE_QUERY: u8 = 0;

/// Response codes (RFC 1035 §4.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NotImp = 4,
    Refused = 5,
}

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const FLAG_CD: u16 = 0x0010;
const OPCODE_MASK: u16 = 0x7800;

/// Why a message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The message ends inside a field.
    Truncated,
    /// A name is longer than 255 octets.
    NameTooLong,
    /// A compression pointer points forward, at itself, or pointers chain too long.
    PointerLoop,
    /// A label type other than a plain label or a pointer (RFC 6891 retired the others).
    BadLabelType,
    /// More than one OPT record, or an OPT whose owner is not the root.
    BadOpt,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "message truncated",
            WireError::NameTooLong => "name longer than 255 octets",
            WireError::PointerLoop => "compression pointer loop",
            WireError::BadLabelType => "unknown label type",
            WireError::BadOpt => "malformed OPT record",
        })
    }
}

fn read_u16(msg: &[u8], at: usize) -> Result<u16, WireError> {
    match msg.get(at..at.checked_add(2).ok_or(WireError::Truncated)?) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(WireError::Truncated),
    }
}

/// The fixed header of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    /// Reads the header; None if the message is shorter than a header.
    pub fn parse(msg: &[u8]) -> Option<Header> {
        Some(Header {
            id: read_u16(msg, 0).ok()?,
            flags: read_u16(msg, 2).ok()?,
            qdcount: read_u16(msg, 4).ok()?,
            ancount: read_u16(msg, 6).ok()?,
            nscount: read_u16(msg, 8).ok()?,
            arcount: read_u16(msg, 10).ok()?,
        })
    }

    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }

    pub fn opcode(&self) -> u8 {
        // Four bits: the cast cannot lose anything.
        ((self.flags & OPCODE_MASK) >> 11) as u8
    }

    pub fn is_truncated(&self) -> bool {
        self.flags & FLAG_TC != 0
    }

    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000f) as u8
    }

    /// The flags of our response to a query with these flags: QR and RA set, the opcode,
    /// RD and CD echoed (RFC 1035 §4.1.1, RFC 4035 §3.2.2), everything else clear.
    fn response_flags(&self, authoritative: bool, rcode: Rcode) -> u16 {
        let mut flags = FLAG_QR | FLAG_RA | (self.flags & (OPCODE_MASK | FLAG_RD | FLAG_CD));
        if authoritative {
            flags |= FLAG_AA;
        }
        flags | rcode as u16
    }

    fn write(&self, out: &mut Vec<u8>) {
        for field in [
            self.id,
            self.flags,
            self.qdcount,
            self.ancount,
            self.nscount,
            self.arcount,
        ] {
            out.extend_from_slice(&field.to_be_bytes());
        }
    }
}

/// A domain name read from a message, kept in uncompressed wire form with the case the
/// sender used (a response must echo the question as asked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    wire: Vec<u8>,
}

impl Name {
    /// Reads the name at `start`, following compression pointers. Returns it and the
    /// offset just past the name where it starts (past the first pointer, if any).
    pub fn read(msg: &[u8], start: usize) -> Result<(Name, usize), WireError> {
        let mut wire = Vec::with_capacity(32);
        let mut pos = start;
        // Where the labels now being read began: a pointer must point before it.
        let mut run_start = start;
        let mut end = None;
        let mut pointers = 0;
        loop {
            let len = *msg.get(pos).ok_or(WireError::Truncated)?;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    wire.push(0);
                    return Ok((Name { wire }, end.unwrap_or(pos + 1)));
                }
                0x00 => {
                    let len = usize::from(len);
                    let label = msg
                        .get(pos + 1..pos + 1 + len)
                        .ok_or(WireError::Truncated)?;
                    // This label, its length octet and the root label still to come.
                    if wire.len() + 1 + len + 1 > MAX_NAME_LEN {
                        return Err(WireError::NameTooLong);
                    }
                    wire.push(len as u8);
                    wire.extend_from_slice(label);
                    pos += 1 + len;
                }
                0xc0 => {
                    let low = *msg.get(pos + 1).ok_or(WireError::Truncated)?;
                    let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                    end.get_or_insert(pos + 2);
                    pointers += 1;
                    // Each jump lands strictly before the last one: every read terminates.
                    if target >= run_start || pointers > MAX_POINTERS {
                        return Err(WireError::PointerLoop);
                    }
                    pos = target;
                    run_start = target;
                }
                _ => return Err(WireError::BadLabelType),
            }
        }
    }

    /// Encodes a dotted name ("web.mynet", a trailing dot allowed); None if a label is
    /// empty or longer than 63 octets, or the whole is longer than 255.
    pub fn from_dotted(name: &str) -> Option<Name> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut wire = Vec::with_capacity(name.len() + 2);
        if !name.is_empty() {
            for label in name.split('.') {
                if label.is_empty() || label.len() > 63 {
                    return None;
                }
                wire.push(label.len() as u8);
                wire.extend_from_slice(label.as_bytes());
            }
        }
        wire.push(0);
        (wire.len() <= MAX_NAME_LEN).then_some(Name { wire })
    }

    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The labels, in order, without the root label.
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        let mut pos = 0;
        std::iter::from_fn(move || {
            let len = usize::from(*self.wire.get(pos)?);
            let label = self.wire.get(pos + 1..pos + 1 + len).filter(|_| len > 0)?;
            pos += 1 + len;
            Some(label)
        })
    }

    /// The name as a resolver key: lowercase, dotted, no trailing dot. None for the root
    /// and for names no container can have: a label holding a dot, a space, a control
    /// character or a non-ASCII octet (those could alias another name once dotted).
    pub fn lookup_key(&self) -> Option<String> {
        let mut key = String::with_capacity(self.wire.len());
        for label in self.labels() {
            if !key.is_empty() {
                key.push('.');
            }
            for &octet in label {
                if !octet.is_ascii_graphic() || octet == b'.' {
                    return None;
                }
                key.push(char::from(octet.to_ascii_lowercase()));
            }
        }
        (!key.is_empty()).then_some(key)
    }

    /// Equality as DNS compares names: ASCII case-insensitive.
    pub fn eq_ignore_case(&self, other: &Name) -> bool {
        self.wire.eq_ignore_ascii_case(&other.wire)
    }
}

/// The one question of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    /// Reads the question at `start`; returns it and the offset past it.
    pub fn read(msg: &[u8], start: usize) -> Result<(Question, usize), WireError> {
        let (name, pos) = Name::read(msg, start)?;
        let qtype = read_u16(msg, pos)?;
        let qclass = read_u16(msg, pos + 2)?;
        Ok((
            Question {
                name,
                qtype,
                qclass,
            },
            pos + 4,
        ))
    }

    /// Same name (ignoring case), type and class.
    pub fn matches(&self, other: &Question) -> bool {
        self.qtype == other.qtype
            && self.qclass == other.qclass
            && self.name.eq_ignore_case(&other.name)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.name.wire());
        out.extend_from_slice(&self.qtype.to_be_bytes());
        out.extend_from_slice(&self.qclass.to_be_bytes());
    }
}

/// What the EDNS OPT record of a query says (RFC 6891 §6.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The largest UDP response the requester can take.
    pub udp_payload: u16,
}

/// Walks the answer, authority and additional sections that follow the question (which
/// ends at `pos`), checking each record fits, and returns the OPT record's content.
pub fn read_edns(msg: &[u8], header: &Header, mut pos: usize) -> Result<Option<Edns>, WireError> {
    let before_additional = usize::from(header.ancount) + usize::from(header.nscount);
    let mut edns = None;
    for index in 0..before_additional + usize::from(header.arcount) {
        let (owner, after_owner) = Name::read(msg, pos)?;
        let rtype = read_u16(msg, after_owner)?;
        let class = read_u16(msg, after_owner + 2)?;
        let rdlength = usize::from(read_u16(msg, after_owner + 8)?);
        let end = after_owner + 10 + rdlength;
        if end > msg.len() {
            return Err(WireError::Truncated);
        }
        if rtype == TYPE_OPT && index >= before_additional {
            if edns.is_some() || owner.wire() != [0] {
                return Err(WireError::BadOpt);
            }
            edns = Some(Edns { udp_payload: class });
        }
        pos = end;
    }
    Ok(edns)
}

/// A response we answer ourselves: header, the question echoed, answers while they fit
/// in `limit` octets (then TC), and an OPT record if the query had one.
pub struct Response {
    buf: Vec<u8>,
    header: Header,
    limit: usize,
    opt: bool,
}

/// Length of an OPT record with no options: root owner, type, class, TTL, RDLENGTH.
const OPT_LEN: usize = 11;

impl Response {
    /// Starts the response to `query`. `question` is echoed if given; `opt` adds an OPT
    /// record (the query had one); `limit` is the largest message the client accepts.
    pub fn new(
        query: &Header,
        question: Option<&Question>,
        authoritative: bool,
        rcode: Rcode,
        opt: bool,
        limit: usize,
    ) -> Response {
        let header = Header {
            id: query.id,
            flags: query.response_flags(authoritative, rcode),
            qdcount: u16::from(question.is_some()),
            ancount: 0,
            nscount: 0,
            arcount: 0,
        };
        let mut buf = Vec::with_capacity(CLASSIC_UDP_LIMIT);
        header.write(&mut buf);
        if let Some(question) = question {
            question.write(&mut buf);
        }
        Response {
            buf,
            header,
            limit,
            opt,
        }
    }

    /// Adds an answer whose owner is the question's name (a pointer to offset 12). Returns
    /// false, and marks the response truncated, if it does not fit.
    pub fn push_answer(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) -> bool {
        let reserved = if self.opt { OPT_LEN } else { 0 };
        let Ok(rdlength) = u16::try_from(rdata.len()) else {
            self.header.flags |= FLAG_TC;
            return false;
        };
        if self.header.is_truncated()
            || self.buf.len() + 12 + rdata.len() + reserved > self.limit
            || self.header.ancount == u16::MAX
        {
            self.header.flags |= FLAG_TC;
            return false;
        }
        self.buf.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        self.buf.extend_from_slice(&rdlength.to_be_bytes());
        self.buf.extend_from_slice(rdata);
        self.header.ancount += 1;
        true
    }

    pub fn finish(mut self) -> Vec<u8> {
        if self.opt {
            self.buf.push(0);
            self.buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
            self.buf.extend_from_slice(&OUR_UDP_PAYLOAD.to_be_bytes());
            self.buf.extend_from_slice(&[0; 6]); // extended rcode, version 0, no flags, RDLENGTH 0
            self.header.arcount = 1;
        }
        let mut head = Vec::with_capacity(HEADER_LEN);
        self.header.write(&mut head);
        // `new` wrote a header first, so this always finds it.
        if let Some(start) = self.buf.get_mut(..HEADER_LEN) {
            start.copy_from_slice(&head);
        }
        self.buf
    }
}

/// A header-only response (no question): for queries whose question cannot be read or
/// whose opcode we do not implement.
pub fn header_only_response(query: &Header, rcode: Rcode) -> Vec<u8> {
    Response::new(query, None, false, rcode, false, CLASSIC_UDP_LIMIT).finish()
}

/// Fits an upstream response into a UDP client's `limit`: as it is if it fits, else its
/// header and question alone with TC set, which sends the client to TCP (RFC 2181 §9).
pub fn fit_udp(response: Vec<u8>, limit: usize) -> Vec<u8> {
    if response.len() <= limit {
        return response;
    }
    let Some(mut header) = Header::parse(&response) else {
        return response;
    };
    let question_end = match header.qdcount {
        1 => match Question::read(&response, HEADER_LEN) {
            Ok((_, end)) => end,
            Err(_) => HEADER_LEN,
        },
        _ => HEADER_LEN,
    };
    header.flags |= FLAG_TC;
    header.qdcount = u16::from(question_end > HEADER_LEN);
    header.ancount = 0;
    header.nscount = 0;
    header.arcount = 0;
    let mut out = Vec::with_capacity(question_end);
    header.write(&mut out);
    out.extend_from_slice(response.get(HEADER_LEN..question_end).unwrap_or_default());
    out
}

/// Writes `id` over the id of `msg` (a relayed response gets the client's id back).
pub fn set_id(msg: &mut [u8], id: u16) {
    if let Some(head) = msg.get_mut(..2) {
        head.copy_from_slice(&id.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(qdcount: u16, ancount: u16, arcount: u16) -> Vec<u8> {
        let mut out = Vec::new();
        Header {
            id: 0x1234,
            flags: FLAG_RD,
            qdcount,
            ancount,
            nscount: 0,
            arcount,
        }
        .write(&mut out);
        out
    }

    #[test]
    fn reads_a_plain_name_and_the_offset_past_it() {
        let mut msg = header(1, 0, 0);
        msg.extend_from_slice(b"\x03Web\x05mynet\x00\x00\x01\x00\x01");
        let (question, end) = Question::read(&msg, HEADER_LEN).expect("question");
        assert_eq!(end, msg.len());
        assert_eq!(question.qtype, TYPE_A);
        assert_eq!(question.name.lookup_key().as_deref(), Some("web.mynet"));
        assert_eq!(
            question.name.wire(),
            b"\x03Web\x05mynet\x00",
            "case kept on the wire"
        );
    }

    #[test]
    fn follows_a_backward_pointer_and_ends_after_it() {
        let mut msg = header(1, 0, 0);
        msg.extend_from_slice(b"\x05mynet\x00"); // offset 12
        msg.extend_from_slice(b"\x03web\xc0\x0c");
        let (name, end) = Name::read(&msg, 19).expect("name");
        assert_eq!(end, msg.len());
        assert_eq!(name.lookup_key().as_deref(), Some("web.mynet"));
    }

    #[test]
    fn rejects_pointer_loops_and_forward_pointers() {
        let mut to_itself = header(1, 0, 0);
        to_itself.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01");
        assert_eq!(Name::read(&to_itself, 12), Err(WireError::PointerLoop));

        let mut forward = header(1, 0, 0);
        forward.extend_from_slice(b"\xc0\x0e\x00\x01\x00\x01");
        assert_eq!(Name::read(&forward, 12), Err(WireError::PointerLoop));

        // Two labels pointing at each other through a pointer after them.
        let mut pair = header(1, 0, 0);
        pair.extend_from_slice(b"\x01a\xc0\x0c");
        assert_eq!(Name::read(&pair, 12), Err(WireError::PointerLoop));
    }

    #[test]
    fn rejects_labels_past_the_end_and_long_names() {
        let mut past_end = header(1, 0, 0);
        past_end.extend_from_slice(b"\x3fab");
        assert_eq!(Name::read(&past_end, 12), Err(WireError::Truncated));
        assert_eq!(Name::read(&past_end, 400), Err(WireError::Truncated));

        let mut half_pointer = header(1, 0, 0);
        half_pointer.push(0xc0);
        assert_eq!(Name::read(&half_pointer, 12), Err(WireError::Truncated));

        let mut long = header(1, 0, 0);
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(Name::read(&long, 12), Err(WireError::NameTooLong));

        let mut extended = header(1, 0, 0);
        extended.extend_from_slice(b"\x41a\x00");
        assert_eq!(Name::read(&extended, 12), Err(WireError::BadLabelType));
    }

    #[test]
    fn lookup_key_refuses_names_that_would_alias() {
        let dotted = Name {
            wire: b"\x03a.b\x00".to_vec(),
        };
        assert_eq!(dotted.lookup_key(), None);
        let spaced = Name {
            wire: b"\x03a b\x00".to_vec(),
        };
        assert_eq!(spaced.lookup_key(), None);
        assert_eq!(Name { wire: vec![0] }.lookup_key(), None);
    }

    #[test]
    fn from_dotted_checks_label_and_name_lengths() {
        assert_eq!(
            Name::from_dotted("web.mynet.").expect("name").wire(),
            b"\x03web\x05mynet\x00"
        );
        assert!(Name::from_dotted("a..b").is_none());
        assert!(Name::from_dotted(&"a".repeat(64)).is_none());
        assert!(Name::from_dotted(&vec!["a".repeat(63); 4].join(".")).is_none());
        assert!(Name::from_dotted(&vec!["a".repeat(62); 4].join(".")).is_some());
    }

    #[test]
    fn finds_the_opt_record_and_rejects_two() {
        let mut msg = header(1, 0, 1);
        msg.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        let question_end = msg.len();
        msg.extend_from_slice(b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00");
        let parsed = Header::parse(&msg).expect("header");
        assert_eq!(
            read_edns(&msg, &parsed, question_end),
            Ok(Some(Edns { udp_payload: 1232 }))
        );

        msg[11] = 2;
        msg.extend_from_slice(b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00");
        let parsed = Header::parse(&msg).expect("header");
        assert_eq!(
            read_edns(&msg, &parsed, question_end),
            Err(WireError::BadOpt)
        );

        msg.truncate(msg.len() - 11); // a second record that is not there
        let parsed = Header::parse(&msg).expect("header");
        assert_eq!(
            read_edns(&msg, &parsed, question_end),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn response_truncates_answers_that_do_not_fit() {
        let query = Header::parse(&header(1, 0, 0)).expect("header");
        let question = Question {
            name: Name::from_dotted("a").expect("name"),
            qtype: TYPE_A,
            qclass: CLASS_IN,
        };
        // Header 12 + question 7 = 19; each A answer 16; limit 60 takes two.
        let mut response = Response::new(&query, Some(&question), true, Rcode::NoError, false, 60);
        assert!(response.push_answer(TYPE_A, 600, &[10, 0, 0, 1]));
        assert!(response.push_answer(TYPE_A, 600, &[10, 0, 0, 2]));
        assert!(!response.push_answer(TYPE_A, 600, &[10, 0, 0, 3]));
        let bytes = response.finish();
        let parsed = Header::parse(&bytes).expect("header");
        assert_eq!(bytes.len(), 51);
        assert_eq!(parsed.ancount, 2);
        assert!(parsed.is_truncated() && parsed.is_response());
        assert_eq!(parsed.flags & FLAG_AA, FLAG_AA);
        assert_eq!(parsed.flags & FLAG_RD, FLAG_RD);
    }

    #[test]
    fn fit_udp_keeps_header_and_question_of_a_large_response() {
        let mut large = header(1, 1, 0);
        large.extend_from_slice(b"\x01a\x00\x00\x10\x00\x01");
        large.extend_from_slice(b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x00\x3c\x02\x58");
        large.extend_from_slice(&[b'x'; 600]);
        let fitted = fit_udp(large.clone(), 512);
        let parsed = Header::parse(&fitted).expect("header");
        assert_eq!(fitted.len(), 19);
        assert!(parsed.is_truncated());
        assert_eq!((parsed.qdcount, parsed.ancount), (1, 0));
        assert_eq!(fit_udp(large.clone(), 4096), large);
    }
}
