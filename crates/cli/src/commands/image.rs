//! Image commands: images, pull, push, tag, rmi, import, save, load, history, prune;
//! and the display of the daemon's JSON progress streams.

use std::io::{self, IsTerminal, Read, Write};

use serde_json::{json, Value};

use super::container::{confirm, split_reference, write_download};
use super::{filters_json, int_field, print, render, str_field};
use crate::args::*;
use crate::client::{CliError, Client, JsonStream, Result};
use crate::format::{self, ellipsis, human_size, short_id};
use crate::http::{encode_path as encode, query, Body};

const IMAGES_TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

fn images_header() -> Value {
    json!({"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
        "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
        "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
        "VirtualSize": "VIRTUAL SIZE"})
}

/// One row per (repository, tag) of each image, as Docker's image formatter does.
fn image_rows(img: &Value, trunc: bool) -> Vec<Value> {
    let id = str_field(img, "Id");
    let created = int_field(img, "Created");
    let size = int_field(img, "Size");
    let base = |repo: &str, tag: &str, digest: &str| {
        let containers = int_field(img, "Containers");
        let shared = img.get("SharedSize").and_then(Value::as_i64).unwrap_or(-1);
        let na = |v: i64, s: String| if v < 0 { "N/A".to_string() } else { s };
        json!({
            "Containers": na(containers, containers.to_string()),
            "CreatedAt": format::go_time_string(created),
            "CreatedSince": if created == 0 { "N/A".to_string() } else { format::ago(created) },
            "Digest": digest,
            "ID": if trunc { short_id(id) } else { id.to_string() },
            "Repository": repo,
            // units.HumanSize: 4 significant digits, where Size has 3.
            "SharedSize": na(shared, format::human_size_prec(shared as f64, 4)),
            "Size": human_size(size as f64),
            "Tag": tag,
            "UniqueSize": na(shared, format::human_size_prec((size - shared) as f64, 4)),
            "VirtualSize": format::human_size_prec(size as f64, 4),
        })
    };
    let list = |k: &str| -> Vec<String> {
        img.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.starts_with("<none>"))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let tags = list("RepoTags");
    let digests = list("RepoDigests");
    let mut rows = Vec::new();
    let mut repos: Vec<String> = Vec::new();
    for t in &tags {
        let (r, _) = split_reference(t);
        if !repos.contains(&r) {
            repos.push(r);
        }
    }
    for d in &digests {
        let r = d.split('@').next().unwrap_or(d).to_string();
        if !repos.contains(&r) {
            repos.push(r);
        }
    }
    if repos.is_empty() {
        rows.push(base("<none>", "<none>", "<none>"));
    }
    for repo in repos {
        let digest = digests
            .iter()
            .find(|d| d.split('@').next() == Some(repo.as_str()))
            .and_then(|d| d.split('@').nth(1))
            .unwrap_or("<none>")
            .to_string();
        let repo_tags: Vec<String> = tags
            .iter()
            .filter_map(|t| {
                let (r, tag) = split_reference(t);
                (r == repo).then(|| tag.unwrap_or_default())
            })
            .collect();
        if repo_tags.is_empty() {
            rows.push(base(&repo, "<none>", &digest));
        }
        for tag in repo_tags {
            rows.push(base(&repo, &tag, &digest));
        }
    }
    rows
}

pub fn images(c: &mut Client, a: ImagesArgs) -> Result<()> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if a.all {
        q.push(("all", "1".into()));
    }
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    if let Some(f) = filters_json(&filters)? {
        q.push(("filters", f));
    }
    if a.digests {
        q.push(("digests", "1".into()));
    }
    let list = c.get_json(&format!("/images/json{}", query(&q)))?;
    let mut rows = Vec::new();
    for img in list.as_array().into_iter().flatten() {
        // Docker prints one line per repository:tag, with -q too.
        rows.extend(image_rows(img, !a.no_trunc));
    }
    let format = if a.quiet {
        "{{.ID}}".to_string()
    } else if let Some(f) = &a.format {
        f.clone()
    } else if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".into()
    } else {
        IMAGES_TABLE.to_string()
    };
    print(&super::render_rows(
        &format,
        &images_header(),
        &rows,
        super::Rows::Images,
    )?)
}

/// `busybox` → `docker.io/library/busybox:latest`, as Docker's reference package does.
pub fn full_reference(name: &str) -> String {
    let mut parts = name.splitn(2, '/');
    let first = parts.next().unwrap_or("");
    let rest = parts.next();
    let named = match rest {
        Some(rest) if first.contains('.') || first.contains(':') || first == "localhost" => {
            format!("{first}/{rest}")
        }
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    };
    let last = named.rsplit('/').next().unwrap_or("");
    if last.contains(':') || named.contains('@') {
        named
    } else {
        format!("{named}:latest")
    }
}

/// A reference split as the Engine API wants it: the normalized name
/// (`docker.io/library/busybox`) and the tag, if one was given.
pub fn normalized(name: &str) -> (String, Option<String>) {
    let (repo, tag) = split_reference(name);
    let full = full_reference(&repo);
    let base = full.strip_suffix(":latest").unwrap_or(&full).to_string();
    (base, tag)
}

/// Prints a stream of Docker JSON messages as Docker's jsonmessage does: on a
/// terminal, one line per layer ID redrawn in place; otherwise one line per status,
/// without progress bars.
pub fn display_stream(resp: impl Read, out: &mut dyn Write, tty: bool) -> Result<Vec<Value>> {
    let mut ids: Vec<String> = Vec::new();
    let mut aux = Vec::new();
    for msg in JsonStream::new(resp) {
        let msg = msg?;
        if let Some(e) = msg
            .pointer("/errorDetail/message")
            .or_else(|| msg.get("error"))
            .and_then(Value::as_str)
        {
            return Err(CliError::other(e.to_string()));
        }
        if let Some(a) = msg.get("aux") {
            aux.push(a.clone());
            continue;
        }
        let id = str_field(&msg, "id");
        let status = str_field(&msg, "status");
        let progress = str_field(&msg, "progress");
        let stream = str_field(&msg, "stream");
        let has_progress = msg
            .get("progressDetail")
            .is_some_and(|p| p.as_object().is_some_and(|m| !m.is_empty()));
        if !tty && has_progress && !progress.is_empty() {
            continue;
        }
        let line = if !stream.is_empty() {
            stream.to_string()
        } else {
            let mut l = String::new();
            if !id.is_empty() {
                l.push_str(id);
                l.push_str(": ");
            }
            l.push_str(status);
            if tty && !progress.is_empty() {
                l.push(' ');
                l.push_str(progress);
            }
            l.push('\n');
            l
        };
        if tty && !id.is_empty() {
            // Redraw the layer's own line: move up to it, clear it, come back.
            let pos = match ids.iter().position(|x| x == id) {
                Some(p) => p,
                None => {
                    ids.push(id.to_string());
                    writeln!(out)?;
                    ids.len() - 1
                }
            };
            let up = ids.len() - pos;
            write!(
                out,
                "\x1b[{up}A\r\x1b[2K{}\x1b[{up}B\r",
                line.trim_end_matches('\n')
            )?;
        } else {
            if tty {
                ids.clear();
            }
            out.write_all(line.as_bytes())?;
        }
        out.flush()?;
    }
    Ok(aux)
}

/// Pulls an image, progress to stderr (`run`) or stdout (`pull`).
pub fn pull_image(c: &mut Client, name: &str, to_stderr: bool, quiet: bool) -> Result<()> {
    let full = full_reference(name);
    let (repo, tag) = normalized(name);
    let mut q = vec![("fromImage", repo)];
    q.push(("tag", tag.unwrap_or_else(|| "latest".into())));
    let auth = registry_auth(c, name);
    let resp = c.send(
        "POST",
        &format!("/images/create{}", query(&q)),
        &[("X-Registry-Auth", &auth)],
        Body::Empty,
    )?;
    if quiet {
        // Still read to the end: an error arrives inside the stream.
        display_stream(resp, &mut io::sink(), false)?;
    } else if to_stderr {
        let tty = io::stderr().is_terminal();
        display_stream(resp, &mut io::stderr(), tty)?;
    } else {
        let tty = io::stdout().is_terminal();
        display_stream(resp, &mut io::stdout(), tty)?;
    }
    if !to_stderr {
        println!("{full}");
    }
    Ok(())
}

/// The stored credentials for the reference's registry, as `X-Registry-Auth`.
fn registry_auth(c: &Client, reference: &str) -> String {
    let store = crate::context::Store {
        dir: c.config_dir.clone(),
    };
    crate::auth::registry_header(&store, reference)
}

pub fn pull(c: &mut Client, a: PullArgs) -> Result<()> {
    let last = a.name.rsplit('/').next().unwrap_or(&a.name);
    if !a.quiet && !last.contains(':') && !a.name.contains('@') {
        println!("Using default tag: latest");
    }
    pull_image(c, &a.name, false, a.quiet)
}

pub fn push(c: &mut Client, a: PullArgs) -> Result<()> {
    let (repo, tag) = split_reference(&a.name);
    let q = match tag {
        Some(t) => query(&[("tag", t)]),
        None => String::new(),
    };
    let auth = registry_auth(c, &a.name);
    let resp = c.send(
        "POST",
        &format!("/images/{}/push{q}", repo),
        &[("X-Registry-Auth", &auth)],
        Body::Empty,
    )?;
    let tty = io::stdout().is_terminal();
    if a.quiet {
        display_stream(resp, &mut io::sink(), false)?;
        println!("{}", a.name);
    } else {
        display_stream(resp, &mut io::stdout(), tty)?;
    }
    Ok(())
}

pub fn tag(c: &mut Client, a: TagArgs) -> Result<()> {
    let (repo, tag) = normalized(&a.target);
    let mut q = vec![("repo", repo)];
    q.push(("tag", tag.unwrap_or_else(|| "latest".into())));
    c.call(
        "POST",
        &format!("/images/{}/tag{}", encode(&a.source), query(&q)),
    )
}

fn print_deletions(items: &Value, out: &mut String, lower: bool) {
    for item in items.as_array().into_iter().flatten() {
        for (key, label) in [("Untagged", "Untagged"), ("Deleted", "Deleted")] {
            if let Some(v) = item.get(key).and_then(Value::as_str) {
                let label = if lower {
                    label.to_lowercase()
                } else {
                    label.to_string()
                };
                out.push_str(&format!("{label}: {v}\n"));
            }
        }
    }
}

pub fn rmi(c: &mut Client, a: RmiArgs) -> Result<()> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if a.force {
        q.push(("force", "1".into()));
    }
    if a.no_prune {
        q.push(("noprune", "1".into()));
    }
    let qs = query(&q);
    let mut failed = false;
    for name in &a.images {
        let resp = c
            .send(
                "DELETE",
                &format!("/images/{}{qs}", encode(name)),
                &[],
                Body::Empty,
            )
            .and_then(crate::client::parse_json);
        match resp {
            Ok(v) => {
                let mut out = String::new();
                print_deletions(&v, &mut out, false);
                print(&out)?;
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

pub fn import(c: &mut Client, a: ImportArgs) -> Result<()> {
    let mut q: Vec<(&str, String)> = Vec::new();
    let is_url = a.source.starts_with("http://") || a.source.starts_with("https://");
    q.push((
        "fromSrc",
        if is_url { a.source.clone() } else { "-".into() },
    ));
    if let Some(r) = &a.reference {
        let (repo, tag) = split_reference(r);
        q.push(("repo", repo));
        if let Some(t) = tag {
            q.push(("tag", t));
        }
    }
    if let Some(m) = &a.message {
        q.push(("message", m.clone()));
    }
    if let Some(p) = &a.platform {
        q.push(("platform", p.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    let path = format!("/images/create{}", query(&q));
    let resp = if is_url {
        c.send("POST", &path, &[], Body::Empty)?
    } else if a.source == "-" {
        let mut stdin = io::stdin().lock();
        c.send(
            "POST",
            &path,
            &[],
            Body::Stream(&mut stdin, "application/x-tar"),
        )?
    } else {
        let mut f = std::fs::File::open(&a.source)
            .map_err(|e| CliError::other(format!("open {}: {}", a.source, io_reason(&e))))?;
        c.send(
            "POST",
            &path,
            &[],
            Body::Stream(&mut f, "application/x-tar"),
        )?
    };
    display_stream(resp, &mut io::stdout(), false)?;
    Ok(())
}

/// The part of an I/O error Go would print ("no such file or directory").
fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

pub fn save(c: &mut Client, a: SaveArgs) -> Result<()> {
    let q: Vec<(&str, String)> = a.images.iter().map(|n| ("names", n.clone())).collect();
    if a.output.is_none() && io::stdout().is_terminal() {
        return Err(CliError::other(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let resp = c.send(
        "GET",
        &format!("/images/get{}", query(&q)),
        &[],
        Body::Empty,
    )?;
    write_download(resp, a.output.as_deref())
}

pub fn load(c: &mut Client, a: LoadArgs) -> Result<()> {
    let q = if a.quiet { "?quiet=1" } else { "" };
    let path = format!("/images/load{q}");
    let resp = match &a.input {
        Some(p) => {
            let mut f = std::fs::File::open(p)
                .map_err(|e| CliError::other(format!("open {p}: {}", io_reason(&e))))?;
            c.send(
                "POST",
                &path,
                &[],
                Body::Stream(&mut f, "application/x-tar"),
            )?
        }
        None => {
            if io::stdin().is_terminal() {
                return Err(CliError::other(
                    "requested load from stdin, but stdin is empty",
                ));
            }
            let mut stdin = io::stdin().lock();
            c.send(
                "POST",
                &path,
                &[],
                Body::Stream(&mut stdin, "application/x-tar"),
            )?
        }
    };
    if resp
        .header("Content-Type")
        .is_some_and(|t| t.contains("json"))
    {
        display_stream(resp, &mut io::stdout(), false)?;
    } else {
        io::copy(&mut { resp }, &mut io::stdout())?;
    }
    Ok(())
}

pub fn history(c: &mut Client, a: HistoryArgs) -> Result<()> {
    let v = c.get_json(&format!("/images/{}/history", encode(&a.image)))?;
    let trunc = !a.no_trunc;
    let mut rows = Vec::new();
    for h in v.as_array().into_iter().flatten() {
        let id = str_field(h, "Id");
        let created = int_field(h, "Created");
        let by = str_field(h, "CreatedBy").replace('\t', " ");
        let size = int_field(h, "Size");
        rows.push(json!({
            "ID": if id == "<missing>" || id.is_empty() { "<missing>".to_string() } else if trunc { short_id(id) } else { id.to_string() },
            "CreatedSince": if a.human { format::ago(created) } else { format::rfc3339(created) },
            "CreatedAt": format::rfc3339(created),
            "CreatedBy": if trunc { ellipsis(&by, 45) } else { by },
            "Size": if a.human { human_size(size as f64) } else { size.to_string() },
            "Comment": str_field(h, "Comment"),
        }));
    }
    let created_header = if a.human { "CREATED" } else { "CREATED AT" };
    let header = json!({"ID": "IMAGE", "CreatedSince": created_header, "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"});
    let format = if a.quiet {
        "{{.ID}}".to_string()
    } else {
        a.format.clone().unwrap_or_else(|| {
            "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".into()
        })
    };
    print(&render(&format, &header, &rows)?)
}

pub fn prune(c: &mut Client, a: PruneArgs) -> Result<()> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(warning)? {
        return Ok(());
    }
    let mut filters = a.filter.clone();
    filters.push(format!("dangling={}", !a.all));
    let q = match filters_json(&filters)? {
        Some(f) => query(&[("filters", f)]),
        None => String::new(),
    };
    let v = c.post_json(&format!("/images/prune{q}"), None)?;
    let mut out = String::new();
    if let Some(items) = v
        .get("ImagesDeleted")
        .filter(|x| x.as_array().is_some_and(|a| !a.is_empty()))
    {
        out.push_str("Deleted Images:\n");
        print_deletions(items, &mut out, true);
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(
            v.get("SpaceReclaimed")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        )
    ));
    print(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            full_reference("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full_reference("me/x:1"), "docker.io/me/x:1");
        assert_eq!(
            full_reference("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
    }

    #[test]
    fn rows_per_tag() {
        let img = json!({"Id": "sha256:0123456789abcdef", "RepoTags": ["a:1", "a:2", "b:latest"],
            "Created": 0, "Size": 2048000});
        let rows = image_rows(&img, true);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["Repository"], "a");
        assert_eq!(rows[1]["Tag"], "2");
        assert_eq!(rows[0]["ID"], "0123456789ab");
        assert_eq!(rows[0]["Size"], "2.05MB");
        let none = image_rows(&json!({"Id": "sha256:ff", "RepoTags": []}), true);
        assert_eq!(none[0]["Repository"], "<none>");
    }

    #[test]
    fn progress_lines_without_tty() {
        let data = br#"{"status":"Pulling from library/busybox","id":"latest"}
{"status":"Downloading","progressDetail":{"current":1,"total":2},"progress":"[=>  ]","id":"abc"}
{"status":"Pull complete","progressDetail":{},"id":"abc"}
{"status":"Status: Downloaded newer image for busybox:latest"}"#;
        let mut out = Vec::new();
        display_stream(&data[..], &mut out, false).expect("display");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "latest: Pulling from library/busybox\nabc: Pull complete\nStatus: Downloaded newer image for busybox:latest\n"
        );
    }
}
