//! Registry authentication: parsing `WWW-Authenticate` challenges, and the per-host
//! memory of how a registry wants to be authenticated plus the bearer tokens obtained
//! for each scope, so that parallel layer downloads do not each pay for a 401.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: String,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        /// The scope the registry says the request needs, if it says so.
        scope: Option<String>,
    },
}

/// Parses one `WWW-Authenticate` value. Registries send a single challenge; when several
/// are present the first Bearer one wins, then the first Basic one.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut found: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let (scheme, after) = match rest.find(|c: char| c.is_whitespace()) {
            Some(i) => (&rest[..i], rest[i..].trim_start()),
            None => (rest, ""),
        };
        let (params, remainder) = parse_params(after);
        rest = remainder;
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(realm) = get("realm") {
                found.push(Challenge::Bearer {
                    realm,
                    service: get("service"),
                    scope: get("scope"),
                });
            }
        } else if scheme.eq_ignore_ascii_case("basic") {
            found.push(Challenge::Basic {
                realm: get("realm").unwrap_or_default(),
            });
        }
        if params.is_empty() && remainder.len() == after.len() && !rest.is_empty() {
            // No progress: skip a token we do not understand.
            rest = rest
                .split_once(',')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
        }
    }
    found
        .iter()
        .find(|c| matches!(c, Challenge::Bearer { .. }))
        .or_else(|| found.first())
        .cloned()
}

/// Parses `k="v", k2=v2` up to the start of the next challenge (a token followed by
/// whitespace rather than `=`). Returns the pairs and the unparsed remainder.
fn parse_params(mut s: &str) -> (Vec<(String, String)>, &str) {
    let mut params = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ', '\t']);
        let Some(eq) = s.find('=') else {
            return (params, s);
        };
        let key = &s[..eq];
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
            return (params, s);
        }
        let after = &s[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((key.to_string(), value));
        s = next;
    }
}

/// How a registry host authenticates, learned from its first challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthScheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// The answer of a token server; Docker Hub sends both spellings.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        // The spec's default lifetime is 60 s; refresh a little early.
        let lifetime = self.expires_in.unwrap_or(60).max(10);
        Some((token, Duration::from_secs(lifetime - 5)))
    }
}

struct CachedToken {
    token: String,
    expires: Instant,
}

/// Per-host schemes and per-scope tokens, shared by every thread of one client.
#[derive(Default)]
pub(crate) struct AuthCache {
    schemes: Mutex<HashMap<String, AuthScheme>>,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

impl AuthCache {
    pub fn scheme(&self, host: &str) -> Option<AuthScheme> {
        lock(&self.schemes).get(host).cloned()
    }

    pub fn set_scheme(&self, host: &str, scheme: AuthScheme) {
        lock(&self.schemes).insert(host.to_string(), scheme);
    }

    pub fn token(&self, host: &str, scope: &str) -> Option<String> {
        let tokens = lock(&self.tokens);
        let cached = tokens.get(&(host.to_string(), scope.to_string()))?;
        (cached.expires > Instant::now()).then(|| cached.token.clone())
    }

    pub fn set_token(&self, host: &str, scope: &str, token: String, lifetime: Duration) {
        lock(&self.tokens).insert(
            (host.to_string(), scope.to_string()),
            CachedToken {
                token,
                expires: Instant::now() + lifetime,
            },
        );
    }

    pub fn forget_token(&self, host: &str, scope: &str) {
        lock(&self.tokens).remove(&(host.to_string(), scope.to_string()));
    }
}

/// A poisoned cache only means another thread panicked mid-insert of a plain value:
/// the map is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
    }

    #[test]
    fn basic_and_odd_forms() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic {
                realm: "Registry Realm".into()
            })
        );
        assert_eq!(
            parse_challenge("basic"),
            Some(Challenge::Basic { realm: "".into() })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x", Bearer realm=http://t/token, service=s"#),
            Some(Challenge::Bearer {
                realm: "http://t/token".into(),
                service: Some("s".into()),
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="a\"b""#),
            Some(Challenge::Bearer {
                realm: "a\"b".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(""), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn token_response_spellings() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.into_token().unwrap().0, "a");
        let t: TokenResponse =
            serde_json::from_str(r#"{"token":"t","access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(
            t.into_token().unwrap(),
            ("t".into(), Duration::from_secs(295))
        );
        let t: TokenResponse = serde_json::from_str(r#"{}"#).unwrap();
        assert!(t.into_token().is_none());
    }
}
