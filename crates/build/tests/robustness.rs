//! Hostile or random input never panics the front end: random Dockerfile-ish texts through the
//! parser, random words through expansion, random patterns and paths through .dockerignore.

use berth_build::ignore::Ignore;
use berth_build::{parse, parse_instruction, shell};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const PIECES: &[&str] = &[
    "FROM",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "LABEL",
    "ONBUILD",
    "HEALTHCHECK",
    "SHELL",
    "CMD",
    "ENTRYPOINT",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "VOLUME",
    "STOPSIGNAL",
    "MAINTAINER",
    "AS",
    "x",
    " ",
    " ",
    "\t",
    "\n",
    "\n",
    "\\",
    "\\\n",
    "`",
    "`\n",
    "#",
    "# escape=`\n",
    "# syntax=x\n",
    "=",
    "\"",
    "'",
    "[",
    "]",
    ",",
    "<<",
    "<<-",
    "EOF",
    "\nEOF\n",
    "--from=",
    "--mount=type=cache,target=/x",
    "--link",
    "--",
    "$",
    "${",
    "}",
    ":-",
    ":+",
    ":?",
    "é",
    "∂",
    "*",
    "?",
    "!",
    "/",
    "..",
    ".",
    "3<<",
    "NONE",
    "--interval=",
    "1ms",
    "\r\n",
];

#[test]
fn random_dockerfiles_never_panic() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for _ in 0..20_000 {
        let n = (rng.next() % 40) as usize;
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(rng.pick(PIECES));
        }
        let _ = parse(&text);
        let _ = parse(&format!("FROM busybox\n{text}"));
        let _ = parse_instruction(&text, '\\');
        let _ = parse_instruction(&text, '`');
    }
}

#[test]
fn random_words_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let lookup = |name: &str| match name {
        "A" => Some("a b".to_string()),
        "E" => Some(String::new()),
        _ => None,
    };
    for _ in 0..20_000 {
        let n = (rng.next() % 16) as usize;
        let mut w = String::new();
        for _ in 0..n {
            w.push_str(rng.pick(&[
                "$", "{", "}", "A", "E", "U", ":", "-", "+", "?", "#", "%", "/", "\\", "`", "'",
                "\"", " ", "*", "[", "]", "é", "x",
            ]));
        }
        let _ = shell::expand(&w, '\\', &lookup);
        let _ = shell::expand_words(&w, '`', &lookup);
    }
}

#[test]
fn random_ignore_patterns_never_panic() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let parts = [
        "*", "**", "?", "[", "]", "^", "-", "a", "b", "/", "\\", "!", ".", "..", "é", " ", "#",
    ];
    for _ in 0..5_000 {
        let mut text = String::new();
        for _ in 0..(rng.next() % 6) {
            for _ in 0..(rng.next() % 8) {
                text.push_str(rng.pick(&parts));
            }
            text.push('\n');
        }
        let ig = Ignore::parse(&text);
        for _ in 0..8 {
            let mut p = String::new();
            for _ in 0..(rng.next() % 6) {
                p.push_str(rng.pick(&["a", "b", "/", "é", "*", "[", ".", ".."]));
            }
            let _ = ig.matches(&p);
            let _ = ig.must_descend(&p);
        }
    }
}

#[test]
fn pathological_patterns_stay_fast() {
    let t = std::time::Instant::now();
    let ig = Ignore::parse("*a*a*a*a*a*a*a*a*a*a*b\n**/**/**/**/**/**/**/**/x\n");
    let long = "a".repeat(200);
    let deep = vec!["d"; 100].join("/");
    assert!(!ig.matches(&long));
    assert!(!ig.matches(&deep));
    let lookup = |_: &str| Some("a".repeat(300));
    let _ = shell::expand("${X%%*a*a*a*a*a*a*a*b}", '\\', &lookup);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
}
