//! The times clients send (`since`, `until`): Unix seconds with an optional fraction,
//! as the docker CLI converts them, or RFC 3339 — read to the nanosecond.

/// `v` in nanoseconds since the epoch, or None when it is neither form.
pub fn nanos(v: &str) -> Option<i128> {
    let (secs, frac) = match berth_engine::container::parse_rfc3339_secs(v) {
        Some(secs) => {
            let frac = v.split_once('.').map_or("", |(_, f)| f);
            let digits = frac
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(frac.len());
            (secs as i128, &frac[..digits])
        }
        None => {
            let (s, f) = v.split_once('.').unwrap_or((v, ""));
            if f.is_empty() && v.contains('.') || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (s.parse::<i128>().ok()?, f)
        }
    };
    let digits: String = frac.chars().take(9).collect();
    let fraction = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse::<i128>().ok()?
    };
    Some(secs * 1_000_000_000 + fraction)
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms() {
        assert_eq!(nanos("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(nanos("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(
            nanos("1700000000.000000001"),
            Some(1_700_000_000_000_000_001)
        );
        assert_eq!(
            nanos("2023-11-14T22:13:20.25Z"),
            Some(1_700_000_000_250_000_000)
        );
        assert_eq!(
            nanos("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(nanos("soon"), None);
        assert_eq!(nanos("12.x"), None);
    }
}
