//! The subset of Go's text/template that `--format` uses, over JSON values, with
//! Docker's template functions (json, upper, lower, title, split, join, truncate,
//! pad, println) and Go's builtins (index, len, printf, print, eq, ne, lt, le, gt,
//! ge, and, or, not). Values print as Go's `fmt` prints them after Docker decodes
//! JSON: maps as `map[k:v]` with sorted keys, lists as `[a b]`, a missing key as
//! `<no value>`.

use serde_json::Value;

type Res<T> = Result<T, String>;

/// Key of a struct marker: an object carrying it prints as Go prints a struct,
/// `{v1 v2}`, its fields in the listed order (see `crate::typed`).
pub const STRUCT_KEY: &str = "\u{1}fields";
/// Key of a typed nil: `{NIL_KEY: "slice" | "map" | "ptr"}` prints as `[]`,
/// `map[]` or `<nil>`, and is null to `json`.
pub const NIL_KEY: &str = "\u{1}nil";

/// Marks an object that is a Go map: a missing key is `<no value>` in every mode.
pub const MAP_KEY: &str = "\u{1}map";
/// Lists the fields the typed view added (zero values): `json` leaves them out.
pub const ADDED_KEY: &str = "\u{1}added";

/// A time.Time: `{TIME_KEY: "<RFC 3339>"}` prints as Go's `Time.String()` and is
/// the RFC 3339 string to `json`.
pub const TIME_KEY: &str = "\u{1}time";

fn time_of(v: &Value) -> Option<&str> {
    v.as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.get(TIME_KEY))
        .and_then(Value::as_str)
}

/// An RFC 3339 UTC time as Go's `time.Time.String()` prints it.
fn go_time(t: &str) -> String {
    let Some(secs) = crate::format::parse_rfc3339(t) else {
        return t.to_string();
    };
    let frac: String = t
        .get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .map(|r| r.chars().take_while(char::is_ascii_digit).collect())
        .unwrap_or_default();
    let frac = frac.trim_end_matches('0');
    let (y, mo, d, h, mi, s) = crate::format::civil_from_unix(secs);
    let dot = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{dot} +0000 UTC")
}

fn nil_kind(v: &Value) -> Option<&str> {
    v.as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.get(NIL_KEY))
        .and_then(Value::as_str)
}

fn is_marker_key(k: &str) -> bool {
    k.starts_with('\u{1}')
}

/// JSON of a value as Go's encoder writes it: a typed struct's fields in
/// declaration order (then any others), maps with sorted keys, markers left out.
fn write_json(v: &Value, out: &mut String) {
    if nil_kind(v).is_some() {
        out.push_str("null");
        return;
    }
    if let Some(t) = time_of(v) {
        out.push_str(&Value::from(t).to_string());
        return;
    }
    match v {
        Value::Object(m) => {
            let list = |k: &str| -> Vec<&str> {
                m.get(k)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default()
            };
            let added = list(ADDED_KEY);
            let order = list(STRUCT_KEY);
            let keep = |k: &str| !is_marker_key(k) && !added.contains(&k) && m.contains_key(k);
            let mut keys: Vec<&str> = order.iter().copied().filter(|k| keep(k)).collect();
            for k in m.keys() {
                if keep(k) && !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(*k).to_string());
                out.push(':');
                if let Some(x) = m.get(*k) {
                    write_json(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

thread_local! {
    static ESCAPE_HTML: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether `json` escapes `<`, `>`, `&` as Go's json.Marshal does. Docker's list
/// contexts (ps, images rows) marshal through json.Marshal, so they escape;
/// `inspect` encodes with escaping off.
pub fn set_json_escape_html(on: bool) {
    ESCAPE_HTML.with(|c| c.set(on));
}

fn html_escape(s: String) -> String {
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
struct Pipeline {
    decl: Vec<String>,
    cmds: Vec<Vec<Arg>>,
}

/// Where a field was written: for Go's `template: :LINE:COL: executing "" at <.X>`.
#[derive(Debug, Clone, PartialEq)]
struct Place {
    line: usize,
    col: usize,
    text: String,
}

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>, Place),
    Var(String, Vec<String>),
    Str(String),
    Num(Value),
    Bool(bool),
    Nil,
    Ident(String),
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>, usize),
    Var(String, Vec<String>),
    Str(String),
    Num(Value),
    Ident(String),
    LParen,
    RParen,
    Pipe,
    Assign,
    Comma,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    /// Parses a template; errors read as Go's (`template: :1: unclosed action`).
    pub fn parse(src: &str) -> Res<Template> {
        Self::parse_inner(src).map_err(|e| format!("template: :1: {e}"))
    }

    fn parse_inner(src: &str) -> Res<Template> {
        let pieces = split_actions(src)?;
        let mut pos = 0;
        let ctx = Source { src };
        let (nodes, end) = parse_list(&ctx, &pieces, &mut pos)?;
        if let Some(e) = end {
            return Err(format!("unexpected {{{{{e}}}}}"));
        }
        Ok(Template { nodes })
    }

    pub fn execute(&self, data: &Value) -> Res<String> {
        let mut out = String::new();
        let mut vars = vec![("$".to_string(), Some(data.clone()))];
        exec_list(&self.nodes, Some(data), &mut vars, &mut out)?;
        Ok(out)
    }
}

enum Piece {
    Text(String),
    /// The action's text and its byte offset in the template.
    Action(String, usize),
}

/// The template text, to turn offsets into line:column.
struct Source<'a> {
    src: &'a str,
}

impl Source<'_> {
    fn place(&self, offset: usize, text: &str) -> Place {
        let before = self.src.get(..offset).unwrap_or(self.src);
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map(|i| offset - i - 1).unwrap_or(offset);
        Place {
            line,
            col,
            text: text.to_string(),
        }
    }
}

fn split_actions(src: &str) -> Res<Vec<Piece>> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        let mut inner = &rest[start + 2..];
        if inner.starts_with("- ") || inner.starts_with("-\t") || inner.starts_with("-\n") {
            text = text.trim_end();
            inner = &inner[1..];
        }
        if !text.is_empty() {
            out.push(Piece::Text(text.to_string()));
        }
        let end = find_action_end(inner).ok_or("unclosed action")?;
        let mut action = &inner[..end];
        rest = &inner[end + 2..];
        if action.ends_with(" -") || action.ends_with("\t-") || action.ends_with("\n-") {
            action = &action[..action.len() - 1];
            rest = rest.trim_start();
        }
        // Where the action's text starts in the template: everything before it is
        // `src` less what remains from `inner` on.
        let lead = action.len() - action.trim_start().len();
        let offset = src.len() - inner.len() + lead;
        out.push(Piece::Action(action.trim().to_string(), offset));
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

/// Finds the closing `}}` of an action, skipping quoted strings.
fn find_action_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses nodes up to an `end`/`else` (returned) or the end of input.
fn parse_list(
    ctx: &Source<'_>,
    pieces: &[Piece],
    pos: &mut usize,
) -> Res<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while *pos < pieces.len() {
        let piece = &pieces[*pos];
        *pos += 1;
        match piece {
            Piece::Text(t) => nodes.push(Node::Text(t.clone())),
            Piece::Action(a, offset) => {
                let a = a.as_str();
                if a.starts_with("/*") {
                    continue;
                }
                let (word, rest, rest_at) = match a.find(|c: char| c.is_whitespace()) {
                    Some(i) => {
                        let after = &a[i..];
                        let skip = after.len() - after.trim_start().len();
                        (&a[..i], after.trim(), i + skip)
                    }
                    None => (a, "", a.len()),
                };
                let rest_offset = offset + rest_at;
                match word {
                    "end" => return Ok((nodes, Some("end".into()))),
                    "else" => return Ok((nodes, Some(format!("else {rest}").trim().to_string()))),
                    "if" | "range" | "with" => {
                        nodes.push(parse_block(ctx, word, rest, rest_offset, pieces, pos)?);
                    }
                    _ => nodes.push(Node::Action(parse_pipeline(ctx, a, *offset)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_block(
    ctx: &Source<'_>,
    word: &str,
    rest: &str,
    offset: usize,
    pieces: &[Piece],
    pos: &mut usize,
) -> Res<Node> {
    let pipe = parse_pipeline(ctx, rest, offset)?;
    let (body, end) = parse_list(ctx, pieces, pos)?;
    let mut else_nodes = Vec::new();
    match end.as_deref() {
        Some("end") => {}
        Some("else") => {
            let (e, end2) = parse_list(ctx, pieces, pos)?;
            if end2.as_deref() != Some("end") {
                return Err(format!("missing {{{{end}}}} for {word}"));
            }
            else_nodes = e;
        }
        Some(other) if other.starts_with("else if ") || other.starts_with("else with ") => {
            // `{{else if X}}` is `{{else}}{{if X}}…{{end}}` sharing the outer end.
            let inner_word = if other.starts_with("else if ") {
                "if"
            } else {
                "with"
            };
            let cond = &other[5 + inner_word.len()..];
            else_nodes.push(parse_block(ctx, inner_word, cond.trim(), 0, pieces, pos)?);
        }
        _ => return Err(format!("missing {{{{end}}}} for {word}")),
    }
    Ok(match word {
        "if" => Node::If(pipe, body, else_nodes),
        "range" => Node::Range(pipe, body, else_nodes),
        _ => Node::With(pipe, body, else_nodes),
    })
}

fn field_path(s: &str) -> Vec<String> {
    s.split('.')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

fn lex(src: &str, base: usize) -> Res<Vec<Tok>> {
    let chars: Vec<char> = src.chars().collect();
    let bytes_at: Vec<usize> = src.char_indices().map(|(b, _)| b).collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                toks.push(Tok::LParen);
                i += 1
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1
            }
            '|' => {
                toks.push(Tok::Pipe);
                i += 1
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1
            }
            ':' | '=' => {
                if c == ':' && chars.get(i + 1) == Some(&'=') {
                    i += 2;
                } else {
                    i += 1;
                }
                toks.push(Tok::Assign);
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("unterminated quoted string".into());
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = chars.get(i).copied().unwrap_or('\\');
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '0' => '\0',
                                other => other,
                            });
                        }
                        c => s.push(c),
                    }
                }
                toks.push(Tok::Str(s));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or("unterminated raw quoted string")?;
                toks.push(Tok::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            '.' => {
                let start = i;
                i += 1;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let at = base + bytes_at.get(start).copied().unwrap_or(0);
                toks.push(Tok::Field(field_path(&s), at));
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let fstart = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let fields: String = chars[fstart..i].iter().collect();
                toks.push(Tok::Var(name, field_path(&fields)));
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let v = if let Ok(n) = s.parse::<i64>() {
                    Value::from(n)
                } else if let Ok(f) = s.parse::<f64>() {
                    Value::from(f)
                } else {
                    return Err(format!("bad number syntax: {s:?}"));
                };
                toks.push(Tok::Num(v));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(toks)
}

fn parse_pipeline(ctx: &Source<'_>, src: &str, base: usize) -> Res<Pipeline> {
    let toks = lex(src, base)?;
    let mut pos = 0;
    let p = parse_pipe_tokens(ctx, &toks, &mut pos)?;
    if pos < toks.len() {
        return Err(format!("unexpected {:?} in operand", toks[pos]));
    }
    Ok(p)
}

fn parse_pipe_tokens(ctx: &Source<'_>, toks: &[Tok], pos: &mut usize) -> Res<Pipeline> {
    let mut decl = Vec::new();
    // `$x := …` or `$k, $v := …`
    let mut look = *pos;
    let mut names = Vec::new();
    while let Some(Tok::Var(name, f)) = toks.get(look) {
        if !f.is_empty() {
            break;
        }
        names.push(name.clone());
        look += 1;
        match toks.get(look) {
            Some(Tok::Comma) => look += 1,
            Some(Tok::Assign) => {
                decl = names.clone();
                *pos = look + 1;
                break;
            }
            _ => break,
        }
    }
    let mut cmds = Vec::new();
    let mut cmd = Vec::new();
    while let Some(t) = toks.get(*pos) {
        match t {
            Tok::RParen => break,
            Tok::Pipe => {
                if cmd.is_empty() {
                    return Err("missing command".into());
                }
                cmds.push(std::mem::take(&mut cmd));
                *pos += 1;
            }
            Tok::LParen => {
                *pos += 1;
                let inner = parse_pipe_tokens(ctx, toks, pos)?;
                if toks.get(*pos) != Some(&Tok::RParen) {
                    return Err("unclosed left paren".into());
                }
                *pos += 1;
                let mut fields = Vec::new();
                if let Some(Tok::Field(f, _)) = toks.get(*pos) {
                    if !f.is_empty() && src_adjacent() {
                        fields = f.clone();
                        *pos += 1;
                    }
                }
                cmd.push(Arg::Sub(Box::new(inner), fields));
            }
            Tok::Field(f, at) => {
                let text = format!(".{}", f.join("."));
                cmd.push(Arg::Field(f.clone(), ctx.place(*at, &text)));
                *pos += 1;
            }
            Tok::Var(n, f) => {
                cmd.push(Arg::Var(n.clone(), f.clone()));
                *pos += 1;
            }
            Tok::Str(s) => {
                cmd.push(Arg::Str(s.clone()));
                *pos += 1;
            }
            Tok::Num(n) => {
                cmd.push(Arg::Num(n.clone()));
                *pos += 1;
            }
            Tok::Ident(id) => {
                cmd.push(match id.as_str() {
                    "true" => Arg::Bool(true),
                    "false" => Arg::Bool(false),
                    "nil" => Arg::Nil,
                    name if FUNCTIONS.contains(&name) => Arg::Ident(id.clone()),
                    name => return Err(format!("function \"{name}\" not defined")),
                });
                *pos += 1;
            }
            Tok::Assign | Tok::Comma => return Err(format!("unexpected {t:?}")),
        }
    }
    if !cmd.is_empty() {
        cmds.push(cmd);
    }
    if cmds.is_empty() {
        return Err("missing value for command".into());
    }
    Ok(Pipeline { decl, cmds })
}

/// The lexer drops spaces, so `(x).F` and `(x) .F` look alike; Go rejects the
/// second form anyway, so taking both as a field of the result is harmless.
fn src_adjacent() -> bool {
    true
}

type Val = Option<Value>;
type Vars = Vec<(String, Val)>;

/// The functions a template may call (Go's builtins we carry, and Docker's).
const FUNCTIONS: &[&str] = &[
    "json", "upper", "lower", "title", "split", "join", "truncate", "pad", "println", "print",
    "printf", "len", "index", "not", "and", "or", "eq", "ne", "lt", "le", "gt", "ge",
];

/// What a field that is not there means, as the Go type behind the data decides.
#[derive(Clone, Copy)]
pub enum Missing {
    /// `<no value>` (Go's default for maps).
    NoValue,
    /// An error, as `missingkey=error` maps (docker inspect's fallback) give.
    MapError,
    /// An error naming the struct the row is (docker ps: `*formatter.ContainerContext`).
    Struct(&'static str),
}

thread_local! {
    static MISSING: std::cell::Cell<Missing> = const { std::cell::Cell::new(Missing::NoValue) };
}

pub fn set_missing(m: Missing) {
    MISSING.with(|c| c.set(m));
}

/// A field path looked up as Go would for the current `Missing` mode.
/// A field chain from `base`, by reference: only the value found is copied (a row's
/// whole map used to be copied for each field of a `table` line). `at_root` is asked
/// only when a field is missing, for Go's error text.
fn lookup_field(
    base: Option<&Value>,
    path: &[String],
    place: &Place,
    at_root: &dyn Fn() -> bool,
) -> Res<Val> {
    let mode = MISSING.with(|c| c.get());
    let mut cur = base;
    for (depth, key) in path.iter().enumerate() {
        let next = match cur {
            Some(Value::Object(m)) => m.get(key),
            _ => return lookup(cur.cloned(), &path[depth..]),
        };
        let is_go_map = cur
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key(MAP_KEY));
        if next.is_none() && is_go_map {
            return Ok(None);
        }
        if next.is_none() {
            // Go places a chained field's error at the segment that failed.
            let shift: usize = path[..depth].iter().map(|p| p.len() + 1).sum();
            let at = format!(
                "template: :{}:{}: executing \"\" at <{}>:",
                place.line,
                place.col + shift,
                place.text
            );
            match mode {
                Missing::NoValue => return Ok(None),
                Missing::MapError => {
                    return Err(format!("{at} map has no entry for key \"{key}\""))
                }
                Missing::Struct(ty) if depth == 0 && at_root() => {
                    return Err(format!("{at} can't evaluate field {key} in type {ty}"))
                }
                Missing::Struct(_) => return Ok(None),
            }
        }
        cur = next;
    }
    Ok(cur.cloned())
}

fn exec_list(nodes: &[Node], dot: Option<&Value>, vars: &mut Vars, out: &mut String) -> Res<()> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = eval_pipeline(p, dot, vars)?;
                if p.decl.is_empty() {
                    out.push_str(&print_value(&v));
                }
            }
            Node::If(p, body, else_nodes) => {
                let v = eval_pipeline(p, dot, vars)?;
                let mark = vars.len();
                if truthy(&v) {
                    exec_list(body, dot, vars, out)?;
                } else {
                    exec_list(else_nodes, dot, vars, out)?;
                }
                vars.truncate(mark);
            }
            Node::With(p, body, else_nodes) => {
                let v = eval_pipeline(p, dot, vars)?;
                let mark = vars.len();
                if truthy(&v) {
                    exec_list(body, v.as_ref(), vars, out)?;
                } else {
                    exec_list(else_nodes, dot, vars, out)?;
                }
                vars.truncate(mark);
            }
            Node::Range(p, body, else_nodes) => {
                let plain = Pipeline {
                    decl: Vec::new(),
                    cmds: p.cmds.clone(),
                };
                let v = eval_pipeline(&plain, dot, vars)?;
                let items: Vec<(Value, Value)> = match &v {
                    Some(Value::Array(a)) => a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (Value::from(i), x.clone()))
                        .collect(),
                    Some(x) if nil_kind(x).is_some() => Vec::new(),
                    Some(Value::Object(m)) => {
                        let mut keys: Vec<&String> =
                            m.keys().filter(|k| !is_marker_key(k)).collect();
                        keys.sort();
                        keys.into_iter()
                            .map(|k| (Value::from(k.clone()), m[k].clone()))
                            .collect()
                    }
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Number(n)) => {
                        let count = n.as_u64().unwrap_or(0);
                        (0..count)
                            .map(|i| (Value::from(i), Value::from(i)))
                            .collect()
                    }
                    Some(other) => {
                        return Err(format!(
                            "range can't iterate over {}",
                            print_value(&Some(other.clone()))
                        ))
                    }
                };
                if items.is_empty() {
                    exec_list(else_nodes, dot, vars, out)?;
                }
                for (k, x) in items {
                    let mark = vars.len();
                    match p.decl.as_slice() {
                        [] => {}
                        [v] => vars.push((v.clone(), Some(x.clone()))),
                        [kname, vname, ..] => {
                            vars.push((kname.clone(), Some(k)));
                            vars.push((vname.clone(), Some(x.clone())));
                        }
                    }
                    exec_list(body, Some(&x), vars, out)?;
                    vars.truncate(mark);
                }
            }
        }
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, dot: Option<&Value>, vars: &mut Vars) -> Res<Val> {
    let mut piped: Option<Val> = None;
    for cmd in &p.cmds {
        piped = Some(eval_command(cmd, dot, vars, piped)?);
    }
    let v = piped.unwrap_or(None);
    if let Some(name) = p.decl.first() {
        if let Some(slot) = vars.iter_mut().rev().find(|(n, _)| n == name) {
            slot.1 = v.clone();
        } else {
            vars.push((name.clone(), v.clone()));
        }
    }
    Ok(v)
}

fn lookup(base: Val, path: &[String]) -> Res<Val> {
    let mut cur = base;
    for key in path {
        cur = match cur {
            Some(Value::Object(m)) => m.get(key).cloned(),
            None => None,
            Some(Value::Null) => {
                return Err(format!("nil pointer evaluating interface {{}}.{key}"));
            }
            Some(other) => {
                return Err(format!(
                    "can't evaluate field {key} in type {}",
                    go_type(&other)
                ))
            }
        };
    }
    Ok(cur)
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
        Value::Null => "interface {}",
    }
}

fn eval_arg(arg: &Arg, dot: Option<&Value>, vars: &mut Vars) -> Res<Val> {
    match arg {
        Arg::Field(path, place) => {
            // Only a row's own fields are struct fields; deeper values are maps.
            let at_root = || {
                matches!(MISSING.with(|c| c.get()), Missing::Struct(_))
                    && vars.first().is_some_and(|(_, root)| root.as_ref() == dot)
            };
            lookup_field(dot, path, place, &at_root)
        }
        Arg::Var(name, path) => {
            let base = vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("undefined variable: {name}"))?;
            lookup(base, path)
        }
        Arg::Str(s) => Ok(Some(Value::from(s.clone()))),
        Arg::Num(n) => Ok(Some(n.clone())),
        Arg::Bool(b) => Ok(Some(Value::from(*b))),
        Arg::Nil => Ok(Some(Value::Null)),
        Arg::Ident(name) => call(name, Vec::new()),
        Arg::Sub(p, fields) => {
            let v = eval_pipeline(p, dot, vars)?;
            lookup(v, fields)
        }
    }
}

fn eval_command(cmd: &[Arg], dot: Option<&Value>, vars: &mut Vars, piped: Option<Val>) -> Res<Val> {
    match cmd.first() {
        Some(Arg::Ident(name)) => {
            let mut args = Vec::new();
            for a in &cmd[1..] {
                args.push(eval_arg(a, dot, vars)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            call(name, args)
        }
        // Docker's list contexts have one method with an argument: `.Label "key"`,
        // answered from the row's "k=v,k2=v2" Labels.
        Some(Arg::Field(path, _))
            if path.last().is_some_and(|l| l == "Label") && cmd.len() == 2 =>
        {
            let base = lookup(dot.cloned(), &path[..path.len() - 1])?;
            let key = eval_arg(&cmd[1], dot, vars)?;
            let key = want_str(&key, "Label")?;
            let labels = base
                .as_ref()
                .and_then(|b| b.get("Labels"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let found = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            Ok(Some(Value::from(found)))
        }
        Some(first) => {
            if cmd.len() > 1 || piped.is_some() {
                return Err("can't give argument to non-function".into());
            }
            eval_arg(first, dot, vars)
        }
        None => Err("empty command".into()),
    }
}

fn truthy(v: &Val) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(x) if nil_kind(x).is_some() => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
    }
}

fn text(v: &Val) -> String {
    print_value(v)
}

fn want_str(v: &Val, func: &str) -> Res<String> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(format!(
            "error calling {func}: wrong type for value; expected string; got {}",
            other.as_ref().map(go_type).unwrap_or("<nil>")
        )),
    }
}

fn want_int(v: &Val, func: &str) -> Res<i64> {
    match v {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| format!("error calling {func}: bad number")),
        _ => Err(format!(
            "error calling {func}: wrong type for value; expected int"
        )),
    }
}

fn arity(name: &str, args: &[Val], n: usize) -> Res<()> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn compare(a: &Val, b: &Val) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Some(Value::String(x)), Some(Value::String(y))) => Some(x.cmp(y)),
        _ => None,
    }
}

fn call(name: &str, args: Vec<Val>) -> Res<Val> {
    let s = |v: String| Ok(Some(Value::from(v)));
    match name {
        "json" => {
            arity(name, &args, 1)?;
            match &args[0] {
                Some(v) => {
                    let mut text = String::new();
                    write_json(v, &mut text);
                    s(if ESCAPE_HTML.with(|c| c.get()) {
                        html_escape(text)
                    } else {
                        text
                    })
                }
                None => s("null".into()),
            }
        }
        "upper" => {
            arity(name, &args, 1)?;
            s(want_str(&args[0], name)?.to_uppercase())
        }
        "lower" => {
            arity(name, &args, 1)?;
            s(want_str(&args[0], name)?.to_lowercase())
        }
        "title" => {
            arity(name, &args, 1)?;
            let src = want_str(&args[0], name)?;
            let mut out = String::new();
            let mut prev_letter = false;
            for c in src.chars() {
                if !prev_letter && c.is_alphabetic() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
            }
            s(out)
        }
        "split" => {
            arity(name, &args, 2)?;
            let src = want_str(&args[0], name)?;
            let sep = want_str(&args[1], name)?;
            let parts: Vec<Value> = if sep.is_empty() {
                src.chars().map(|c| Value::from(c.to_string())).collect()
            } else {
                src.split(sep.as_str()).map(Value::from).collect()
            };
            Ok(Some(Value::Array(parts)))
        }
        "join" => {
            arity(name, &args, 2)?;
            let sep = want_str(&args[1], name)?;
            let items: Vec<String> = match &args[0] {
                Some(Value::Array(a)) => a.iter().map(|x| text(&Some(x.clone()))).collect(),
                None | Some(Value::Null) => Vec::new(),
                other => return Err(format!("error calling join: {} is not a list", text(other))),
            };
            s(items.join(&sep))
        }
        "truncate" => {
            arity(name, &args, 2)?;
            let src = want_str(&args[0], name)?;
            let n = want_int(&args[1], name)?.max(0) as usize;
            s(src.chars().take(n).collect())
        }
        "pad" => {
            arity(name, &args, 3)?;
            let src = want_str(&args[0], name)?;
            let before = want_int(&args[1], name)?.max(0) as usize;
            let after = want_int(&args[2], name)?.max(0) as usize;
            s(format!("{}{src}{}", " ".repeat(before), " ".repeat(after)))
        }
        "println" => s(format!("{}\n", go_sprint(&args, true))),
        "print" => s(go_sprint(&args, false)),
        "printf" => {
            let Some((first, rest)) = args.split_first() else {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            };
            s(go_printf(&want_str(first, name)?, rest))
        }
        "len" => {
            arity(name, &args, 1)?;
            let n = match &args[0] {
                Some(x) if nil_kind(x).is_some() => 0,
                Some(Value::String(x)) => x.len(),
                Some(Value::Array(a)) => a.len(),
                Some(Value::Object(m)) => m.keys().filter(|k| !is_marker_key(k)).count(),
                None | Some(Value::Null) => 0,
                Some(other) => return Err(format!("len of type {}", go_type(other))),
            };
            Ok(Some(Value::from(n)))
        }
        "index" => {
            let mut cur = args
                .first()
                .cloned()
                .ok_or("wrong number of args for index")?;
            for key in &args[1..] {
                cur = match (&cur, key) {
                    (Some(Value::Object(m)), Some(Value::String(k))) => match m.get(k) {
                        Some(v) => Some(v.clone()),
                        // A typed Go map yields its element's zero value (these
                        // are map[string]string); an untyped one <no value>.
                        None if m.contains_key(MAP_KEY) => Some(Value::from("")),
                        None => Some(Value::Null),
                    },
                    (Some(Value::Array(a)), Some(Value::Number(n))) => {
                        let i = n.as_u64().unwrap_or(u64::MAX) as usize;
                        Some(a.get(i).cloned().ok_or_else(|| {
                            format!("error calling index: index out of range: {i}")
                        })?)
                    }
                    (None | Some(Value::Null), _) => {
                        return Err("error calling index: index of untyped nil".into())
                    }
                    _ => return Err("error calling index: cannot index this value".into()),
                };
            }
            // Go yields the zero value of an absent map key; for interface{} maps
            // that prints as <no value>.
            Ok(match cur {
                Some(Value::Null) => None,
                other => other,
            })
        }
        "not" => {
            arity(name, &args, 1)?;
            Ok(Some(Value::from(!truthy(&args[0]))))
        }
        "and" => {
            let mut last = None;
            for a in args {
                if !truthy(&a) {
                    return Ok(a);
                }
                last = a;
            }
            Ok(last)
        }
        "or" => {
            let mut last = None;
            for a in args {
                if truthy(&a) {
                    return Ok(a);
                }
                last = a;
            }
            Ok(last)
        }
        "eq" => {
            let first = args.first().ok_or("missing arguments for comparison")?;
            let hit = args[1..].iter().any(|b| {
                compare(first, b) == Some(std::cmp::Ordering::Equal)
                    || (first.is_some() && first == b)
            });
            Ok(Some(Value::from(hit)))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(name, &args, 2)?;
            let ord = compare(&args[0], &args[1]);
            let r = match name {
                "ne" => args[0] != args[1],
                "lt" => ord == Some(std::cmp::Ordering::Less),
                "le" => ord.is_some_and(|o| o != std::cmp::Ordering::Greater),
                "gt" => ord == Some(std::cmp::Ordering::Greater),
                _ => ord.is_some_and(|o| o != std::cmp::Ordering::Less),
            };
            Ok(Some(Value::from(r)))
        }
        _ => Err(format!("function {name:?} not defined")),
    }
}

/// Go's `fmt.Sprint` (spaces between operands that are not both strings) or
/// `fmt.Sprintln` (spaces always).
fn go_sprint(args: &[Val], always_space: bool) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            let both_strings = matches!(a, Some(Value::String(_)))
                && matches!(args[i - 1], Some(Value::String(_)));
            if always_space || !both_strings {
                out.push(' ');
            }
        }
        out.push_str(&text(a));
    }
    out
}

/// The common verbs of Go's `fmt.Sprintf`: %s %v %d %q %f %x %t %%, with width,
/// `-` and precision.
fn go_printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut zero = false;
        let mut width = String::new();
        let mut prec: Option<String> = None;
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' if width.is_empty() && prec.is_none() => zero = true,
                '+' | ' ' | '#' => {}
                d if d.is_ascii_digit() => match &mut prec {
                    Some(p) => p.push(d),
                    None => width.push(d),
                },
                '.' => prec = Some(String::new()),
                _ => break,
            }
            chars.next();
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args.get(next).cloned();
        next += 1;
        let Some(arg) = arg else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let precision = prec.as_ref().and_then(|p| p.parse::<usize>().ok());
        let mut piece = match verb {
            'd' => match &arg {
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| text(&arg)),
                _ => format!("%!d({})", text(&arg)),
            },
            'f' | 'F' => match &arg {
                Some(Value::Number(n)) => {
                    format!("{:.*}", precision.unwrap_or(6), n.as_f64().unwrap_or(0.0))
                }
                _ => format!("%!f({})", text(&arg)),
            },
            'q' => crate::format::go_quote(&text(&arg)),
            'x' => match &arg {
                Some(Value::Number(n)) => format!("{:x}", n.as_i64().unwrap_or(0)),
                _ => text(&arg).bytes().map(|b| format!("{b:02x}")).collect(),
            },
            _ => {
                let t = text(&arg);
                match precision {
                    Some(p) if verb == 's' => t.chars().take(p).collect(),
                    _ => t,
                }
            }
        };
        let w: usize = width.parse().unwrap_or(0);
        let len = piece.chars().count();
        if len < w {
            let pad = w - len;
            if left {
                piece.push_str(&" ".repeat(pad));
            } else if zero {
                piece = format!("{}{piece}", "0".repeat(pad));
            } else {
                piece = format!("{}{piece}", " ".repeat(pad));
            }
        }
        out.push_str(&piece);
    }
    out
}

/// Go's `%v` of a value decoded from JSON.
pub fn print_value(v: &Val) -> String {
    match v {
        None => "<no value>".into(),
        Some(v) => go_value(v),
    }
}

fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                go_float(f)
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_value).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(m) => {
            if let Some(t) = time_of(v) {
                return go_time(t);
            }
            if let Some(kind) = nil_kind(v) {
                return match kind {
                    "slice" => "[]".into(),
                    "map" => "map[]".into(),
                    _ => "<nil>".into(),
                };
            }
            if let Some(fields) = m.get(STRUCT_KEY).and_then(Value::as_array) {
                let items: Vec<String> = fields
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|f| m.get(f).map(go_value).unwrap_or_default())
                    .collect();
                return format!("{{{}}}", items.join(" "));
            }
            let mut keys: Vec<&String> = m.keys().filter(|k| !is_marker_key(k)).collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_value(&m[k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// Go's `%v` of a float64: shortest representation, exponent form past 1e21.
fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        let sign = if e < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", e.abs());
    }
    format!("{f}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: &str, v: &Value) -> String {
        Template::parse(t)
            .and_then(|t| t.execute(v))
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn fields_and_maps() {
        let v = json!({"State": {"Pid": 1234, "Running": true},
                       "GraphDriver": {"Data": {"UpperDir": "/u", "LowerDir": "/l"}}});
        assert_eq!(run("{{.State.Pid}}", &v), "1234");
        assert_eq!(
            run("{{.GraphDriver.Data}}", &v),
            "map[LowerDir:/l UpperDir:/u]"
        );
        assert_eq!(run("{{.Nope}}", &v), "<no value>");
        assert_eq!(run("{{json .State}}", &v), r#"{"Pid":1234,"Running":true}"#);
        assert_eq!(run("{{if .State.Running}}up{{else}}down{{end}}", &v), "up");
    }

    #[test]
    fn range_index_and_functions() {
        let v = json!({"Names": ["/a", "/b"], "Labels": {"x": "1", "y": "2"}, "S": "a,b"});
        assert_eq!(run("{{range .Names}}[{{.}}]{{end}}", &v), "[/a][/b]");
        assert_eq!(
            run("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", &v),
            "x=1;y=2;"
        );
        assert_eq!(run("{{index .Labels \"y\"}}", &v), "2");
        assert_eq!(run("{{index .Names 1}}", &v), "/b");
        assert_eq!(run("{{join (split .S \",\") \"+\"}}", &v), "a+b");
        assert_eq!(run("{{upper .S}} {{.S | lower}}", &v), "A,B a,b");
        assert_eq!(run("{{printf \"%-4s|%d\" .S 7}}", &v), "a,b |7");
        assert_eq!(run("{{truncate .S 1}}{{pad .S 1 1}}", &v), "a a,b ");
        assert_eq!(run("{{title \"hello world\"}}", &v), "Hello World");
        assert_eq!(run("{{println .S}}", &v), "a,b\n");
        assert_eq!(run("{{.Names}}", &v), "[/a /b]");
        assert_eq!(run("{{- \" x \" -}} y", &v), " x y");
        assert_eq!(run("{{if eq .S \"a,b\"}}yes{{end}}", &v), "yes");
        assert_eq!(run("{{with .Labels}}{{.x}}{{end}}", &v), "1");
        assert_eq!(run("{{len .Names}}", &v), "2");
    }

    #[test]
    fn errors() {
        assert!(Template::parse("{{if .X}}").is_err());
        assert!(Template::parse("{{nosuch .X}}")
            .and_then(|t| t.execute(&json!({})))
            .is_err());
    }
}
