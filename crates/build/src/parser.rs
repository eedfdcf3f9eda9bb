//! The Dockerfile parser: parser directives, comments, line continuations (the escape
//! character), heredocs, and each instruction's arguments (see [`crate::ast`]). No expansion.

use crate::args::{
    extract_flags, parse_flags, parse_go_duration, parse_json, parse_name_val, parse_words,
    split_ws, FlagType, Json,
};
use crate::ast::{
    ArgDecl, Args, Copy, Directives, Dockerfile, Flag, From, Healthcheck, Heredoc, Instruction,
    InstructionKind, Run, Stage,
};
use crate::ParseError;

/// Parse a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lines = split_lines(text);
    let directives = parse_directives(&lines)?;
    let escape = directives.escape;
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut any = false;
    let mut i = 0;
    while i < lines.len() {
        let Some(logical) = next_logical_line(&lines, &mut i, escape)? else {
            break;
        };
        any = true;
        match build_node(&logical, escape, &lines, &mut i)? {
            Node::From(from) => {
                if let Some(name) = &from.name {
                    if stages.iter().any(|s| s.from.name.as_deref() == Some(name)) {
                        return Err(ParseError::new(
                            from.line,
                            format!("duplicate stage name {name:?}"),
                        ));
                    }
                }
                stages.push(Stage {
                    from,
                    instructions: Vec::new(),
                });
            }
            Node::Instr(instr) => match stages.last_mut() {
                Some(stage) => stage.instructions.push(instr),
                None if matches!(instr.kind, InstructionKind::Arg(_)) => global_args.push(instr),
                None => {
                    return Err(ParseError::new(
                        instr.line,
                        "no build stage in current context",
                    ))
                }
            },
        }
    }
    if !any {
        return Err(ParseError::new(0, "file with no instructions"));
    }
    if stages.is_empty() {
        return Err(ParseError::new(0, "no build stage in current context"));
    }
    Ok(Dockerfile {
        directives,
        global_args,
        stages,
    })
}

/// Parse one instruction line (e.g. an image's ONBUILD trigger `RUN echo hi`). FROM is refused.
pub fn parse_instruction(text: &str, escape: char) -> Result<Instruction, ParseError> {
    let lines = split_lines(text);
    let mut i = 0;
    let Some(logical) = next_logical_line(&lines, &mut i, escape)? else {
        return Err(ParseError::new(0, "file with no instructions"));
    };
    match build_node(&logical, escape, &lines, &mut i)? {
        Node::Instr(instr) => Ok(instr),
        Node::From(f) => Err(ParseError::new(f.line, "FROM isn't allowed here")),
    }
}

fn split_lines(text: &str) -> Vec<&str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut v: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if text.ends_with('\n') {
        v.pop();
    }
    v
}

fn parse_directives(lines: &[&str]) -> Result<Directives, ParseError> {
    let mut d = Directives::default();
    let mut seen: Vec<String> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some((key, value)) = directive_of(line) else {
            break;
        };
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            break;
        }
        if seen.contains(&key) {
            return Err(ParseError::new(
                n + 1,
                format!("only one {key} parser directive can be used"),
            ));
        }
        seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                d.escape = match value.as_str() {
                    "`" => '`',
                    "\\" => '\\',
                    _ => {
                        return Err(ParseError::new(
                            n + 1,
                            format!("invalid escape token '{value}' does not match ` or \\"),
                        ))
                    }
                }
            }
            "syntax" => d.syntax = Some(value),
            _ => d.check = Some(value),
        }
    }
    Ok(d)
}

/// `# key = value` → (lower-case key, value).
fn directive_of(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let key_end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let key = &rest[..key_end];
    if key.is_empty() || !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let rest = rest[key_end..].trim_start_matches([' ', '\t']);
    let value = rest.strip_prefix('=')?.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value.to_string()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strip a trailing escape char (plus trailing blanks): (line, ended?).
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(s) => (s.to_string(), false),
        None => (line.to_string(), true),
    }
}

struct Logical {
    text: String,
    start: usize,
    end: usize,
}

/// Read the next instruction's joined text from `lines[*i..]`, skipping blank and comment
/// lines; comment and empty lines inside a continuation are skipped.
fn next_logical_line(
    lines: &[&str],
    i: &mut usize,
    escape: char,
) -> Result<Option<Logical>, ParseError> {
    while *i < lines.len() {
        let raw = lines[*i];
        *i += 1;
        let start = *i;
        if is_comment(raw) {
            continue;
        }
        let (mut line, mut ended) = trim_continuation(raw.trim_start(), escape);
        if ended && line.trim().is_empty() {
            continue;
        }
        while !ended && *i < lines.len() {
            let cont = lines[*i];
            *i += 1;
            if is_comment(cont) || cont.trim().is_empty() {
                continue;
            }
            let (c, e) = trim_continuation(cont, escape);
            line.push_str(&c);
            ended = e;
        }
        return Ok(Some(Logical {
            text: line,
            start,
            end: *i,
        }));
    }
    Ok(None)
}

enum Node {
    From(From),
    Instr(Instruction),
}

fn build_node(
    logical: &Logical,
    escape: char,
    lines: &[&str],
    i: &mut usize,
) -> Result<Node, ParseError> {
    let line = logical.start;
    let err = |m: String| ParseError::new(line, m);
    let trimmed = logical.text.trim();
    let (cmd, after) = match trimmed.find(char::is_whitespace) {
        Some(idx) => (&trimmed[..idx], &trimmed[idx..]),
        None => (trimmed, ""),
    };
    let (flag_words, rest) = extract_flags(after);
    let rest = rest.trim().to_string();
    let keyword = cmd.to_ascii_uppercase();
    // Heredocs come right after the instruction's line (RUN, COPY, ADD, or ONBUILD of those).
    let mut heredocs = Vec::new();
    let mut end_line = logical.end;
    if can_contain_heredoc(&keyword, &rest) && logical.text.contains("<<") {
        for mut h in heredocs_from_line(&logical.text) {
            let mut terminated = false;
            let mut body = String::new();
            while *i < lines.len() {
                let l = lines[*i];
                *i += 1;
                let candidate = if h.strip_tabs {
                    l.trim_start_matches('\t')
                } else {
                    l
                };
                if candidate == h.name {
                    terminated = true;
                    break;
                }
                body.push_str(candidate);
                body.push('\n');
            }
            if !terminated {
                return Err(err("unterminated heredoc".to_string()));
            }
            h.body = body;
            heredocs.push(h);
        }
        end_line = *i;
    }
    if keyword == "FROM" {
        let flags = parse_flags(&flag_words, &[("platform", FlagType::Str)]).map_err(err)?;
        let words = split_ws(&rest);
        let name = match words.len() {
            1 => None,
            3 if words[1].eq_ignore_ascii_case("as") => {
                let n = words[2].to_ascii_lowercase();
                if !valid_stage_name(&n) {
                    return Err(err(format!(
                        "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                        words[2]
                    )));
                }
                Some(n)
            }
            3 => return Err(err(format!("expected 'AS', found {:?}", words[1]))),
            _ => {
                return Err(err(
                    "FROM requires either one or three arguments".to_string()
                ))
            }
        };
        let platform = flags
            .iter()
            .find(|f| f.name == "platform")
            .and_then(|f| f.value.clone());
        return Ok(Node::From(From {
            image: words[0].clone(),
            platform,
            name,
            line,
            original: logical.text.clone(),
            flags,
        }));
    }
    let (kind, flags) = parse_kind(
        &keyword,
        cmd,
        &flag_words,
        &rest,
        escape,
        logical,
        &heredocs,
    )
    .map_err(|m| ParseError::new(line, m))?;
    let heredocs = match &kind {
        // An ONBUILD's heredocs belong to its inner instruction.
        InstructionKind::Onbuild(_) => Vec::new(),
        _ => heredocs,
    };
    Ok(Node::Instr(Instruction {
        line,
        end_line: end_line.max(line),
        original: logical.text.clone(),
        flags,
        heredocs,
        kind,
    }))
}

fn valid_stage_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn can_contain_heredoc(keyword: &str, rest: &str) -> bool {
    let (kw, args) = if keyword == "ONBUILD" {
        let t = rest.trim();
        match t.find(char::is_whitespace) {
            Some(idx) => (t[..idx].to_ascii_uppercase(), t[idx..].to_string()),
            None => (t.to_ascii_uppercase(), String::new()),
        }
    } else {
        (keyword.to_string(), rest.to_string())
    };
    if !matches!(kw.as_str(), "RUN" | "COPY" | "ADD") {
        return false;
    }
    let (_, a) = extract_flags(&args);
    !matches!(parse_json(&a), Ok(Json::List(_)))
}

/// The heredoc openers of a line: words (quotes kept) of the form `[fd]<<[-]NAME`.
fn heredocs_from_line(line: &str) -> Vec<Heredoc> {
    let mut out = Vec::new();
    for word in parse_words(line, '\\') {
        let digits = word.chars().take_while(|c| c.is_ascii_digit()).count();
        let Some(rest) = word[digits..].strip_prefix("<<") else {
            continue;
        };
        let (strip_tabs, rest) = match rest.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if rest.is_empty() || rest.contains('<') {
            continue;
        }
        let quoted = rest.contains(['"', '\'']);
        let name: String = rest
            .chars()
            .filter(|c| *c != '"' && *c != '\'' && *c != '\\')
            .collect();
        if name.is_empty() {
            continue;
        }
        let fd = if digits > 0 {
            word[..digits].parse().ok()
        } else {
            None
        };
        out.push(Heredoc {
            name,
            body: String::new(),
            strip_tabs,
            expand: !quoted,
            fd,
        });
    }
    out
}

fn maybe_json(rest: &str) -> Result<Args, String> {
    Ok(match parse_json(rest)? {
        Json::List(v) => Args::Exec(v),
        Json::NotJson => Args::Shell(rest.to_string()),
    })
}

fn maybe_json_list(rest: &str) -> Result<Vec<String>, String> {
    Ok(match parse_json(rest)? {
        Json::List(v) => v,
        Json::NotJson => split_ws(rest),
    })
}

fn one_arg(keyword: &str, rest: &str) -> Result<String, String> {
    if rest.is_empty() {
        return Err(format!("{keyword} requires exactly one argument"));
    }
    Ok(rest.to_string())
}

const COPY_FLAGS: &[(&str, FlagType)] = &[
    ("from", FlagType::Str),
    ("chown", FlagType::Str),
    ("chmod", FlagType::Str),
    ("link", FlagType::Bool),
    ("parents", FlagType::Bool),
    ("exclude", FlagType::Strings),
];

const ADD_FLAGS: &[(&str, FlagType)] = &[
    ("chown", FlagType::Str),
    ("chmod", FlagType::Str),
    ("link", FlagType::Bool),
    ("keep-git-dir", FlagType::Bool),
    ("checksum", FlagType::Str),
    ("exclude", FlagType::Strings),
    ("unpack", FlagType::Bool),
];

fn value(flags: &[Flag], name: &str) -> Option<String> {
    flags
        .iter()
        .rev()
        .find(|f| f.name == name)
        .and_then(|f| f.value.clone())
}

fn boolean(flags: &[Flag], name: &str) -> Option<bool> {
    flags.iter().rev().find(|f| f.name == name).map(|f| {
        f.value
            .as_deref()
            .is_none_or(|v| v.eq_ignore_ascii_case("true"))
    })
}

fn parse_kind(
    keyword: &str,
    cmd: &str,
    flag_words: &[String],
    rest: &str,
    escape: char,
    logical: &Logical,
    heredocs: &[Heredoc],
) -> Result<(InstructionKind, Vec<Flag>), String> {
    let no_flags = |_: ()| parse_flags(flag_words, &[]);
    let kind = match keyword {
        "RUN" => {
            let flags = parse_flags(
                flag_words,
                &[
                    ("mount", FlagType::Strings),
                    ("network", FlagType::Str),
                    ("security", FlagType::Str),
                ],
            )?;
            let mounts = flags
                .iter()
                .filter(|f| f.name == "mount")
                .filter_map(|f| f.value.clone())
                .collect();
            let run = Run {
                args: maybe_json(rest)?,
                mounts,
                network: value(&flags, "network"),
                security: value(&flags, "security"),
            };
            if let Some(n) = &run.network {
                if !matches!(n.as_str(), "none" | "host" | "default") {
                    return Err(format!("unsupported network mode {n:?}"));
                }
            }
            return Ok((InstructionKind::Run(run), flags));
        }
        "CMD" => InstructionKind::Cmd(maybe_json(rest)?),
        "ENTRYPOINT" => InstructionKind::Entrypoint(maybe_json(rest)?),
        "SHELL" => match parse_json(rest)? {
            Json::List(v) if !v.is_empty() => InstructionKind::Shell(v),
            Json::List(_) => return Err("SHELL requires at least one argument".to_string()),
            Json::NotJson => {
                return Err("SHELL requires the arguments to be in JSON form".to_string())
            }
        },
        "COPY" | "ADD" => {
            let allowed = if keyword == "COPY" {
                COPY_FLAGS
            } else {
                ADD_FLAGS
            };
            let flags = parse_flags(flag_words, allowed)?;
            let mut words = maybe_json_list(rest)?;
            if words.len() < 2 {
                return Err(format!("{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"));
            }
            let dest = words.pop().unwrap_or_default();
            for s in &words {
                if s.starts_with("<<") && !heredocs.iter().any(|h| s.contains(h.name.as_str())) {
                    return Err(format!("unknown heredoc {s:?}"));
                }
            }
            let c = Copy {
                sources: words,
                dest,
                from: value(&flags, "from"),
                chown: value(&flags, "chown"),
                chmod: value(&flags, "chmod"),
                link: boolean(&flags, "link").unwrap_or(false),
                parents: boolean(&flags, "parents").unwrap_or(false),
                excludes: flags
                    .iter()
                    .filter(|f| f.name == "exclude")
                    .filter_map(|f| f.value.clone())
                    .collect(),
                checksum: value(&flags, "checksum"),
                keep_git_dir: boolean(&flags, "keep-git-dir").unwrap_or(false),
                unpack: boolean(&flags, "unpack"),
            };
            let k = if keyword == "COPY" {
                InstructionKind::Copy(c)
            } else {
                InstructionKind::Add(c)
            };
            return Ok((k, flags));
        }
        "ENV" => InstructionKind::Env(parse_name_val(rest, "ENV", escape)?),
        "LABEL" => InstructionKind::Label(parse_name_val(rest, "LABEL", escape)?),
        "ARG" => {
            let words = parse_words(rest, escape);
            if words.is_empty() {
                return Err("ARG requires at least one argument".to_string());
            }
            InstructionKind::Arg(
                words
                    .into_iter()
                    .map(|w| match w.split_once('=') {
                        Some((n, d)) => ArgDecl {
                            name: n.to_string(),
                            default: Some(d.to_string()),
                        },
                        None => ArgDecl {
                            name: w,
                            default: None,
                        },
                    })
                    .collect(),
            )
        }
        "EXPOSE" => {
            let v = split_ws(rest);
            if v.is_empty() {
                return Err("EXPOSE requires at least one argument".to_string());
            }
            InstructionKind::Expose(v)
        }
        "VOLUME" => {
            let v = maybe_json_list(rest)?;
            if v.is_empty() {
                return Err("VOLUME requires at least one argument".to_string());
            }
            if v.iter().any(|s| s.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".to_string());
            }
            InstructionKind::Volume(v)
        }
        "WORKDIR" => InstructionKind::Workdir(one_arg(keyword, rest)?),
        "USER" => InstructionKind::User(one_arg(keyword, rest)?),
        "STOPSIGNAL" => InstructionKind::Stopsignal(one_arg(keyword, rest)?),
        "MAINTAINER" => InstructionKind::Maintainer(one_arg(keyword, rest)?),
        "HEALTHCHECK" => {
            let flags = parse_flags(
                flag_words,
                &[
                    ("interval", FlagType::Str),
                    ("timeout", FlagType::Str),
                    ("start-period", FlagType::Str),
                    ("start-interval", FlagType::Str),
                    ("retries", FlagType::Str),
                ],
            )?;
            let hc = parse_healthcheck(rest, &flags)?;
            return Ok((InstructionKind::Healthcheck(hc), flags));
        }
        "ONBUILD" => {
            no_flags(())?;
            if rest.is_empty() {
                return Err("ONBUILD requires at least one argument".to_string());
            }
            // The trigger text: the original minus the `ONBUILD` keyword.
            let orig = logical.text.trim_start();
            let inner_text = orig[cmd.len()..].trim_start();
            let inner_kw = inner_text
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            match inner_kw.as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string())
                }
                "FROM" | "MAINTAINER" => {
                    return Err(format!("{inner_kw} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let inner_logical = Logical {
                text: inner_text.to_string(),
                start: logical.start,
                end: logical.end,
            };
            let (ik, iflags) = {
                let t = inner_logical.text.trim();
                let (icmd, iafter) = match t.find(char::is_whitespace) {
                    Some(idx) => (&t[..idx], &t[idx..]),
                    None => (t, ""),
                };
                let (ifw, irest) = extract_flags(iafter);
                let ikw = icmd.to_ascii_uppercase();
                parse_kind(
                    &ikw,
                    icmd,
                    &ifw,
                    irest.trim(),
                    escape,
                    &inner_logical,
                    heredocs,
                )?
            };
            let inner = Instruction {
                line: logical.start,
                end_line: logical.end,
                original: inner_logical.text,
                flags: iflags,
                heredocs: heredocs.to_vec(),
                kind: ik,
            };
            InstructionKind::Onbuild(Box::new(inner))
        }
        _ => return Err(format!("unknown instruction: {keyword}")),
    };
    let flags = no_flags(())?;
    Ok((kind, flags))
}

fn parse_healthcheck(rest: &str, flags: &[Flag]) -> Result<Healthcheck, String> {
    let t = rest.trim();
    if t.is_empty() {
        return Err("HEALTHCHECK requires at least one argument".to_string());
    }
    let (typ, args) = match t.find(char::is_whitespace) {
        Some(idx) => (&t[..idx], t[idx..].trim_start()),
        None => (t, ""),
    };
    let typ = typ.to_ascii_uppercase();
    if typ == "NONE" {
        if !args.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".to_string());
        }
        return Ok(Healthcheck {
            cmd: None,
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        });
    }
    if typ != "CMD" {
        return Err(format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"));
    }
    let cmd = maybe_json(args)?;
    let empty = match &cmd {
        Args::Shell(s) => s.trim().is_empty(),
        Args::Exec(v) => v.is_empty(),
    };
    if empty {
        return Err("Missing command after HEALTHCHECK CMD".to_string());
    }
    let dur = |name: &str| -> Result<Option<i64>, String> {
        let Some(v) = value(flags, name) else {
            return Ok(None);
        };
        if v.is_empty() {
            return Ok(None);
        }
        let d = parse_go_duration(&v)?;
        if d == 0 {
            return Ok(Some(0));
        }
        if d < 1_000_000 {
            return Err(format!("Interval \"{name}\" cannot be less than 1ms"));
        }
        Ok(Some(d))
    };
    let retries = match value(flags, "retries") {
        Some(v) if !v.is_empty() => {
            let r: i64 = v
                .parse()
                .map_err(|_| format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))?;
            if r < 0 {
                return Err(format!("--retries cannot be negative ({r})"));
            }
            Some(r)
        }
        _ => None,
    };
    Ok(Healthcheck {
        cmd: Some(cmd),
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start-period")?,
        start_interval: dur("start-interval")?,
        retries,
    })
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
