//! Output formatting: a small Go-template-like renderer (`{{.Field}}`, `{{json .}}`, `table ...`)
//! and a tab writer that aligns columns the way docker's (Go's text/tabwriter) does.

use serde_json::Value;

use crate::error::{CliError, Result};

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.A.B` (empty path = `.`)
    Path(Vec<String>),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action {
        func: Option<String>,
        args: Vec<Arg>,
    },
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    pub fn parse(src: &str) -> Result<Self> {
        // docker turns the two-character sequences \t and \n into real tabs/newlines.
        let src = src.replace("\\t", "\t").replace("\\n", "\n");
        let mut nodes = Vec::new();
        let mut rest = src.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                nodes.push(Node::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| {
                CliError::Usage(format!(
                    "template parsing error: unclosed action in {src:?}"
                ))
            })?;
            let inner = after[..end]
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            nodes.push(parse_action(inner)?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            nodes.push(Node::Text(rest.to_string()));
        }
        Ok(Self { nodes })
    }

    pub fn render(&self, data: &Value) -> Result<String> {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action { func, args } => out.push_str(&eval(func.as_deref(), args, data)?),
            }
        }
        Ok(out)
    }
}

fn tokenize(s: &str) -> Result<Vec<String>> {
    let mut toks = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '`' {
            chars.next();
            let mut t = String::from("\"");
            let mut closed = false;
            while let Some(ch) = chars.next() {
                if ch == c {
                    closed = true;
                    break;
                }
                if ch == '\\' && c == '"' {
                    match chars.next() {
                        Some('n') => t.push('\n'),
                        Some('t') => t.push('\t'),
                        Some(o) => t.push(o),
                        None => break,
                    }
                } else {
                    t.push(ch);
                }
            }
            if !closed {
                return Err(CliError::Usage(format!(
                    "template parsing error: unterminated string in {s:?}"
                )));
            }
            toks.push(t);
        } else {
            let mut t = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                t.push(ch);
                chars.next();
            }
            toks.push(t);
        }
    }
    Ok(toks)
}

fn parse_arg(tok: &str) -> Result<Arg> {
    if let Some(s) = tok.strip_prefix('"') {
        return Ok(Arg::Str(s.to_string()));
    }
    if tok == "." {
        return Ok(Arg::Path(Vec::new()));
    }
    if let Some(p) = tok.strip_prefix('.') {
        return Ok(Arg::Path(p.split('.').map(str::to_string).collect()));
    }
    Err(CliError::Usage(format!(
        "template parsing error: unsupported argument {tok:?}"
    )))
}

fn parse_action(inner: &str) -> Result<Node> {
    let toks = tokenize(inner)?;
    let Some(first) = toks.first() else {
        return Err(CliError::Usage(
            "template parsing error: empty action".into(),
        ));
    };
    if first.starts_with('.') {
        if toks.len() != 1 {
            return Err(CliError::Usage(format!(
                "template parsing error: {inner:?}"
            )));
        }
        return Ok(Node::Action {
            func: None,
            args: vec![parse_arg(first)?],
        });
    }
    const FUNCS: &[&str] = &[
        "json", "join", "upper", "lower", "title", "index", "println", "print", "truncate",
    ];
    if !FUNCS.contains(&first.as_str()) {
        return Err(CliError::Usage(format!(
            "template parsing error: function {first:?} not supported"
        )));
    }
    let args = toks[1..]
        .iter()
        .map(|t| parse_arg(t))
        .collect::<Result<Vec<_>>>()?;
    Ok(Node::Action {
        func: Some(first.clone()),
        args,
    })
}

/// Field lookup: exact key first, then case-insensitive.
fn lookup<'a>(data: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = data;
    for key in path {
        let obj = cur.as_object()?;
        cur = match obj.get(key) {
            Some(v) => v,
            None => obj
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)?,
        };
    }
    Some(cur)
}

fn arg_value(arg: &Arg, data: &Value) -> Option<Value> {
    match arg {
        Arg::Path(p) => lookup(data, p).cloned(),
        Arg::Str(s) => Some(Value::String(s.clone())),
    }
}

/// Print a value the way Go's text/template prints it.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_string(&o[k.as_str()])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// JSON as Go's encoding/json writes it (HTML characters escaped, compact).
pub fn go_json(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn eval(func: Option<&str>, args: &[Arg], data: &Value) -> Result<String> {
    let first = args.first().map(|a| arg_value(a, data));
    let need = |n: usize| -> Result<()> {
        if args.len() < n {
            Err(CliError::Usage(format!(
                "template: wrong number of args for {}",
                func.unwrap_or("")
            )))
        } else {
            Ok(())
        }
    };
    let missing = || "<no value>".to_string();
    match func {
        None => Ok(first
            .flatten()
            .map(|v| go_string(&v))
            .unwrap_or_else(missing)),
        Some("json") => {
            need(1)?;
            Ok(go_json(&first.flatten().unwrap_or(Value::Null)))
        }
        Some("upper") | Some("lower") | Some("title") => {
            need(1)?;
            let s = first.flatten().map(|v| go_string(&v)).unwrap_or_default();
            Ok(match func {
                Some("upper") => s.to_uppercase(),
                Some("lower") => s.to_lowercase(),
                _ => {
                    let mut c = s.chars();
                    match c.next() {
                        Some(f) => f.to_uppercase().chain(c).collect(),
                        None => s,
                    }
                }
            })
        }
        Some("join") => {
            need(2)?;
            let sep = arg_value(&args[1], data)
                .map(|v| go_string(&v))
                .unwrap_or_default();
            Ok(match first.flatten() {
                Some(Value::Array(a)) => a.iter().map(go_string).collect::<Vec<_>>().join(&sep),
                Some(v) => go_string(&v),
                None => String::new(),
            })
        }
        Some("index") => {
            need(2)?;
            let key = arg_value(&args[1], data)
                .map(|v| go_string(&v))
                .unwrap_or_default();
            Ok(match first.flatten() {
                Some(Value::Object(o)) => o.get(&key).map(go_string).unwrap_or_else(missing),
                Some(Value::Array(a)) => key
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| a.get(i))
                    .map(go_string)
                    .unwrap_or_else(missing),
                _ => missing(),
            })
        }
        Some("truncate") => {
            need(2)?;
            let s = first.flatten().map(|v| go_string(&v)).unwrap_or_default();
            let n = arg_value(&args[1], data)
                .map(|v| go_string(&v))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            Ok(s.chars().take(n).collect())
        }
        Some("println") | Some("print") => {
            let parts: Vec<String> = args
                .iter()
                .map(|a| {
                    arg_value(a, data)
                        .map(|v| go_string(&v))
                        .unwrap_or_else(missing)
                })
                .collect();
            let mut s = parts.join(" ");
            if func == Some("println") {
                s.push('\n');
            }
            Ok(s)
        }
        Some(f) => Err(CliError::Usage(format!(
            "template: function {f:?} not supported"
        ))),
    }
}

/// Align tab-separated cells like Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)`.
pub fn tabwrite(text: &str) -> String {
    tabwrite_min(text, 10)
}

/// Like [`tabwrite`] with another minimum cell width (docker top uses 20).
pub fn tabwrite_min(text: &str, min_width: usize) -> String {
    const PADDING: usize = 3;
    let trailing_newline = text.ends_with('\n');
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths: Vec<usize> = Vec::new();

    fn write_lines(out: &mut String, lines: &[Vec<&str>], widths: &[usize]) {
        for line in lines {
            for (j, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if j < widths.len() && j + 1 < line.len() {
                    let w = cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', widths[j].saturating_sub(w)));
                }
            }
            out.push('\n');
        }
    }

    fn format(out: &mut String, lines: &[Vec<&str>], widths: &mut Vec<usize>, min: usize) {
        let column = widths.len();
        let mut line0 = 0;
        let mut this = 0;
        while this < lines.len() {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            write_lines(out, &lines[line0..this], widths);
            line0 = this;
            let mut width = min;
            while this < lines.len() && column + 1 < lines[this].len() {
                width = width.max(lines[this][column].chars().count() + PADDING);
                this += 1;
            }
            widths.push(width);
            format(out, &lines[line0..this], widths, min);
            widths.pop();
            line0 = this;
        }
        write_lines(out, &lines[line0..], widths);
    }

    format(&mut out, &lines, &mut widths, min_width);
    if !trailing_newline {
        out.pop();
    }
    out
}

/// Render a list of rows (objects) with `--format` semantics: empty/`table` → the default table;
/// `json` → one JSON object per line; `table TEMPLATE` → header + aligned rows; else raw template.
pub fn render_list(
    format: Option<&str>,
    default_table: &str,
    headers: &Value,
    rows: &[Value],
) -> Result<String> {
    let format = match format.map(str::trim) {
        None | Some("") | Some("table") => default_table.to_string(),
        Some("json") => "{{json .}}".to_string(),
        Some(f) => f.to_string(),
    };
    let (is_table, tmpl_src) = match format.strip_prefix("table") {
        Some(rest) if rest.starts_with(char::is_whitespace) => {
            (true, rest.trim_start().to_string())
        }
        _ => (false, format.clone()),
    };
    let tmpl = Template::parse(&tmpl_src)?;
    let mut buf = String::new();
    if is_table {
        buf.push_str(&tmpl.render(headers)?);
        buf.push('\n');
    }
    for row in rows {
        buf.push_str(&tmpl.render(row)?);
        buf.push('\n');
    }
    Ok(if is_table { tabwrite(&buf) } else { buf })
}

/// Render one object (inspect, version, info) with a template, newline-terminated.
pub fn render_one(format: &str, data: &Value) -> Result<String> {
    let f = if format.trim() == "json" {
        "{{json .}}"
    } else {
        format
    };
    let mut s = Template::parse(f)?.render(data)?;
    s.push('\n');
    Ok(s)
}

/// Shorten to `max` display characters, ending with "…" when cut (docker's Ellipsis).
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// Go's strconv.Quote for the common cases.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `sha256:abcdef...` → first 12 hex characters.
pub fn short_id(id: &str) -> String {
    let id = id.split_once(':').map(|(_, h)| h).unwrap_or(id);
    id.chars().take(12).collect()
}

/// Pretty JSON with Go's MarshalIndent style (4 spaces, like `docker inspect`).
pub fn indent_json(v: &Value) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    let s = String::from_utf8_lossy(&buf).to_string();
    Ok(s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026"))
}

/// Go's `json.Indent(dst, src, "", "    ")`: re-indents raw JSON without reordering keys or
/// touching string contents (escapes stay as the engine wrote them); `[]` and `{}` stay compact.
/// `docker inspect` prints the engine's bytes this way.
pub fn indent_raw_json(src: &[u8]) -> String {
    fn newline(out: &mut Vec<u8>, depth: usize) {
        out.push(b'\n');
        for _ in 0..depth {
            out.extend_from_slice(b"    ");
        }
    }
    let mut out = Vec::with_capacity(src.len() * 2);
    let (mut depth, mut in_str, mut esc, mut opened) = (0usize, false, false, false);
    for &b in src {
        if in_str {
            out.push(b);
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            continue;
        }
        if opened && b != b']' && b != b'}' {
            opened = false;
            depth += 1;
            newline(&mut out, depth);
        }
        match b {
            b'"' => {
                in_str = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                opened = true;
            }
            b'}' | b']' => {
                if opened {
                    opened = false;
                } else {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_indent_like_go() {
        let raw = br#"{"b":1,"a":[],"c":{"x":"<&>\"q\" , :"},"d":[1,{}] }"#;
        assert_eq!(
            indent_raw_json(raw),
            "{\n    \"b\": 1,\n    \"a\": [],\n    \"c\": {\n        \"x\": \"<&>\\\"q\\\" , :\"\n    },\n    \"d\": [\n        1,\n        {}\n    ]\n}"
        );
    }

    #[test]
    fn fields_and_json() {
        let v = json!({"ID": "abc", "Names": "x", "State": {"Status": "running"}, "L": ["a", "b"]});
        assert_eq!(
            render_one("{{.ID}} {{.State.Status}}", &v).unwrap(),
            "abc running\n"
        );
        assert_eq!(
            render_one("{{json .State}}", &v).unwrap(),
            "{\"Status\":\"running\"}\n"
        );
        assert_eq!(
            render_one("{{join .L \",\"}}|{{.Missing}}", &v).unwrap(),
            "a,b|<no value>\n"
        );
        assert_eq!(
            render_one("{{.L}} {{.State}}", &v).unwrap(),
            "[a b] map[Status:running]\n"
        );
        assert_eq!(
            render_one("{{upper .Names}}\\t{{index .State \"Status\"}}", &v).unwrap(),
            "X\trunning\n"
        );
        assert_eq!(
            render_one("json", &json!({"a": "<"})).unwrap(),
            "{\"a\":\"\\u003c\"}\n"
        );
        assert!(Template::parse("{{range .L}}").is_err());
        assert!(Template::parse("{{.ID").is_err());
    }

    #[test]
    fn tabwriter_matches_go() {
        let out = tabwrite("CONTAINER ID\tIMAGE\tNAMES\nabc\tbusybox:latest\tx\n");
        assert_eq!(
            out,
            "CONTAINER ID   IMAGE            NAMES\nabc            busybox:latest   x\n"
        );
        // empty column keeps the minimum width
        assert_eq!(
            tabwrite("PORTS\tNAMES\n\tx\n"),
            "PORTS     NAMES\n          x\n"
        );
    }

    #[test]
    fn list_formats() {
        let headers = json!({"ID": "CONTAINER ID", "Image": "IMAGE"});
        let rows = vec![
            json!({"ID": "1", "Image": "busybox"}),
            json!({"ID": "22", "Image": "alpine"}),
        ];
        let t = render_list(None, "table {{.ID}}\t{{.Image}}", &headers, &rows).unwrap();
        assert_eq!(
            t,
            "CONTAINER ID   IMAGE\n1              busybox\n22             alpine\n"
        );
        let raw =
            render_list(Some("{{.ID}}:{{.Image}}"), "table {{.ID}}", &headers, &rows).unwrap();
        assert_eq!(raw, "1:busybox\n22:alpine\n");
        let j = render_list(Some("json"), "table {{.ID}}", &headers, &rows[..1]).unwrap();
        assert_eq!(j, "{\"ID\":\"1\",\"Image\":\"busybox\"}\n");
    }

    #[test]
    fn ellipsis_and_quote() {
        assert_eq!(
            ellipsis("sh -c 'while true; do sleep 1; done'", 20),
            "sh -c 'while true; …"
        );
        assert_eq!(ellipsis("sh", 20), "sh");
        assert_eq!(go_quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }

    #[test]
    fn inspect_indent() {
        let s = indent_json(&json!([{"A": 1}])).unwrap();
        assert_eq!(s, "[\n    {\n        \"A\": 1\n    }\n]");
    }
}
