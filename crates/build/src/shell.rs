//! Word expansion as BuildKit's shell lexer does it for Dockerfile instructions: quotes
//! (`'...'` literal, `"..."` with `$` expansion), the escape character (`\` or the directive's
//! `` ` ``), `$VAR`, `${VAR}`, `${VAR:-x}`, `${VAR-x}`, `${VAR:+x}`, `${VAR+x}`, `${VAR:?msg}`,
//! `${VAR?msg}`, plus `${VAR#p}`, `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`, `${VAR/p/r}`, `${VAR//p/r}`.
//!
//! [`expand`] gives one string (ENV values, WORKDIR, USER, LABEL...); [`expand_words`] splits
//! into words (COPY/ADD sources, EXPOSE, VOLUME...): unquoted whitespace separates words, and so
//! does whitespace coming from an unquoted variable's value; quoted text never splits.

use crate::ExpandError;

/// Variable lookup: `Some(value)` when set (possibly empty), `None` when unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expand `word` into one string (quotes removed, escapes applied, variables substituted).
pub fn expand(word: &str, escape: char, lookup: Lookup<'_>) -> Result<String, ExpandError> {
    let mut lx = Lexer::new(word, escape, lookup);
    let (s, _) = lx.process_stop_on(None)?;
    Ok(s)
}

/// Expand `word` and split it into words as the shell lexer does.
pub fn expand_words(
    word: &str,
    escape: char,
    lookup: Lookup<'_>,
) -> Result<Vec<String>, ExpandError> {
    let mut lx = Lexer::new(word, escape, lookup);
    let (_, words) = lx.process_stop_on(None)?;
    Ok(words)
}

/// Convenience: a lookup over `KEY=VALUE`-style pairs (the last pair of a key wins).
pub fn pairs_lookup(pairs: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

#[derive(Default)]
struct Words {
    words: Vec<String>,
    cur: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word {
                self.words.push(std::mem::take(&mut self.cur));
                self.in_word = false;
            }
        } else {
            self.cur.push(c);
            self.in_word = true;
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.cur.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.cur.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if self.in_word {
            self.words.push(std::mem::take(&mut self.cur));
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: Lookup<'a>,
}

fn err(m: impl Into<String>) -> ExpandError {
    ExpandError(m.into())
}

impl<'a> Lexer<'a> {
    fn new(word: &str, escape: char, lookup: Lookup<'a>) -> Self {
        Lexer {
            chars: word.chars().collect(),
            pos: 0,
            escape,
            lookup,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '\'' => {
                    let s = self.process_single_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' => {
                    let s = self.process_double_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '$' => {
                    let s = self.process_dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        // The escape char escapes the next one; at the very end it is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        self.next();
        let mut s = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(err(
                        "unexpected end of statement while looking for matching single-quote",
                    ))
                }
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        self.next();
        let mut s = String::new();
        loop {
            let Some(ch) = self.peek() else {
                return Err(err(
                    "unexpected end of statement while looking for matching double-quote",
                ));
            };
            if ch == '"' {
                self.next();
                return Ok(s);
            }
            if ch == '$' {
                let v = self.process_dollar()?;
                s.push_str(&v);
                continue;
            }
            self.next();
            if ch == self.escape {
                match self.peek() {
                    // An escape right before the end of the word is ignored.
                    None => continue,
                    Some(c) if c == '"' || c == '$' || c == self.escape => {
                        self.next();
                        s.push(c);
                        continue;
                    }
                    // Other escapes stay as written inside double quotes.
                    Some(_) => {}
                }
            }
            s.push(ch);
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(|c| c.is_ascii_digit()) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && "@*#?-$!0".contains(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn word_until_brace(&mut self) -> Result<String, ExpandError> {
        match self.process_stop_on(Some('}')) {
            Ok((w, _)) => Ok(w),
            Err(e) => {
                if self.peek().is_none() {
                    Err(err("syntax error: missing '}'"))
                } else {
                    Err(e)
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err(err("syntax error: missing '}'")),
            Some('{') | Some('}') | Some(':') => return Err(err("syntax error: bad substitution")),
            _ => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err(err("syntax error: missing '}'"));
        };
        let value = self.get(&name);
        match ch {
            '}' => Ok(value.unwrap_or_default()),
            '?' => {
                let word = self.word_until_brace()?;
                match value {
                    Some(v) => Ok(v),
                    None => Err(unset_error(&name, &word, "is not allowed to be unset")),
                }
            }
            '+' => {
                let word = self.word_until_brace()?;
                Ok(if value.is_some() { word } else { String::new() })
            }
            '-' => {
                let word = self.word_until_brace()?;
                Ok(value.unwrap_or(word))
            }
            ':' => {
                let Some(modifier) = self.next() else {
                    return Err(err("syntax error: missing '}'"));
                };
                let word = self.word_until_brace()?;
                match modifier {
                    '+' => Ok(match value {
                        Some(v) if !v.is_empty() => word,
                        _ => String::new(),
                    }),
                    '-' => Ok(match value {
                        Some(v) if !v.is_empty() => v,
                        _ => word,
                    }),
                    '?' => match value {
                        None => Err(unset_error(&name, &word, "is not allowed to be unset")),
                        Some(v) if v.is_empty() => {
                            Err(unset_error(&name, &word, "is not allowed to be empty"))
                        }
                        Some(v) => Ok(v),
                    },
                    m => Err(err(format!("unsupported modifier ({m}) in substitution"))),
                }
            }
            '#' | '%' => {
                let longest = self.peek() == Some(ch);
                if longest {
                    self.next();
                }
                let pattern = self.word_until_brace()?;
                let v = value.unwrap_or_default();
                Ok(if ch == '#' {
                    trim_prefix(&v, &pattern, longest)
                } else {
                    trim_suffix(&v, &pattern, longest)
                })
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, repl) = self.pattern_and_replacement()?;
                let v = value.unwrap_or_default();
                Ok(replace_pattern(&v, &pattern, &repl, all))
            }
            c => Err(err(format!("unsupported modifier ({c}) in substitution"))),
        }
    }

    /// `${VAR/pattern/replacement}`: the pattern ends at an unescaped `/`, the replacement at `}`.
    fn pattern_and_replacement(&mut self) -> Result<(String, String), ExpandError> {
        let mut pattern = String::new();
        loop {
            match self.peek() {
                None => return Err(err("syntax error: missing '}'")),
                Some('/') => {
                    self.next();
                    let repl = self.word_until_brace()?;
                    return Ok((pattern, repl));
                }
                Some('}') => {
                    self.next();
                    return Ok((pattern, String::new()));
                }
                Some(c) if c == self.escape => {
                    self.next();
                    if let Some(n) = self.next() {
                        pattern.push(n);
                    }
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    pattern.push_str(&v);
                }
                Some(c) => {
                    self.next();
                    pattern.push(c);
                }
            }
        }
    }
}

fn unset_error(name: &str, word: &str, default: &str) -> ExpandError {
    let message = if word.is_empty() { default } else { word };
    err(format!("{name}: {message}"))
}

/// Shell pattern match of a whole string (`*`, `?`, `[...]`, escape with `\`).
fn glob_match(pattern: &[char], s: &[char]) -> bool {
    crate::ignore::match_chars(pattern, s, false)
}

fn trim_prefix(v: &str, pattern: &str, longest: bool) -> String {
    let pc: Vec<char> = pattern.chars().collect();
    let vc: Vec<char> = v.chars().collect();
    let range: Vec<usize> = if longest {
        (0..=vc.len()).rev().collect()
    } else {
        (0..=vc.len()).collect()
    };
    for i in range {
        if glob_match(&pc, &vc[..i]) {
            return vc[i..].iter().collect();
        }
    }
    v.to_string()
}

fn trim_suffix(v: &str, pattern: &str, longest: bool) -> String {
    let pc: Vec<char> = pattern.chars().collect();
    let vc: Vec<char> = v.chars().collect();
    let range: Vec<usize> = if longest {
        (0..=vc.len()).collect()
    } else {
        (0..=vc.len()).rev().collect()
    };
    for i in range {
        if glob_match(&pc, &vc[i..]) {
            return vc[..i].iter().collect();
        }
    }
    v.to_string()
}

fn replace_pattern(v: &str, pattern: &str, repl: &str, all: bool) -> String {
    let pc: Vec<char> = pattern.chars().collect();
    let vc: Vec<char> = v.chars().collect();
    if pc.is_empty() {
        return v.to_string();
    }
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < vc.len() {
        if !replaced || all {
            // Longest match starting at i.
            if let Some(end) = (i + 1..=vc.len())
                .rev()
                .find(|&e| glob_match(&pc, &vc[i..e]))
            {
                out.push_str(repl);
                i = end;
                replaced = true;
                continue;
            }
        }
        out.push(vc[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;
