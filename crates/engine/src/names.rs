//! Generated container names, `adjective_surname` as Docker makes them, from our own
//! word lists (scientists and engineers whose work computing stands on).

const LEFT: &[&str] = &[
    "agile", "amber", "ample", "bold", "brave", "bright", "brisk", "calm", "candid", "careful",
    "cheerful", "clever", "cosmic", "crisp", "curious", "daring", "deft", "eager", "earnest",
    "elated", "epic", "fair", "fervent", "fond", "frank", "gentle", "glad", "golden", "graceful",
    "happy", "hardy", "honest", "humble", "jolly", "keen", "kind", "lively", "loyal", "lucid",
    "merry", "mellow", "modest", "nimble", "noble", "patient", "placid", "plucky", "polite",
    "proud", "quick", "quiet", "radiant", "rapid", "ready", "serene", "sharp", "shiny", "silent",
    "sincere", "smooth", "snappy", "solid", "spry", "steady", "stoic", "sturdy", "sunny", "swift",
    "tender", "tidy", "trusty", "upbeat", "valiant", "vivid", "warm", "wise", "witty", "zealous",
];

const RIGHT: &[&str] = &[
    "babbage",
    "backus",
    "bartik",
    "berners",
    "boole",
    "brooks",
    "cerf",
    "church",
    "codd",
    "conway",
    "corbato",
    "cray",
    "dahl",
    "dijkstra",
    "easley",
    "eckert",
    "engelbart",
    "feigenbaum",
    "floyd",
    "goldberg",
    "goldwasser",
    "hamilton",
    "hamming",
    "hartree",
    "hoare",
    "holberton",
    "hollerith",
    "hopper",
    "huffman",
    "iverson",
    "jennings",
    "kahan",
    "kay",
    "kernighan",
    "knuth",
    "lamport",
    "lovelace",
    "liskov",
    "mccarthy",
    "metcalfe",
    "minsky",
    "moore",
    "naur",
    "neumann",
    "newell",
    "nygaard",
    "pascal",
    "perlis",
    "postel",
    "rabin",
    "ritchie",
    "rivest",
    "sammet",
    "scott",
    "shamir",
    "shannon",
    "simon",
    "spaerck",
    "stallman",
    "stroustrup",
    "sutherland",
    "tarjan",
    "thompson",
    "torvalds",
    "turing",
    "valiant",
    "wilkes",
    "wirth",
    "wozniak",
    "yao",
    "zuse",
];

/// A random name; `attempt` > 0 appends a digit, as Docker does after a collision.
pub fn generate(seed: u64, attempt: u32) -> String {
    let l = LEFT[(seed % LEFT.len() as u64) as usize];
    let r = RIGHT[((seed / LEFT.len() as u64) % RIGHT.len() as u64) as usize];
    if attempt == 0 {
        format!("{l}_{r}")
    } else {
        format!("{l}_{r}{}", seed % 10)
    }
}

/// Docker's rule for names given by the user: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid("web-1") && valid("a.b_c") && !valid("-x") && !valid("a/b") && !valid("x"));
        let n = generate(12345, 0);
        assert!(n.contains('_') && valid(&n));
        assert_ne!(generate(12345, 1), n);
    }
}
