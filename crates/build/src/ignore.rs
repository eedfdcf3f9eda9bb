//! `.dockerignore` with Docker's rules (moby/patternmatcher): `#` comments, surrounding
//! whitespace trimmed, paths cleaned (`./a/../b` → `b`), a leading `/` stripped, `*` and `?`
//! (never across `/`), `[...]` classes, `**` (any number of directories), `\` escapes, `!`
//! exceptions, the last matching pattern wins, and a pattern that matches a parent directory
//! excludes everything below it.

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern text (without `!`).
    text: String,
    exclusion: bool,
    kind: MatchKind,
    tokens: Vec<Tok>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchKind {
    Exact,
    Prefix,
    Suffix,
    Tokens,
}

#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    /// `*`: any run of non-`/` characters.
    Star,
    /// `?`: one non-`/` character.
    One,
    /// `?` where `/` is an ordinary character.
    OneAny,
    /// `**/` or inner `**`: `(.*/)?`.
    AnyDirs,
    /// trailing `**` after other wildcards: `.*`.
    AnyAll,
    Class(Class),
}

#[derive(Debug, Clone)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        let inside = self.ranges.iter().any(|&(a, b)| a <= c && c <= b);
        inside != self.negated
    }
}

/// Go's `filepath.Clean` on a slash path.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The patterns of a `.dockerignore` text, normalized as Docker's `ignorefile.ReadAll` does.
pub fn read_patterns(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let raw = if i == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        };
        if raw.starts_with('#') {
            continue;
        }
        let mut p = raw.trim();
        if p.is_empty() {
            continue;
        }
        let invert = p.starts_with('!');
        if invert {
            p = p[1..].trim();
        }
        let mut pat = String::new();
        if !p.is_empty() {
            pat = clean_path(p);
            if pat.len() > 1 && pat.starts_with('/') {
                pat.remove(0);
            }
        }
        out.push(if invert { format!("!{pat}") } else { pat });
    }
    out
}

impl Ignore {
    /// Compile a `.dockerignore` file's text.
    pub fn parse(text: &str) -> Ignore {
        Ignore::from_patterns(&read_patterns(text))
    }

    /// Compile already-normalized patterns (`!` prefix for exceptions).
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Ignore {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let (exclusion, body) = match p.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, p),
            };
            if body.is_empty() {
                continue;
            }
            let text = clean_path(body);
            let (kind, tokens) = compile(&text);
            out.push(Pattern {
                text,
                exclusion,
                kind,
                tokens,
            });
        }
        Ignore { patterns: out }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any `!` exception pattern exists.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (slash-separated, relative to the context root) is excluded: the last
    /// pattern that matches it or one of its parent directories decides.
    pub fn matches(&self, path: &str) -> bool {
        let path = clean_path(path);
        let parent = match path.rfind('/') {
            Some(i) => &path[..i],
            None => ".",
        };
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.matches(&path);
            if !m && parent != "." {
                let mut prefix = String::new();
                for (i, d) in parent_dirs.iter().enumerate() {
                    if i > 0 {
                        prefix.push('/');
                    }
                    prefix.push_str(d);
                    if p.matches(&prefix) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// For an excluded directory: whether the walk must still descend into it because an
    /// exception pattern (`!dir/file`) may re-include something below it (Docker's rule).
    pub fn must_descend(&self, dir: &str) -> bool {
        let dir_slash = format!("{}/", clean_path(dir));
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| format!("{}/", p.text).starts_with(&dir_slash) || p.text.starts_with("**"))
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            MatchKind::Exact => path == self.text,
            MatchKind::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            MatchKind::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || (suffix.starts_with('/') && path == &suffix[1..])
            }
            MatchKind::Tokens => {
                let chars: Vec<char> = path.chars().collect();
                match_tokens(&self.tokens, &chars)
            }
        }
    }
}

fn compile(pattern: &str) -> (MatchKind, Vec<Tok>) {
    let chars: Vec<char> = pattern.chars().collect();
    let mut kind = MatchKind::Exact;
    let mut toks = Vec::new();
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == MatchKind::Exact {
                        kind = MatchKind::Prefix;
                    } else {
                        toks.push(Tok::AnyAll);
                        kind = MatchKind::Tokens;
                    }
                } else {
                    toks.push(Tok::AnyDirs);
                    kind = MatchKind::Tokens;
                }
                if first {
                    kind = MatchKind::Suffix;
                }
            }
            '*' => {
                toks.push(Tok::Star);
                kind = MatchKind::Tokens;
            }
            '?' => {
                toks.push(Tok::One);
                kind = MatchKind::Tokens;
            }
            '\\' => {
                if i < chars.len() {
                    toks.push(Tok::Lit(chars[i]));
                    i += 1;
                    kind = MatchKind::Tokens;
                } else {
                    toks.push(Tok::Lit('\\'));
                }
            }
            '[' => {
                let (class, next) = parse_class(&chars, i);
                match class {
                    Some(c) => {
                        toks.push(Tok::Class(c));
                        i = next;
                    }
                    None => toks.push(Tok::Lit('[')),
                }
                kind = MatchKind::Tokens;
            }
            c => toks.push(Tok::Lit(c)),
        }
        first = false;
    }
    (kind, toks)
}

/// Parse a `[...]` class starting after the `[` at `i`; returns the class and the index after
/// its `]`, or None when unterminated.
fn parse_class(chars: &[char], mut i: usize) -> (Option<Class>, usize) {
    let start = i;
    let mut negated = false;
    if chars.get(i) == Some(&'^') {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return (None, start);
        };
        if c == ']' && !first {
            return (Some(Class { negated, ranges }), i + 1);
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            match chars.get(i) {
                Some(&e) => e,
                None => return (None, start),
            }
        } else {
            c
        };
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                match chars.get(i) {
                    Some(&e) => {
                        hi = e;
                        i += 1;
                    }
                    None => return (None, start),
                }
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
}

/// Whether `toks` match all of `s`. Memoized over (token, position, phase) with one step per
/// state: O(tokens × length), so no pattern (`*a*a*a*b`, `**/**/**`) can make it blow up.
fn match_tokens(toks: &[Tok], s: &[char]) -> bool {
    let mut memo: Vec<Option<bool>> = vec![None; 2 * (toks.len() + 1) * (s.len() + 1)];
    match_at(toks, s, 0, 0, false, &mut memo)
}

/// `inside`: within the `.*` of an AnyDirs token `t` (looking for the `/` that ends it).
fn match_at(
    toks: &[Tok],
    s: &[char],
    t: usize,
    i: usize,
    inside: bool,
    memo: &mut [Option<bool>],
) -> bool {
    let key = (t * (s.len() + 1) + i) * 2 + usize::from(inside);
    if let Some(r) = memo[key] {
        return r;
    }
    let more = i < s.len();
    let r = match toks.get(t) {
        None => !more,
        Some(Tok::Lit(c)) => s.get(i) == Some(c) && match_at(toks, s, t + 1, i + 1, false, memo),
        Some(Tok::One) => {
            s.get(i).is_some_and(|&c| c != '/') && match_at(toks, s, t + 1, i + 1, false, memo)
        }
        Some(Tok::OneAny) => more && match_at(toks, s, t + 1, i + 1, false, memo),
        Some(Tok::Class(cl)) => {
            s.get(i).is_some_and(|&c| cl.matches(c)) && match_at(toks, s, t + 1, i + 1, false, memo)
        }
        Some(Tok::Star) => {
            match_at(toks, s, t + 1, i, false, memo)
                || (more && s[i] != '/' && match_at(toks, s, t, i + 1, false, memo))
        }
        Some(Tok::AnyAll) => {
            match_at(toks, s, t + 1, i, false, memo)
                || (more && match_at(toks, s, t, i + 1, false, memo))
        }
        // (.*/)? : nothing, or anything ending with '/'.
        Some(Tok::AnyDirs) if !inside => {
            match_at(toks, s, t + 1, i, false, memo) || match_at(toks, s, t, i, true, memo)
        }
        Some(Tok::AnyDirs) => {
            more && ((s[i] == '/' && match_at(toks, s, t + 1, i + 1, false, memo))
                || match_at(toks, s, t, i + 1, true, memo))
        }
    };
    memo[key] = Some(r);
    r
}

/// Go `filepath.Match`-style pattern → tokens: `*` (no `/` when `slash_sensitive`), `?`,
/// `[...]` (`^` negates), `\` escapes.
fn glob_tokens(pattern: &[char], slash_sensitive: bool) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        let c = pattern[i];
        i += 1;
        match c {
            '*' => toks.push(if slash_sensitive {
                Tok::Star
            } else {
                Tok::AnyAll
            }),
            '?' => toks.push(if slash_sensitive {
                Tok::One
            } else {
                Tok::OneAny
            }),
            '[' => match parse_class(pattern, i) {
                (Some(cl), next) => {
                    toks.push(Tok::Class(cl));
                    i = next;
                }
                (None, _) => toks.push(Tok::Lit('[')),
            },
            '\\' if i < pattern.len() => {
                toks.push(Tok::Lit(pattern[i]));
                i += 1;
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    toks
}

/// Go `filepath.Match` on chars: `*` (no `/` when `slash_sensitive`), `?`, `[...]` (`^`
/// negates), `\` escapes. Used for COPY source globs and `${VAR#pattern}`.
pub(crate) fn match_chars(pattern: &[char], s: &[char], slash_sensitive: bool) -> bool {
    match_tokens(&glob_tokens(pattern, slash_sensitive), s)
}

/// Whether a path component contains glob metacharacters.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go `filepath.Match(pattern, name)` on strings (`*` never crosses `/`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_chars(&p, &n, true)
}

#[cfg(test)]
#[path = "ignore_tests.rs"]
mod tests;
