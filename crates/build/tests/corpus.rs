//! Every Dockerfile of the corpus (tests/dockerfiles/*/Dockerfile) parses, with the features it
//! was written to exercise; the corpus's .dockerignore rules select the documented files.

use std::path::{Path, PathBuf};

use berth_build::ast::{Args, InstructionKind};
use berth_build::{parse, Context, EntryKind};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/dockerfiles")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(corpus_dir().join(name).join("Dockerfile")).expect("read Dockerfile")
}

#[test]
fn every_corpus_dockerfile_parses() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus dir") {
        let dir = entry.expect("entry").path();
        let df = dir.join("Dockerfile");
        if !df.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&df).expect("read");
        let d = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", df.display()));
        assert!(!d.stages.is_empty(), "{}", df.display());
        // Every corpus entry documents what Docker gives in expected.json.
        let exp = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
        let v: serde_json::Value = serde_json::from_str(&exp).expect("expected.json is JSON");
        assert!(v.get("config").is_some(), "{}", dir.display());
        n += 1;
    }
    assert!(n >= 7, "only {n} corpus entries");
}

#[test]
fn go_multistage_structure() {
    let d = parse(&read("go-multistage")).expect("parse");
    assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(d.global_args.len(), 2);
    let names: Vec<Option<&str>> = d.stages.iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        vec![Some("toolchain"), Some("build"), Some("test"), None]
    );
    assert_eq!(d.stages[0].from.image, "${BASE}");
    assert_eq!(d.stages[1].from.image, "toolchain");
    let last = &d.stages[3];
    let froms: Vec<&str> = last
        .instructions
        .iter()
        .filter_map(|i| match &i.kind {
            InstructionKind::Copy(c) => c.from.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(froms, vec!["build", "toolchain"]);
    assert!(last.instructions.iter().any(|i| matches!(
        &i.kind,
        InstructionKind::Entrypoint(Args::Exec(v)) if v == &["/usr/local/bin/server"]
    )));
}

#[test]
fn heredocs_and_args_structure() {
    let d = parse(&read("heredocs-args")).expect("parse");
    assert_eq!(d.global_args.len(), 2);
    let ins = &d.stages[0].instructions;
    let with_heredocs: Vec<(&str, usize)> = ins
        .iter()
        .filter(|i| !i.heredocs.is_empty())
        .map(|i| (i.keyword(), i.heredocs.len()))
        .collect();
    assert_eq!(
        with_heredocs,
        vec![("RUN", 1), ("COPY", 1), ("COPY", 2), ("RUN", 2)]
    );
    let run_sh = &ins
        .iter()
        .find(|i| i.original.contains("EOT"))
        .expect("EOT")
        .heredocs[0];
    assert!(run_sh.strip_tabs && !run_sh.expand);
    assert_eq!(
        run_sh.body,
        "#!/bin/sh\necho \"$APP_NAME says: $(cat /opt/app/greeting)\"\n"
    );
}

#[test]
fn onbuild_parent_triggers() {
    let d = parse(&read("onbuild-parent")).expect("parse");
    let triggers: Vec<&str> = d.stages[0]
        .instructions
        .iter()
        .filter_map(|i| match &i.kind {
            InstructionKind::Onbuild(inner) => Some(inner.original.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(triggers.len(), 3);
    assert_eq!(triggers[1], "COPY . /app/src/");
}

#[test]
fn backtick_escape_and_continuations() {
    let d = parse(&read("ignore-patterns")).expect("parse");
    assert_eq!(d.directives.escape, '`');
    let run = &d.stages[0].instructions[1];
    assert_eq!(
        run.original,
        "RUN cd /ctx  && find . -type f  | sort > /files.txt"
    );
}

#[test]
fn ignore_patterns_select_documented_files() {
    let ctx = Context::open(&corpus_dir().join("ignore-patterns")).expect("context");
    let files: Vec<&str> = ctx
        .entries()
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(
        files,
        vec![
            ".dockerignore",
            "Dockerfile",
            "docs/README.md",
            "logs/keep.log",
            "logs/notes.txt",
            "src/pkg/main.go",
            "src/pkg/sub/secret10.txt",
            "src/z.cfg",
            "top.txt"
        ]
    );
}
