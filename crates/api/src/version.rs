//! API versions: `/v1.NN/...` paths, the range we serve, negotiation down to 1.24.

/// The newest API version we speak (what the 28.x docker CLI asks for).
pub const MAX_VERSION: (u32, u32) = (1, 50);
/// The oldest, as dockerd's minimum.
pub const MIN_VERSION: (u32, u32) = (1, 24);

pub fn format(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

pub fn parse(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Split `/v1.41/containers/json` into (Some((1, 41)), "/containers/json").
pub fn split_path(path: &str) -> (Option<(u32, u32)>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(v) = parse(&rest[..end]) {
            return (Some(v), &rest[end..]);
        }
    }
    (None, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            split_path("/v1.41/containers/json"),
            (Some((1, 41)), "/containers/json")
        );
        assert_eq!(split_path("/_ping"), (None, "/_ping"));
        assert_eq!(split_path("/v1.24"), (Some((1, 24)), ""));
        assert_eq!(split_path("/volumes"), (None, "/volumes"));
    }
}
