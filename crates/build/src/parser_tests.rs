use super::*;
use crate::ast::MountKind;
use crate::ast::RunMount;

fn p(text: &str) -> Dockerfile {
    match parse(text) {
        Ok(d) => d,
        Err(e) => panic!("parse failed: {e}\n{text}"),
    }
}

fn perr(text: &str) -> String {
    match parse(text) {
        Ok(d) => panic!("expected an error, got {d:?}"),
        Err(e) => e.to_string(),
    }
}

fn instrs(text: &str) -> Vec<Instruction> {
    p(text).stages.remove(0).instructions
}

fn one(text: &str) -> Instruction {
    let mut v = instrs(&format!("FROM busybox\n{text}"));
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

#[test]
fn stages_and_from() {
    let d = p("FROM --platform=linux/amd64 golang:1.22 AS Build\nRUN x\nfrom scratch\nCOPY --from=build /a /b\n");
    assert_eq!(d.stages.len(), 2);
    let f = &d.stages[0].from;
    assert_eq!(f.image, "golang:1.22");
    assert_eq!(f.name.as_deref(), Some("build"));
    assert_eq!(f.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(f.line, 1);
    assert_eq!(d.stages[1].from.image, "scratch");
    assert_eq!(d.stages[1].from.line, 3);
    assert_eq!(d.stage_index("BUILD"), Some(0));
    assert_eq!(d.stage_index("1"), Some(1));
    assert_eq!(d.stage_index("2"), None);
    assert_eq!(d.instruction_count(), 4);
}

#[test]
fn global_args_before_from() {
    let d =
        p("ARG VERSION=1.0\nARG BASE\nFROM busybox:${VERSION}\nARG VERSION\nRUN echo $VERSION\n");
    assert_eq!(d.global_args.len(), 2);
    assert_eq!(d.stages[0].from.image, "busybox:${VERSION}");
    match &d.global_args[0].kind {
        InstructionKind::Arg(a) => {
            assert_eq!(a[0].name, "VERSION");
            assert_eq!(a[0].default.as_deref(), Some("1.0"));
        }
        k => panic!("{k:?}"),
    }
    match &d.stages[0].instructions[0].kind {
        InstructionKind::Arg(a) => assert_eq!(a[0].default, None),
        k => panic!("{k:?}"),
    }
}

#[test]
fn case_insensitive_keywords_and_comments() {
    let v = instrs("# leading comment\nfrom busybox\n\n  # indented comment\nrun echo hi # not a comment\n   Cmd [\"sh\"]\n");
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].keyword(), "RUN");
    assert_eq!(v[0].line, 5);
    match &v[0].kind {
        InstructionKind::Run(r) => {
            assert_eq!(r.args, Args::Shell("echo hi # not a comment".into()))
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(v[1].original, "Cmd [\"sh\"]");
    assert_eq!(
        v[1].kind,
        InstructionKind::Cmd(Args::Exec(vec!["sh".into()]))
    );
}

#[test]
fn continuations() {
    let text = "FROM busybox\nRUN echo a \\\n    # a comment inside\n\n    && echo b \\\n  \t\n    && echo c\nENV X=1\n";
    let v = instrs(text);
    assert_eq!(v[0].line, 2);
    assert_eq!(v[0].end_line, 7);
    assert_eq!(v[0].original, "RUN echo a     && echo b     && echo c");
    match &v[0].kind {
        InstructionKind::Run(r) => {
            assert_eq!(
                r.args,
                Args::Shell("echo a     && echo b     && echo c".into())
            )
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(v[1].line, 8);
    // Trailing blanks after the escape still continue the line.
    let v = instrs("FROM busybox\nRUN a \\  \n b\n");
    assert_eq!(v[0].original, "RUN a  b");
}

#[test]
fn escape_directive_backtick() {
    let d = p("# escape=`\nFROM busybox\nRUN dir C:\\ `\n  && echo done\nCOPY a\\b c\\\n");
    assert_eq!(d.directives.escape, '`');
    let v = &d.stages[0].instructions;
    assert_eq!(v[0].original, "RUN dir C:\\   && echo done");
    match &v[1].kind {
        InstructionKind::Copy(c) => {
            assert_eq!(c.sources, vec!["a\\b"]);
            assert_eq!(c.dest, "c\\");
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn directives() {
    let d = p("# syntax=docker/dockerfile:1.7\n#check=skip=all\n# escape=\\\nFROM x\n");
    assert_eq!(
        d.directives.syntax.as_deref(),
        Some("docker/dockerfile:1.7")
    );
    assert_eq!(d.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(d.directives.escape, '\\');
    // After a non-directive line, directives are plain comments.
    let d = p("# hello\n# escape=`\nFROM x\nRUN a \\\n b\n");
    assert_eq!(d.directives.escape, '\\');
    assert_eq!(d.stages[0].instructions[0].original, "RUN a  b");
    // Unknown directive ends directive parsing.
    let d = p("# foo=bar\n# escape=`\nFROM x\n");
    assert_eq!(d.directives.escape, '\\');
    assert_eq!(
        perr("# escape=x\nFROM x\n"),
        "dockerfile parse error on line 1: invalid escape token 'x' does not match ` or \\"
    );
    assert_eq!(
        perr("# escape=`\n# escape=\\\nFROM x\n"),
        "dockerfile parse error on line 2: only one escape parser directive can be used"
    );
}

#[test]
fn json_and_shell_forms() {
    let i = one("ENTRYPOINT [\"/bin/app\", \"--flag\"]");
    assert_eq!(
        i.kind,
        InstructionKind::Entrypoint(Args::Exec(vec!["/bin/app".into(), "--flag".into()]))
    );
    // Invalid JSON falls back to the shell form, as Docker does.
    let i = one("CMD [\"unterminated\"");
    assert_eq!(
        i.kind,
        InstructionKind::Cmd(Args::Shell("[\"unterminated\"".into()))
    );
    let i = one("CMD ['single', 'quotes']");
    assert_eq!(
        i.kind,
        InstructionKind::Cmd(Args::Shell("['single', 'quotes']".into()))
    );
    let i = one("RUN [\"echo\", \"hi\"]");
    match i.kind {
        InstructionKind::Run(r) => assert_eq!(r.args, Args::Exec(vec!["echo".into(), "hi".into()])),
        k => panic!("{k:?}"),
    }
    assert_eq!(
        perr("FROM x\nCMD [1, 2]\n"),
        "dockerfile parse error on line 2: when using JSON array syntax, arrays must be comprised of strings only"
    );
    let i = one("SHELL [\"/bin/bash\", \"-c\"]");
    assert_eq!(
        i.kind,
        InstructionKind::Shell(vec!["/bin/bash".into(), "-c".into()])
    );
    assert_eq!(
        perr("FROM x\nSHELL /bin/bash -c\n"),
        "dockerfile parse error on line 2: SHELL requires the arguments to be in JSON form"
    );
}

#[test]
fn env_and_label() {
    let i = one("ENV A=1 B=\"two words\" C=three\\ words D=");
    assert_eq!(
        i.kind,
        InstructionKind::Env(vec![
            ("A".into(), "1".into()),
            ("B".into(), "\"two words\"".into()),
            ("C".into(), "three\\ words".into()),
            ("D".into(), "".into()),
        ])
    );
    let i = one("ENV LEGACY value with spaces");
    assert_eq!(
        i.kind,
        InstructionKind::Env(vec![("LEGACY".into(), "value with spaces".into())])
    );
    let i = one("LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0 description='a b'");
    assert_eq!(
        i.kind,
        InstructionKind::Label(vec![
            ("\"com.example.vendor\"".into(), "\"ACME Inc\"".into()),
            ("version".into(), "1.0".into()),
            ("description".into(), "'a b'".into()),
        ])
    );
    assert_eq!(
        perr("FROM x\nENV A\n"),
        "dockerfile parse error on line 2: ENV must have two arguments"
    );
    assert_eq!(
        perr("FROM x\nLABEL\n"),
        "dockerfile parse error on line 2: LABEL requires at least one argument"
    );
}

#[test]
fn copy_and_add() {
    let i = one("COPY --from=build --chown=app:app --chmod=0755 --link --exclude=*.md --exclude=x src/ *.txt /app/");
    match &i.kind {
        InstructionKind::Copy(c) => {
            assert_eq!(c.sources, vec!["src/", "*.txt"]);
            assert_eq!(c.dest, "/app/");
            assert_eq!(c.from.as_deref(), Some("build"));
            assert_eq!(c.chown.as_deref(), Some("app:app"));
            assert_eq!(c.chmod.as_deref(), Some("0755"));
            assert!(c.link);
            assert_eq!(c.excludes, vec!["*.md", "x"]);
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(i.flag("from"), Some("build"));
    assert!(i.flag_bool("link"));
    let i = one("COPY [\"with space\", \"/dst dir/\"]");
    match &i.kind {
        InstructionKind::Copy(c) => {
            assert_eq!(c.sources, vec!["with space"]);
            assert_eq!(c.dest, "/dst dir/");
        }
        k => panic!("{k:?}"),
    }
    let i = one("ADD --checksum=sha256:abc --keep-git-dir=true https://example.com/x.tgz /x");
    match &i.kind {
        InstructionKind::Add(c) => {
            assert_eq!(c.checksum.as_deref(), Some("sha256:abc"));
            assert!(c.keep_git_dir);
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(
        perr("FROM x\nCOPY onlyone\n"),
        "dockerfile parse error on line 2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"
    );
    assert_eq!(
        perr("FROM x\nCOPY --from=a --from=b x y\n"),
        "dockerfile parse error on line 2: duplicate flag specified: from"
    );
    assert_eq!(
        perr("FROM x\nCOPY --checksum=x a b\n"),
        "dockerfile parse error on line 2: unknown flag: checksum"
    );
    assert_eq!(
        perr("FROM x\nWORKDIR --foo /x\n"),
        "dockerfile parse error on line 2: unknown flag: foo"
    );
}

#[test]
fn run_flags_and_mounts() {
    let i = one("RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked --mount=type=bind,source=.,target=/src,rw --network=none pip install");
    match &i.kind {
        InstructionKind::Run(r) => {
            assert_eq!(r.mounts.len(), 2);
            assert_eq!(r.network.as_deref(), Some("none"));
            let m = RunMount::parse(&r.mounts[0]).expect("mount");
            assert_eq!(m.kind, MountKind::Cache);
            assert_eq!(m.target.as_deref(), Some("/root/.cache"));
            assert_eq!(m.id.as_deref(), Some("pip"));
            assert_eq!(m.sharing.as_deref(), Some("locked"));
            let b = RunMount::parse(&r.mounts[1]).expect("mount");
            assert_eq!(b.kind, MountKind::Bind);
            assert_eq!(b.readonly, Some(false));
            assert_eq!(r.args, Args::Shell("pip install".into()));
        }
        k => panic!("{k:?}"),
    }
    let t = RunMount::parse("type=tmpfs,dst=/tmp,size=64m").expect("tmpfs");
    assert_eq!(t.size, Some(64 << 20));
    let s = RunMount::parse("type=secret,id=tok,required,mode=0400,uid=1").expect("secret");
    assert!(s.required);
    assert_eq!(s.mode, Some(0o400));
    assert!(RunMount::parse("type=cache").is_err());
    assert!(RunMount::parse("type=nfs,target=/x").is_err());
    assert!(RunMount::parse("target=/x,bogus=1").is_err());
    assert_eq!(
        perr("FROM x\nRUN --network=bridge true\n"),
        "dockerfile parse error on line 2: unsupported network mode \"bridge\""
    );
}

#[test]
fn heredocs() {
    let text = "FROM busybox\nRUN <<EOF\necho $HOME\n  indented\nEOF\nRUN <<-'EOT' bash\n\techo tab\n\tEOT\nCOPY <<one.txt <<\"two.txt\" /dest/\nfirst\none.txt\nsecond $X\ntwo.txt\nRUN cat <<A 3<<B\na\nA\nb\nB\nCMD done\n";
    let v = instrs(text);
    assert_eq!(v.len(), 5);
    assert_eq!(v[0].original, "RUN <<EOF");
    assert_eq!(v[0].line, 2);
    assert_eq!(v[0].end_line, 5);
    assert_eq!(
        v[0].heredocs,
        vec![Heredoc {
            name: "EOF".into(),
            body: "echo $HOME\n  indented\n".into(),
            strip_tabs: false,
            expand: true,
            fd: None
        }]
    );
    let h = &v[1].heredocs[0];
    assert_eq!(h.name, "EOT");
    assert_eq!(h.body, "echo tab\n");
    assert!(h.strip_tabs);
    assert!(!h.expand);
    match &v[2].kind {
        InstructionKind::Copy(c) => {
            assert_eq!(c.sources, vec!["<<one.txt", "<<\"two.txt\""]);
            assert_eq!(c.dest, "/dest/");
            let h1 = v[2].heredoc_source(&c.sources[0]).expect("h1");
            assert_eq!(h1.body, "first\n");
            assert!(h1.expand);
            let h2 = v[2].heredoc_source(&c.sources[1]).expect("h2");
            assert_eq!(h2.body, "second $X\n");
            assert!(!h2.expand);
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(v[3].heredocs.len(), 2);
    assert_eq!(v[3].heredocs[1].fd, Some(3));
    assert_eq!(v[3].heredocs[1].body, "b\n");
    assert_eq!(v[4].line, 19);
    // `<<` inside quotes, and in a JSON form, opens nothing.
    let i = one("RUN echo \"<<EOF\"");
    assert!(i.heredocs.is_empty());
    assert_eq!(
        perr("FROM x\nRUN <<EOF\nno end\n"),
        "dockerfile parse error on line 2: unterminated heredoc"
    );
    // Not for other instructions.
    let i = one("ENV A=<<EOF");
    assert!(i.heredocs.is_empty());
}

#[test]
fn small_instructions() {
    let v = instrs("FROM x\nEXPOSE 80/tcp 53/udp $PORT\nVOLUME [\"/data\", \"/logs\"]\nVOLUME /a /b\nWORKDIR /app dir\nUSER app:app\nSTOPSIGNAL SIGKILL\nMAINTAINER Jane <j@x>\n");
    assert_eq!(
        v[0].kind,
        InstructionKind::Expose(vec!["80/tcp".into(), "53/udp".into(), "$PORT".into()])
    );
    assert_eq!(
        v[1].kind,
        InstructionKind::Volume(vec!["/data".into(), "/logs".into()])
    );
    assert_eq!(
        v[2].kind,
        InstructionKind::Volume(vec!["/a".into(), "/b".into()])
    );
    assert_eq!(v[3].kind, InstructionKind::Workdir("/app dir".into()));
    assert_eq!(v[4].kind, InstructionKind::User("app:app".into()));
    assert_eq!(v[5].kind, InstructionKind::Stopsignal("SIGKILL".into()));
    assert_eq!(v[6].kind, InstructionKind::Maintainer("Jane <j@x>".into()));
    assert_eq!(
        perr("FROM x\nWORKDIR\n"),
        "dockerfile parse error on line 2: WORKDIR requires exactly one argument"
    );
    assert_eq!(
        perr("FROM x\nEXPOSE\n"),
        "dockerfile parse error on line 2: EXPOSE requires at least one argument"
    );
    assert_eq!(
        perr("FROM x\nVOLUME [\"\"]\n"),
        "dockerfile parse error on line 2: VOLUME specified can not be an empty string"
    );
}

#[test]
fn healthcheck() {
    let i = one("HEALTHCHECK --interval=30s --timeout=3s --start-period=1m --retries=3 CMD curl -f http://localhost/ || exit 1");
    match &i.kind {
        InstructionKind::Healthcheck(h) => {
            assert_eq!(h.interval, Some(30_000_000_000));
            assert_eq!(h.timeout, Some(3_000_000_000));
            assert_eq!(h.start_period, Some(60_000_000_000));
            assert_eq!(h.retries, Some(3));
            assert_eq!(
                h.test(),
                vec!["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
            );
        }
        k => panic!("{k:?}"),
    }
    let i = one("HEALTHCHECK CMD [\"/bin/check\", \"-q\"]");
    match &i.kind {
        InstructionKind::Healthcheck(h) => assert_eq!(h.test(), vec!["CMD", "/bin/check", "-q"]),
        k => panic!("{k:?}"),
    }
    let i = one("healthcheck none");
    match &i.kind {
        InstructionKind::Healthcheck(h) => assert_eq!(h.test(), vec!["NONE"]),
        k => panic!("{k:?}"),
    }
    assert_eq!(
        perr("FROM x\nHEALTHCHECK NONE x\n"),
        "dockerfile parse error on line 2: HEALTHCHECK NONE takes no arguments"
    );
    assert_eq!(
        perr("FROM x\nHEALTHCHECK RUN x\n"),
        "dockerfile parse error on line 2: Unknown type \"RUN\" in HEALTHCHECK (try CMD)"
    );
    assert_eq!(
        perr("FROM x\nHEALTHCHECK --interval=10us CMD x\n"),
        "dockerfile parse error on line 2: Interval \"interval\" cannot be less than 1ms"
    );
    assert_eq!(
        perr("FROM x\nHEALTHCHECK --retries=-1 CMD x\n"),
        "dockerfile parse error on line 2: --retries cannot be negative (-1)"
    );
    assert_eq!(
        perr("FROM x\nHEALTHCHECK CMD\n"),
        "dockerfile parse error on line 2: Missing command after HEALTHCHECK CMD"
    );
}

#[test]
fn onbuild() {
    let i = one("ONBUILD COPY --chown=1:1 . /app/src");
    match &i.kind {
        InstructionKind::Onbuild(inner) => {
            assert_eq!(inner.original, "COPY --chown=1:1 . /app/src");
            match &inner.kind {
                InstructionKind::Copy(c) => assert_eq!(c.chown.as_deref(), Some("1:1")),
                k => panic!("{k:?}"),
            }
        }
        k => panic!("{k:?}"),
    }
    let i = one("onbuild run <<EOF\necho trig\nEOF");
    match &i.kind {
        InstructionKind::Onbuild(inner) => {
            assert_eq!(inner.keyword(), "RUN");
            assert_eq!(inner.heredocs[0].body, "echo trig\n");
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(
        perr("FROM x\nONBUILD ONBUILD RUN x\n"),
        "dockerfile parse error on line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        perr("FROM x\nONBUILD FROM y\n"),
        "dockerfile parse error on line 2: FROM isn't allowed as an ONBUILD trigger"
    );
    // A trigger read back from an image config.
    let t = parse_instruction("RUN echo from trigger", '\\').expect("trigger");
    assert_eq!(t.keyword(), "RUN");
}

#[test]
fn errors_with_line_numbers() {
    assert_eq!(
        perr("FROM busybox\nRUN true\nFOO bar\n"),
        "dockerfile parse error on line 3: unknown instruction: FOO"
    );
    assert_eq!(
        perr("\n# c\nRUN true\nFROM x\n"),
        "dockerfile parse error on line 3: no build stage in current context"
    );
    assert_eq!(perr(""), "file with no instructions");
    assert_eq!(perr("# only a comment\n\n"), "file with no instructions");
    assert_eq!(perr("ARG A=1\n"), "no build stage in current context");
    assert_eq!(
        perr("FROM a b\n"),
        "dockerfile parse error on line 1: FROM requires either one or three arguments"
    );
    assert_eq!(
        perr("FROM a AS 1x\n"),
        "dockerfile parse error on line 1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
    );
    assert_eq!(
        perr("FROM a AS x\nFROM b AS X\n"),
        "dockerfile parse error on line 2: duplicate stage name \"x\""
    );
    assert_eq!(
        perr("FROM a\nCOPY --from x y\n"),
        "dockerfile parse error on line 2: missing a value on flag: from"
    );
}

#[test]
fn crlf_and_bom() {
    let d = p("\u{feff}FROM busybox\r\nRUN echo a \\\r\n b\r\n");
    assert_eq!(d.stages[0].instructions[0].original, "RUN echo a  b");
}
