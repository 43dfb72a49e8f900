//! `docker import --change` and `docker commit --change`: the Dockerfile instructions
//! that only touch an image's configuration (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
//! ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR), applied as Docker applies them.

use std::collections::BTreeMap;

use berth_image::model::ContainerConfig;

/// Applies `changes` to `config`; an unknown or malformed instruction is an error that
/// names it, and nothing is applied.
pub fn apply(config: &ContainerConfig, changes: &[String]) -> Result<ContainerConfig, String> {
    let mut out = config.clone();
    for change in changes {
        let change = change.trim();
        if change.is_empty() {
            continue;
        }
        let (word, rest) = match change.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (change, ""),
        };
        match word.to_ascii_uppercase().as_str() {
            "CMD" => out.cmd = Some(command(rest)),
            "ENTRYPOINT" => out.entrypoint = Some(command(rest)),
            "ENV" => {
                let env = out.env.get_or_insert_with(Vec::new);
                for (k, v) in key_values(rest, "ENV")? {
                    env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = out.labels.get_or_insert_with(Default::default);
                for (k, v) in key_values(rest, "LABEL")? {
                    labels.insert(k, v);
                }
            }
            "EXPOSE" => {
                let ports = out.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    ports.insert(p, serde_json::json!({}));
                }
            }
            "VOLUME" => {
                let vols = out.volumes.get_or_insert_with(BTreeMap::new);
                let list = serde_json::from_str::<Vec<String>>(rest)
                    .unwrap_or_else(|_| rest.split_whitespace().map(String::from).collect());
                for v in list {
                    vols.insert(v, serde_json::json!({}));
                }
            }
            "WORKDIR" => out.working_dir = Some(rest.to_string()),
            "USER" => out.user = Some(rest.to_string()),
            "STOPSIGNAL" => out.stop_signal = Some(rest.to_string()),
            "ONBUILD" => out
                .on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_string()),
            other => return Err(format!("{other} is not a valid change command")),
        }
    }
    Ok(out)
}

/// The JSON (exec) form, else the shell form wrapped in `/bin/sh -c`.
fn command(rest: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(v) => v,
        Err(_) => vec!["/bin/sh".into(), "-c".into(), rest.to_string()],
    }
}

/// `k=v k2="v 2"` or the legacy `k v with spaces`.
fn key_values(rest: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{what} needs a name and a value"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    for word in shell_words(rest) {
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| format!("{what} names must have a value: {word}"))?;
        if k.is_empty() {
            return Err(format!("{what} names can not be blank"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Splits on unquoted whitespace, removing double and single quotes and backslashes.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    let mut any = false;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                any = true;
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_docker_changes() {
        let c = apply(
            &ContainerConfig::default(),
            &[
                "CMD [\"sh\"]".into(),
                "ENV PATH=/bin".into(),
                "ENV A=\"x y\" B=2".into(),
                "ENV PATH=/usr/bin:/bin".into(),
                "ENTRYPOINT echo hi".into(),
                "WORKDIR /tmp".into(),
                "EXPOSE 80 53/udp".into(),
                "LABEL a=b".into(),
            ],
        )
        .expect("valid");
        assert_eq!(c.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(
            c.env,
            Some(vec![
                "A=x y".to_string(),
                "B=2".to_string(),
                "PATH=/usr/bin:/bin".to_string()
            ])
        );
        assert_eq!(
            c.entrypoint,
            Some(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(c.working_dir.as_deref(), Some("/tmp"));
        let ports: Vec<_> = c.exposed_ports.unwrap_or_default().into_keys().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp"]);
        assert_eq!(
            c.labels.unwrap_or_default().get("a").map(String::as_str),
            Some("b")
        );
    }

    #[test]
    fn unknown_instruction_is_refused() {
        let e = apply(&ContainerConfig::default(), &["RUN rm -rf /".into()]).unwrap_err();
        assert_eq!(e, "RUN is not a valid change command");
    }
}
