use super::*;

fn env() -> Vec<(String, String)> {
    [
        ("A", "a"),
        ("B", "b c"),
        ("EMPTY", ""),
        ("PATH_", "/usr/local/bin:/usr/bin"),
        ("FILE", "archive.tar.gz"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn ex(word: &str) -> Result<String, ExpandError> {
    let e = env();
    let l = pairs_lookup(&e);
    expand(word, '\\', &l)
}

fn words(word: &str) -> Vec<String> {
    let e = env();
    let l = pairs_lookup(&e);
    expand_words(word, '\\', &l).expect("expand_words")
}

#[test]
fn expansion_table() {
    let table: &[(&str, &str)] = &[
        ("plain", "plain"),
        ("$A", "a"),
        ("${A}", "a"),
        ("x${A}y", "xay"),
        ("$A$A", "aa"),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        ("$", "$"),
        ("a$", "a$"),
        ("$/x", "$/x"),
        ("'$A'", "$A"),
        ("\"$A\"", "a"),
        ("\"${B}\"", "b c"),
        ("\\$A", "$A"),
        ("\\\\", "\\"),
        ("a\\ b", "a b"),
        ("\"a\\\"b\"", "a\"b"),
        ("\"a\\nb\"", "a\\nb"),
        ("'a\\nb'", "a\\nb"),
        ("${UNSET:-def}", "def"),
        ("${EMPTY:-def}", "def"),
        ("${A:-def}", "a"),
        ("${UNSET-def}", "def"),
        ("${EMPTY-def}", ""),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${UNSET:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-$A}", "a"),
        ("${UNSET:-${A:+nested}}", "nested"),
        ("${UNSET:-'q t'}", "q t"),
        ("${A:?must}", "a"),
        ("${FILE%.gz}", "archive.tar"),
        ("${FILE%%.*}", "archive"),
        ("${FILE#*.}", "tar.gz"),
        ("${FILE##*.}", "gz"),
        ("${FILE/tar/zip}", "archive.zip.gz"),
        ("${PATH_//usr/opt}", "/opt/local/bin:/opt/bin"),
        ("$1", ""),
        ("é$A", "éa"),
        ("trailing\\", "trailing"),
    ];
    for (input, want) in table {
        assert_eq!(ex(input).as_deref(), Ok(*want), "input {input:?}");
    }
}

#[test]
fn expansion_errors() {
    let table: &[(&str, &str)] = &[
        ("${UNSET:?}", "UNSET: is not allowed to be unset"),
        ("${UNSET:?custom msg}", "UNSET: custom msg"),
        ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
        ("${UNSET?}", "UNSET: is not allowed to be unset"),
        ("${A", "syntax error: missing '}'"),
        ("${}", "syntax error: bad substitution"),
        ("${:x}", "syntax error: bad substitution"),
        ("${A:*x}", "unsupported modifier (*) in substitution"),
        (
            "'open",
            "unexpected end of statement while looking for matching single-quote",
        ),
        (
            "\"open",
            "unexpected end of statement while looking for matching double-quote",
        ),
    ];
    for (input, want) in table {
        assert_eq!(
            ex(input),
            Err(ExpandError(want.to_string())),
            "input {input:?}"
        );
    }
}

#[test]
fn word_splitting() {
    assert_eq!(words("a b  c"), vec!["a", "b", "c"]);
    assert_eq!(words("$B"), vec!["b", "c"]);
    assert_eq!(words("\"$B\""), vec!["b c"]);
    assert_eq!(words("'x y' z"), vec!["x y", "z"]);
    assert_eq!(words("a\\ b c"), vec!["a b", "c"]);
    assert_eq!(words("\"\""), vec![""]);
    assert_eq!(words("$EMPTY"), Vec::<String>::new());
    assert_eq!(words("pre$B"), vec!["preb", "c"]);
    assert_eq!(words("  "), Vec::<String>::new());
}

#[test]
fn backtick_escape() {
    let e = env();
    let l = pairs_lookup(&e);
    assert_eq!(expand("C:\\dir\\$A", '`', &l).as_deref(), Ok("C:\\dir\\a"));
    assert_eq!(expand("`$A", '`', &l).as_deref(), Ok("$A"));
    assert_eq!(expand("\"``\"", '`', &l).as_deref(), Ok("`"));
}
