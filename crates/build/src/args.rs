//! Argument splitting of the Dockerfile parser (BuildKit's parser rules): leading `--flags`,
//! quote-keeping word splitting, JSON forms, `name=value` lists, Go durations.

use crate::ast::Flag;

/// Split the leading `--flag[=value]` words off `line` (quotes removed from flag words, `\`
/// escapes applied). Returns the flags and the rest of the line.
pub(crate) fn extract_flags(line: &str) -> (Vec<String>, String) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let at_end = i >= chars.len();
        let (pos, ch) = if at_end { (line.len(), '\0') } else { chars[i] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            if ch != '-' || chars.get(i + 1).map(|c| c.1) != Some('-') {
                return (words, line[pos..].to_string());
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (words, line[pos..].to_string());
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = ch;
                    blank_ok = true;
                    phase = Phase::Quote;
                    i += 1;
                    continue;
                }
                let mut c = ch;
                if ch == '\\' {
                    if i + 1 >= chars.len() {
                        i += 1;
                        continue;
                    }
                    i += 1;
                    c = chars[i].1;
                }
                word.push(c);
                i += 1;
            }
            Phase::Quote => {
                if ch == quote {
                    phase = Phase::Word;
                    i += 1;
                    continue;
                }
                let mut c = ch;
                if ch == '\\' {
                    if i + 1 >= chars.len() {
                        phase = Phase::Word;
                        i += 1;
                        continue;
                    }
                    i += 1;
                    c = chars[i].1;
                }
                word.push(c);
                i += 1;
            }
            Phase::Spaces => unreachable!("handled above"),
        }
    }
    (words, String::new())
}

/// The type of a flag an instruction accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagType {
    Bool,
    Str,
    /// May repeat (`--mount`, `--exclude`).
    Strings,
}

/// Check flag words against what the instruction accepts (BuildKit's BFlags rules).
pub(crate) fn parse_flags(
    words: &[String],
    allowed: &[(&str, FlagType)],
) -> Result<Vec<Flag>, String> {
    let mut out: Vec<Flag> = Vec::new();
    for w in words {
        let Some(arg) = w.strip_prefix("--") else {
            return Err(format!("arg should start with -- : {w}"));
        };
        if arg.is_empty() {
            break;
        }
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg, None),
        };
        let Some((_, ty)) = allowed.iter().find(|(n, _)| *n == name) else {
            return Err(format!("unknown flag: {name}"));
        };
        if *ty != FlagType::Strings && out.iter().any(|f| f.name == name) {
            return Err(format!("duplicate flag specified: {name}"));
        }
        match ty {
            FlagType::Bool => {
                if let Some(v) = &value {
                    match v.to_ascii_lowercase().as_str() {
                        "true" | "false" => {}
                        "" => return Err(format!("missing a value on flag: {name}")),
                        _ => {
                            return Err(format!(
                                "expecting boolean value for flag {name}, not: {v}"
                            ))
                        }
                    }
                }
            }
            FlagType::Str | FlagType::Strings => {
                if value.is_none() {
                    return Err(format!("missing a value on flag: {name}"));
                }
            }
        }
        out.push(Flag {
            name: name.to_string(),
            value,
        });
    }
    Ok(out)
}

/// BuildKit's `parseWords`: split on whitespace, keeping quotes and escapes in the words.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        match quote {
            None => {
                if ch.is_whitespace() {
                    if in_word && (blank_ok || !word.is_empty()) {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    in_word = false;
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                }
                word.push(chars[i]);
                i += 1;
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    if i + 1 == chars.len() {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                }
                word.push(chars[i]);
                i += 1;
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Outcome of trying the JSON form.
pub(crate) enum Json {
    List(Vec<String>),
    NotJson,
}

pub(crate) const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// `["a", "b"]` → the strings; anything else that is not a JSON array → NotJson; a JSON
/// array with non-strings → Docker's error.
pub(crate) fn parse_json(rest: &str) -> Result<Json, String> {
    let t = rest.trim_start();
    if !t.starts_with('[') {
        return Ok(Json::NotJson);
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(t) {
        Ok(vals) => {
            let mut out = Vec::with_capacity(vals.len());
            for v in vals {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Err(NOT_STRING_ARRAY.to_string()),
                }
            }
            Ok(Json::List(out))
        }
        Err(_) => Ok(Json::NotJson),
    }
}

/// Whitespace-delimited words (no quote handling), as BuildKit's
/// `parseStringsWhitespaceDelimited`.
pub(crate) fn split_ws(rest: &str) -> Vec<String> {
    rest.split_whitespace().map(str::to_string).collect()
}

/// `parseNameVal` for ENV and LABEL: `a=b c="d e"` or the legacy `a b c` (one pair).
pub(crate) fn parse_name_val(
    rest: &str,
    key: &str,
    escape: char,
) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Err(format!("{key} requires at least one argument"));
    }
    if !words[0].contains('=') {
        let t = rest.trim();
        let Some(idx) = t.find(char::is_whitespace) else {
            return Err(format!("{key} must have two arguments"));
        };
        let (name, value) = (t[..idx].to_string(), t[idx..].trim_start().to_string());
        return Ok(vec![(name, value)]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ));
        };
        if k.is_empty() {
            return Err(format!("{key} names can not be blank"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Go's `time.ParseDuration` → nanoseconds.
pub(crate) fn parse_go_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("time: invalid duration {s:?}");
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mult: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        total += n * mult;
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    let v = total.round() as i64;
    Ok(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_extracted_with_quotes_removed() {
        let (f, rest) = extract_flags("--from=build --chown=\"a b\":c src dst");
        assert_eq!(f, vec!["--from=build", "--chown=a b:c"]);
        assert_eq!(rest, "src dst");
        let (f, rest) = extract_flags("  echo --not-a-flag");
        assert!(f.is_empty());
        assert_eq!(rest, "echo --not-a-flag");
        let (f, rest) = extract_flags("--link");
        assert_eq!(f, vec!["--link"]);
        assert_eq!(rest, "");
        let (f, rest) = extract_flags("--link -- --weird dst");
        assert_eq!(f, vec!["--link"]);
        assert_eq!(rest, " --weird dst");
    }

    #[test]
    fn flag_rules() {
        let allowed = [
            ("link", FlagType::Bool),
            ("from", FlagType::Str),
            ("mount", FlagType::Strings),
        ];
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(parse_flags(
            &w(&["--link", "--from=x", "--mount=a", "--mount=b"]),
            &allowed
        )
        .is_ok());
        assert_eq!(
            parse_flags(&w(&["--nope"]), &allowed),
            Err("unknown flag: nope".into())
        );
        assert_eq!(
            parse_flags(&w(&["--from"]), &allowed),
            Err("missing a value on flag: from".into())
        );
        assert_eq!(
            parse_flags(&w(&["--from=a", "--from=b"]), &allowed),
            Err("duplicate flag specified: from".into())
        );
        assert_eq!(
            parse_flags(&w(&["--link=maybe"]), &allowed),
            Err("expecting boolean value for flag link, not: maybe".into())
        );
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words("a=\"b c\" d='e f'", '\\'),
            vec!["a=\"b c\"", "d='e f'"]
        );
        assert_eq!(parse_words("a=b\\ c d", '\\'), vec!["a=b\\ c", "d"]);
        assert_eq!(parse_words("k=\"\"", '\\'), vec!["k=\"\""]);
    }

    #[test]
    fn name_val_forms() {
        assert_eq!(
            parse_name_val("A=1 B=\"x y\"", "ENV", '\\'),
            Ok(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"x y\"".into())
            ])
        );
        assert_eq!(
            parse_name_val("A  hello world ", "ENV", '\\'),
            Ok(vec![("A".into(), "hello world".into())])
        );
        assert_eq!(
            parse_name_val("A", "ENV", '\\'),
            Err("ENV must have two arguments".into())
        );
        assert!(parse_name_val("A=1 B", "ENV", '\\')
            .unwrap_err()
            .contains("can't find ="));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("abc").is_err());
        assert!(parse_go_duration("5d").is_err());
    }

    #[test]
    fn json_forms() {
        assert!(matches!(parse_json("[\"a\", \"b\"]"), Ok(Json::List(v)) if v == ["a", "b"]));
        assert!(matches!(parse_json("[not json"), Ok(Json::NotJson)));
        assert!(matches!(parse_json("echo hi"), Ok(Json::NotJson)));
        assert!(parse_json("[1, 2]").is_err());
    }
}
