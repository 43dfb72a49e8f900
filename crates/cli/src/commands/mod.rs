//! One module per family of commands; this one holds what they share: rendering
//! rows through a `--format` template (with Docker's `table` prefix), filters, and
//! environment files.

pub mod container;
pub mod context;
pub mod image;
pub mod resources;
pub mod run;
pub mod system;

use std::io::Write;

use serde_json::{Map, Value};

use crate::client::{CliError, Result};
use crate::format::tabwrite;
use crate::template::Template;

pub fn parse_template(src: &str) -> Result<Template> {
    Template::parse(src).map_err(|e| CliError::other(format!("template parsing error: {e}")))
}

/// Which Docker formatter a list is printed by: the Go type of its rows (named in
/// errors) and how its template errors are worded.
#[derive(Clone, Copy)]
pub enum Rows {
    Containers,
    Images,
    Other(&'static str),
}

impl Rows {
    fn type_name(self) -> &'static str {
        match self {
            Rows::Containers => "*formatter.ContainerContext",
            Rows::Images => "*formatter.imageContext",
            Rows::Other(t) => t,
        }
    }

    fn parse_error(self, e: String) -> CliError {
        match self {
            Rows::Containers => CliError::other(format!("failed to parse template: {e}")),
            _ => CliError::other(format!("template parsing error: {e}")),
        }
    }

    fn exec_error(self, e: String) -> CliError {
        match self {
            Rows::Containers => CliError::other(format!("failed to execute template: {e}")),
            _ => CliError::other(format!("template parsing error: {e}")),
        }
    }
}

/// Renders rows as Docker's formatter does: `table …` prints a header row (the
/// template run over the header names) and aligns columns; `json` prints one JSON
/// object a line; anything else is a template run once per row.
pub fn render(format: &str, header: &Value, rows: &[Value]) -> Result<String> {
    render_rows(format, header, rows, Rows::Other("*formatter.Context"))
}

/// `render`, with the error wording and field checking of a given formatter.
pub fn render_rows(format: &str, header: &Value, rows: &[Value], kind: Rows) -> Result<String> {
    let format = if format == "json" {
        "{{json .}}"
    } else {
        format
    };
    let (is_table, body) = match format.strip_prefix("table") {
        Some(rest) => (true, rest),
        None => (false, format),
    };
    let body = body
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    let tmpl = Template::parse(&body).map_err(|e| kind.parse_error(e))?;
    crate::template::set_json_escape_html(true);
    crate::template::set_missing(crate::template::Missing::Struct(kind.type_name()));
    let mut out = String::new();
    if is_table {
        // Docker runs the header with functions that pass their argument through.
        let header_text = tmpl
            .execute(header)
            .unwrap_or_else(|_| strip_functions_header(&body, header));
        out.push_str(&header_text);
        out.push('\n');
    }
    for row in rows {
        let line = tmpl.execute(row).map_err(|e| kind.exec_error(e))?;
        out.push_str(&line);
        out.push('\n');
    }
    crate::template::set_json_escape_html(false);
    crate::template::set_missing(crate::template::Missing::NoValue);
    Ok(if is_table { tabwrite(&out) } else { out })
}

/// Header text when the row template calls functions the header cannot satisfy:
/// each `{{…}}` becomes the header of the first field it names.
fn strip_functions_header(body: &str, header: &Value) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").unwrap_or(after.len());
        let action = &after[..end];
        if let Some(dot) = action.find('.') {
            let name: String = action[dot + 1..]
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            if let Some(h) = header.get(&name).and_then(Value::as_str) {
                out.push_str(h);
            }
        }
        rest = after.get(end + 2..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `-f key=value` flags as the Engine API's `filters` JSON: `{"key":{"value":true}}`.
pub fn filters_json(filters: &[String]) -> Result<Option<String>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut map = Map::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| CliError::other("bad format of filter (expected name=value)"))?;
        let entry = map
            .entry(k.trim().to_lowercase())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(v.to_string(), Value::Bool(true));
        }
    }
    Ok(Some(Value::Object(map).to_string()))
}

/// Reads a Docker env-file: `KEY=value` lines, `#` comments, bare `KEY` taken from
/// our own environment.
pub fn read_env_file(path: &str) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::other(format!("open {path}: {e}")))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('=') {
            out.push(line.to_string());
        } else if let Ok(v) = std::env::var(line.trim()) {
            out.push(format!("{}={v}", line.trim()));
        }
    }
    Ok(out)
}

/// `-e KEY` without `=` takes the value from our environment (or is dropped).
pub fn expand_env(env: &[String]) -> Vec<String> {
    env.iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

/// Runs `op` for each name, printing the name on success and Docker's error lines
/// otherwise; fails (exit 1) if any failed.
pub fn for_each(names: &[String], mut op: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut failed = false;
    for n in names {
        match op(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        Err(CliError::Exit(1))
    } else {
        Ok(())
    }
}

pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub fn int_field(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_render() {
        let header = json!({"ID": "CONTAINER ID", "Names": "NAMES"});
        let rows = vec![json!({"ID": "abc", "Names": "x"})];
        let out = render("table {{.ID}}\\t{{.Names}}", &header, &rows).expect("render");
        assert_eq!(out, "CONTAINER ID   NAMES\nabc            x\n");
        let out = render("{{.ID}}", &header, &rows).expect("render");
        assert_eq!(out, "abc\n");
    }

    #[test]
    fn filters() {
        let f = filters_json(&["status=running".into(), "name=a".into()]).expect("filters");
        assert_eq!(
            f.as_deref(),
            Some(r#"{"name":{"a":true},"status":{"running":true}}"#)
        );
    }
}
