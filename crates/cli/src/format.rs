//! Docker's output conventions: aligned tables (Go's tabwriter with minwidth 10,
//! padding 3), human durations ("About a minute"), human sizes ("2.05MB", decimal
//! units, 3 significant digits), Go's `strconv.Quote`, and ID truncation.

use std::time::{SystemTime, UNIX_EPOCH};

/// Aligns tab-separated cells as Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)`:
/// each column is as wide as its widest cell plus 3, at least 10; the last cell of a
/// line (not followed by a tab) is not padded.
pub fn tabwrite(text: &str) -> String {
    tabwrite_with(text, 10, 3)
}

/// As `tabwrite`, with another minimum cell width (`docker top` uses 20).
pub fn tabwrite_min(text: &str, min_width: usize) -> String {
    tabwrite_with(text, min_width, 3)
}

/// Go's tabwriter with `minwidth` and `padding` (`docker version` uses 20 and 1).
pub fn tabwrite_with(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_inclusive('\n')
        .map(|l| l.strip_suffix('\n').unwrap_or(l).split('\t').collect())
        .collect();
    let mut out = String::with_capacity(text.len() * 2);
    // Go's tabwriter aligns a column over a block of consecutive lines that all
    // have a cell in that column; compute widths per block, column by column.
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len()]).collect();
    fn fill(
        lines: &[Vec<&str>],
        widths: &mut [Vec<usize>],
        min_width: usize,
        padding: usize,
        col: usize,
        start: usize,
        end: usize,
    ) {
        let mut i = start;
        while i < end {
            if lines[i].len() <= col + 1 {
                i += 1;
                continue;
            }
            let block_start = i;
            let mut width = min_width;
            while i < end && lines[i].len() > col + 1 {
                width = width.max(lines[i][col].chars().count() + padding);
                i += 1;
            }
            for w in widths.iter_mut().take(i).skip(block_start) {
                w[col] = width;
            }
            fill(lines, widths, min_width, padding, col + 1, block_start, i);
        }
    }
    fill(&lines, &mut widths, min_width, padding, 0, 0, lines.len());
    let ends_with_newline = text.ends_with('\n');
    for (n, cells) in lines.iter().enumerate() {
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[n][i].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        if n + 1 < lines.len() || ends_with_newline {
            out.push('\n');
        }
    }
    out
}

/// `docker inspect`'s output: the daemon's documents as they came (key order
/// kept), in a JSON array indented with four spaces, `<`, `>` and `&` escaped as
/// Go's json.MarshalIndent of raw messages does.
pub fn indent_raw(docs: &[Vec<u8>]) -> String {
    if docs.is_empty() {
        return "[]".into();
    }
    let mut joined = Vec::with_capacity(docs.iter().map(Vec::len).sum::<usize>() + docs.len() + 2);
    joined.push(b'[');
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            joined.push(b',');
        }
        joined.extend_from_slice(d);
    }
    joined.push(b']');
    indent_json_text(&joined, "    ")
}

/// Go's json.Indent over JSON text: structure re-laid, strings copied.
pub fn indent_json_text(src: &[u8], unit: &str) -> String {
    let text = String::from_utf8_lossy(src);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(src.len() * 2);
    let mut depth = 0usize;
    let mut i = 0;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(unit);
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                out.push('"');
                i += 1;
                while i < chars.len() {
                    let c = chars[i];
                    match c {
                        '\\' => {
                            out.push('\\');
                            if let Some(n) = chars.get(i + 1) {
                                out.push(*n);
                            }
                            i += 2;
                            continue;
                        }
                        '"' => break,
                        '<' => out.push_str("\\u003c"),
                        '>' => out.push_str("\\u003e"),
                        '&' => out.push_str("\\u0026"),
                        '\u{2028}' => out.push_str("\\u2028"),
                        '\u{2029}' => out.push_str("\\u2029"),
                        c => out.push(c),
                    }
                    i += 1;
                }
                out.push('"');
            }
            '{' | '[' => {
                // Empty containers stay as `{}` / `[]`.
                let close = if c == '{' { '}' } else { ']' };
                let mut j = i + 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if chars.get(j) == Some(&close) {
                    out.push(c);
                    out.push(close);
                    i = j;
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let seconds = secs;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Go rounds to the nearest hour here.
    let hours = (seconds + 1800) / 3600;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", seconds / 3600 / 24 / 365)
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// "5 seconds ago" for a Unix time.
pub fn ago(unix: i64) -> String {
    format!("{} ago", human_duration(now_unix() - unix))
}

/// Go's `%.*g`: `prec` significant digits, trailing zeros removed.
pub fn go_g(value: f64, prec: usize) -> String {
    if value == 0.0 {
        return "0".into();
    }
    if !value.is_finite() {
        return format!("{value}");
    }
    let sci = format!("{:.*e}", prec.saturating_sub(1), value);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (prec as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{value:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units.
pub fn human_size(size: f64) -> String {
    human_size_prec(size, 3)
}

/// Docker's `units.HumanSizeWithPrecision`.
pub fn human_size_prec(size: f64, prec: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut s = size;
    let mut i = 0;
    while s >= 1000.0 && i < UNITS.len() - 1 {
        s /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(s, prec), UNITS[i])
}

/// Docker's `units.BytesSize`: binary units ("1.5GiB"), used by stats and info.
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut s = size;
    let mut i = 0;
    while s >= 1024.0 && i < UNITS.len() - 1 {
        s /= 1024.0;
        i += 1;
    }
    format!("{}{}", go_g(s, 4), UNITS[i])
}

/// Parses "512m", "1g", "100k", "1024" into bytes (Docker's `units.RAMInBytes`).
pub fn ram_in_bytes(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        "p" | "pb" | "pib" => 1024.0f64.powi(5),
        _ => return None,
    };
    Some((num * mult) as i64)
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Docker's `formatter.Ellipsis`: at most `max` characters, the last one "…".
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The short form of an ID: without "sha256:", 12 characters.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// Parses an RFC 3339 time ("2026-12-01T21:04:14.123456789Z", offsets allowed)
/// into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    parse_rfc3339_offset(s).map(|(t, offset)| t - offset)
}

/// Go's `time.Parse(time.RFC3339Nano, s).Format(time.ANSIC)`, as docker's CLI shows
/// a daemon's build time: "Thu May  7 21:09:36 2026", the wall clock in the time's own
/// offset.
pub fn go_ansic(s: &str) -> Option<String> {
    if s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let (wall, _) = parse_rfc3339_offset(s)?;
    let (y, mo, d, h, mi, se) = civil_from_unix(wall);
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[(wall.div_euclid(86400) + 4).rem_euclid(7) as usize];
    let month = MONTHS.get(usize::try_from(mo - 1).ok()?)?;
    Some(format!(
        "{weekday} {month} {d:>2} {h:02}:{mi:02}:{se:02} {y}"
    ))
}

/// An RFC 3339 time as (its wall clock in Unix seconds, its offset in seconds).
fn parse_rfc3339_offset(s: &str) -> Option<(i64, i64)> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = s.get(19..)?;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        rest = &r[digits..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let oh: i64 = r.get(1..3)?.parse().ok()?;
            let om: i64 = r.get(4..6)?.parse().ok()?;
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    Some((
        days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se,
        offset,
    ))
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Unix seconds → (year, month, day, hour, minute, second) in UTC.
pub fn civil_from_unix(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let z = days + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Go's `time.Time.String()` of a Unix time in UTC: "2026-12-01 21:04:14 +0000 UTC".
pub fn go_time_string(t: i64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000 UTC")
}

/// RFC 3339 in UTC, seconds precision.
pub fn rfc3339(t: i64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Parses Docker's `--since`/`--until` values: a Unix time, an RFC 3339 time, or a
/// duration relative to now ("10m", "1h30m", "42s").
pub fn parse_time_arg(s: &str) -> Option<String> {
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') && !s.is_empty() {
        return Some(s.to_string());
    }
    if let Some(t) = parse_rfc3339(s) {
        return Some(t.to_string());
    }
    if let Some(t) = s
        .get(..10)
        .filter(|_| s.len() == 10)
        .and_then(|d| parse_rfc3339(&format!("{d}T00:00:00Z")))
    {
        return Some(t.to_string());
    }
    let secs = parse_go_duration(s)?;
    Some((now_unix() - secs).to_string())
}

/// "1h30m", "10s", "2m": whole seconds.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(2_048_000.0), "2.05MB");
        assert_eq!(human_size(1_240_000.0), "1.24MB");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(4_400_000_000.0), "4.4GB");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
    }

    #[test]
    fn durations_as_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3000), "50 minutes");
        assert_eq!(human_duration(3600 * 3), "3 hours");
        assert_eq!(human_duration(86400 * 3), "3 days");
    }

    #[test]
    fn table_alignment() {
        let t = tabwrite("CONTAINER ID\tIMAGE\tNAMES\nabc\tbusybox\tx\n");
        assert_eq!(
            t,
            "CONTAINER ID   IMAGE     NAMES\nabc            busybox   x\n"
        );
    }

    #[test]
    fn quoting_and_ellipsis() {
        assert_eq!(go_quote("sh -c \"x\""), "\"sh -c \\\"x\\\"\"");
        assert_eq!(
            ellipsis("abcdefghijklmnopqrstuvwxyz", 20),
            "abcdefghijklmnopqrs…"
        );
    }

    #[test]
    fn raw_json_indent_keeps_order() {
        let docs = vec![br#"{"Z":1,"A":{"b":[1, 2],"e":[],"o":{}},"s":"a<b"}"#.to_vec()];
        assert_eq!(
            indent_raw(&docs),
            "[\n    {\n        \"Z\": 1,\n        \"A\": {\n            \"b\": [\n                1,\n                2\n            ],\n            \"e\": [],\n            \"o\": {}\n        },\n        \"s\": \"a\\u003cb\"\n    }\n]"
        );
        assert_eq!(indent_raw(&[]), "[]");
    }

    #[test]
    fn times() {
        assert_eq!(parse_rfc3339("1970-01-02T00:00:01.5Z"), Some(86401));
        assert_eq!(
            parse_rfc3339("2026-12-01T21:04:14+01:00"),
            parse_rfc3339("2026-12-01T20:04:14Z")
        );
        let t = parse_rfc3339("2026-12-01T21:04:14Z").unwrap_or(0);
        assert_eq!(go_time_string(t), "2026-12-01 21:04:14 +0000 UTC");
        assert_eq!(parse_go_duration("1h30m"), Some(5400));
        assert_eq!(ram_in_bytes("512m"), Some(512 * 1024 * 1024));
    }

    #[test]
    fn build_times_as_docker_shows_them() {
        // dockerd 20.10's /version BuildTime, and what docker version prints.
        assert_eq!(
            go_ansic("2026-05-07T21:09:36.000000000+00:00").as_deref(),
            Some("Thu May  7 21:09:36 2026")
        );
        // The wall clock in the time's own offset, not converted to UTC.
        assert_eq!(
            go_ansic("2024-02-29T23:30:00-05:00").as_deref(),
            Some("Thu Feb 29 23:30:00 2024")
        );
        assert_eq!(go_ansic("Thu May  7 21:09:36 2026"), None);
        assert_eq!(go_ansic("2026-05-07 21:09:36Z"), None);
    }
}
