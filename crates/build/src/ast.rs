//! The instruction model of a Dockerfile, as the parser produces it and the build executor runs it.
//!
//! Nothing here is expanded: words keep their quotes, `$VAR`s and escapes exactly as written
//! (minus line continuations). The executor expands them at build time with the stage's ARG/ENV
//! through [`crate::shell::expand`] / [`crate::shell::expand_words`], using the escape character
//! of [`Directives::escape`].

use serde::{Deserialize, Serialize};

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dockerfile {
    /// Parser directives from the top comments (`# syntax=`, `# escape=`, `# check=`).
    pub directives: Directives,
    /// `ARG` instructions before the first `FROM` (their kind is always [`InstructionKind::Arg`]).
    /// They may be used in `FROM` lines; inside a stage they need a bare `ARG name` to be seen.
    pub global_args: Vec<Instruction>,
    /// The build stages in file order (index = stage number usable as `--from=0`).
    pub stages: Vec<Stage>,
}

/// Parser directives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directives {
    /// `# syntax=docker/dockerfile:1` (recorded, not acted on).
    pub syntax: Option<String>,
    /// `# escape=\` (default) or `` # escape=` ``.
    pub escape: char,
    /// `# check=skip=...;error=true` (recorded, not acted on).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One build stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub from: From,
    pub instructions: Vec<Instruction>,
}

impl Dockerfile {
    /// The index of the stage named `name` (case-insensitive) or numbered `name`.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        if let Some(i) = self
            .stages
            .iter()
            .position(|s| s.name() == Some(lower.as_str()))
        {
            return Some(i);
        }
        match lower.parse::<usize>() {
            Ok(i) if i < self.stages.len() => Some(i),
            _ => None,
        }
    }

    /// Number of instructions, FROMs and global ARGs included (Docker's "Step N/M" total).
    pub fn instruction_count(&self) -> usize {
        self.global_args.len()
            + self
                .stages
                .iter()
                .map(|s| 1 + s.instructions.len())
                .sum::<usize>()
    }
}

impl Stage {
    /// The stage's name (`AS name`, lower-cased as Docker does), if any.
    pub fn name(&self) -> Option<&str> {
        self.from.name.as_deref()
    }
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct From {
    /// The image reference as written (may hold `$ARG`s from the global ARGs; `scratch` is
    /// the empty image; it may also name an earlier stage).
    pub image: String,
    /// `--platform=...` as written (unexpanded).
    pub platform: Option<String>,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// 1-based line of the `FROM` keyword.
    pub line: usize,
    /// The instruction's text (continuations joined), e.g. for "Step 1/5 : FROM busybox".
    pub original: String,
    /// Every flag as written (including `--platform`).
    pub flags: Vec<Flag>,
}

/// A `--name` or `--name=value` flag of an instruction, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    /// Without the leading dashes, lower-case as written (`from`, `chown`, `mount`...).
    pub name: String,
    /// `None` for a bare boolean flag (`--link`).
    pub value: Option<String>,
}

/// The arguments of RUN/CMD/ENTRYPOINT (and HEALTHCHECK CMD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Args {
    /// Shell form: the rest of the line as written (run through the stage's SHELL). For RUN it
    /// is NOT expanded by the builder (the shell does it); for CMD/ENTRYPOINT neither.
    Shell(String),
    /// Exec (JSON) form: the decoded JSON strings.
    Exec(Vec<String>),
}

/// A heredoc attached to an instruction (`RUN <<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heredoc {
    /// The delimiter word (`EOF`), without quotes and the `-`.
    pub name: String,
    /// The body, each line ending in '\n' (leading tabs already removed when `strip_tabs`).
    pub body: String,
    /// `<<-EOF`: leading tabs of the body lines were stripped.
    pub strip_tabs: bool,
    /// False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): no variable expansion.
    pub expand: bool,
    /// `3<<EOF` names a file descriptor (RUN only); `None` = stdin / a file for COPY.
    pub fd: Option<u32>,
}

/// One instruction inside a stage (or a global ARG, or the inner of an ONBUILD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    /// 1-based line of the keyword.
    pub line: usize,
    /// 1-based last line (continuations and heredoc bodies included).
    pub end_line: usize,
    /// The instruction's text with continuations joined, keyword as written, heredoc bodies left
    /// out (what Docker prints in "Step N/M : ..." and records in history's created_by).
    pub original: String,
    /// All flags as written, in order (RUN's `--mount` may appear several times).
    pub flags: Vec<Flag>,
    /// Heredocs opened on the instruction's line, in order.
    pub heredocs: Vec<Heredoc>,
    pub kind: InstructionKind,
}

impl Instruction {
    /// The upper-case keyword (`RUN`, `COPY`...).
    pub fn keyword(&self) -> &'static str {
        self.kind.keyword()
    }

    /// The value of the last `--name=value` flag (as written, unexpanded).
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|f| f.name == name)
            .and_then(|f| f.value.as_deref())
    }

    /// The heredoc a COPY/ADD source word stands for (`<<EOF` → the heredoc named `EOF`).
    pub fn heredoc_source(&self, source: &str) -> Option<&Heredoc> {
        let rest = source.strip_prefix("<<")?;
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        let name: String = rest.chars().filter(|c| *c != '"' && *c != '\'').collect();
        self.heredocs.iter().find(|h| h.name == name)
    }

    /// Whether `--name` is present (bare, or `=true`).
    pub fn flag_bool(&self, name: &str) -> bool {
        self.flags
            .iter()
            .rev()
            .find(|f| f.name == name)
            .map(|f| {
                f.value
                    .as_deref()
                    .is_none_or(|v| v.eq_ignore_ascii_case("true"))
            })
            .unwrap_or(false)
    }
}

/// What an instruction is, with its parsed arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstructionKind {
    Run(Run),
    Cmd(Args),
    Entrypoint(Args),
    /// `SHELL ["executable", "params"]` (JSON form only).
    Shell(Vec<String>),
    Copy(Copy),
    Add(Copy),
    /// `ENV a=b c=d` or legacy `ENV a b c` (→ one pair `a`, `b c`). Values unexpanded, quotes kept.
    Env(Vec<(String, String)>),
    /// `LABEL a=b "c d"="e f"`. Keys and values unexpanded, quotes kept.
    Label(Vec<(String, String)>),
    /// `ARG name[=default] [name2[=default2]...]`.
    Arg(Vec<ArgDecl>),
    /// `EXPOSE 80/tcp 53/udp` (words unexpanded).
    Expose(Vec<String>),
    /// `VOLUME ["/a", "/b"]` or `VOLUME /a /b`.
    Volume(Vec<String>),
    /// `WORKDIR path` (unexpanded).
    Workdir(String),
    /// `USER name[:group]` (unexpanded).
    User(String),
    /// `STOPSIGNAL SIGTERM` (unexpanded).
    Stopsignal(String),
    Healthcheck(Healthcheck),
    /// `ONBUILD <instruction>`: the trigger as parsed (recorded in the image's OnBuild as
    /// [`Instruction::original`] minus the `ONBUILD ` prefix, i.e. the inner's `original`).
    Onbuild(Box<Instruction>),
    /// `MAINTAINER name` (deprecated; sets the image's Author).
    Maintainer(String),
}

impl InstructionKind {
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::User(_) => "USER",
            InstructionKind::Stopsignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// `RUN [--mount=...]... [--network=none|host|default] [--security=insecure|sandbox] cmd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub args: Args,
    /// Each `--mount=` value as written (unexpanded); expand with the stage's ARGs, then
    /// [`RunMount::parse`].
    pub mounts: Vec<String>,
    pub network: Option<String>,
    pub security: Option<String>,
}

/// `COPY`/`ADD [--from=X] [--chown=u:g] [--chmod=755] [--link] [--parents] [--exclude=p]...
/// src... dest` (or the JSON form). For ADD also `--checksum=`, `--keep-git-dir`, `--unpack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copy {
    /// Source words as written (unexpanded; may be globs, URLs for ADD). A heredoc source stays
    /// as written (`<<EOF`, `<<-EOF`, `<<"EOF"`): [`Instruction::heredoc_source`] maps it to its
    /// [`Heredoc`] (the file it makes is named after the heredoc's name).
    pub sources: Vec<String>,
    /// Destination as written (unexpanded). Ends with `/` → a directory.
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    /// ADD only: `--checksum=sha256:...`.
    pub checksum: Option<String>,
    /// ADD only: `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// ADD only: `--unpack=true|false` (None = default: local archives unpacked, URLs not).
    pub unpack: Option<bool>,
}

/// One variable of an `ARG` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgDecl {
    pub name: String,
    /// `=default` as written (unexpanded, quotes kept); `None` for a bare `ARG name`.
    pub default: Option<String>,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D]
/// [--start-interval=D] [--retries=N] CMD ...`. Durations in nanoseconds (Docker's config
/// units); `None` = not given (inherit the default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `None` for `HEALTHCHECK NONE` (the image's Test becomes `["NONE"]`).
    pub cmd: Option<Args>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

impl Healthcheck {
    /// The image config's `Healthcheck.Test`: `["NONE"]`, `["CMD-SHELL", s]` or `["CMD", ...]`.
    pub fn test(&self) -> Vec<String> {
        match &self.cmd {
            None => vec!["NONE".to_string()],
            Some(Args::Shell(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
            Some(Args::Exec(v)) => {
                let mut t = vec!["CMD".to_string()];
                t.extend(v.iter().cloned());
                t
            }
        }
    }
}

/// A parsed `RUN --mount=` value (after expansion): `type=bind|cache|tmpfs|secret|ssh` (default
/// bind) and its options, as BuildKit has them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunMount {
    pub kind: MountKind,
    /// `target`/`dst`/`destination` (required except for secret/ssh which have defaults).
    pub target: Option<String>,
    /// `source`/`src`: path in `from` (bind, cache) or the secret's id default.
    pub source: Option<String>,
    /// `from`: a stage name/index or an image (bind, cache).
    pub from: Option<String>,
    /// `id` (cache, secret, ssh).
    pub id: Option<String>,
    /// `sharing=shared|private|locked` (cache; default shared).
    pub sharing: Option<String>,
    /// `ro`/`readonly` (bind defaults to read-only, `rw`/`readwrite` makes it writable).
    pub readonly: Option<bool>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `required` (secret, ssh).
    pub required: bool,
    /// `size` in bytes (tmpfs).
    pub size: Option<u64>,
    /// `env=NAME` (secret).
    pub env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MountKind {
    #[default]
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl RunMount {
    /// Parse an expanded `--mount=` value (`type=cache,target=/root/.cache,sharing=locked`).
    /// Errors carry line 0: the caller sets the instruction's line.
    pub fn parse(spec: &str) -> Result<RunMount, crate::ParseError> {
        let err = |m: String| crate::ParseError::new(0, m);
        let mut m = RunMount::default();
        let mut kind_seen = false;
        for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
                None => (field.to_ascii_lowercase(), None),
            };
            let bool_value = |v: &Option<String>| -> Result<bool, crate::ParseError> {
                match v.as_deref() {
                    None => Ok(true),
                    Some(s) => {
                        parse_bool(s).ok_or_else(|| err(format!("invalid value for {key}: {s}")))
                    }
                }
            };
            let need = |v: Option<String>| -> Result<String, crate::ParseError> {
                v.ok_or_else(|| err(format!("invalid field '{field}' must be a key=value pair")))
            };
            let num = |v: Option<String>, radix: u32| -> Result<u32, crate::ParseError> {
                let s = v.ok_or_else(|| err(format!("invalid field '{field}'")))?;
                u32::from_str_radix(&s, radix)
                    .map_err(|_| err(format!("invalid value for {key}: {s}")))
            };
            match key.as_str() {
                "type" => {
                    kind_seen = true;
                    m.kind = match need(value)?.to_ascii_lowercase().as_str() {
                        "bind" => MountKind::Bind,
                        "cache" => MountKind::Cache,
                        "tmpfs" => MountKind::Tmpfs,
                        "secret" => MountKind::Secret,
                        "ssh" => MountKind::Ssh,
                        other => return Err(err(format!("unsupported mount type {other:?}"))),
                    }
                }
                "target" | "dst" | "destination" => m.target = Some(need(value)?),
                "source" | "src" => m.source = Some(need(value)?),
                "from" => m.from = Some(need(value)?),
                "id" => m.id = Some(need(value)?),
                "sharing" => {
                    let s = need(value)?.to_ascii_lowercase();
                    if !matches!(s.as_str(), "shared" | "private" | "locked") {
                        return Err(err(format!("unsupported sharing value {s:?}")));
                    }
                    m.sharing = Some(s)
                }
                "ro" | "readonly" => m.readonly = Some(bool_value(&value)?),
                "rw" | "readwrite" => m.readonly = Some(!bool_value(&value)?),
                "required" => m.required = bool_value(&value)?,
                "mode" => m.mode = Some(num(value, 8)?),
                "uid" => m.uid = Some(num(value, 10)?),
                "gid" => m.gid = Some(num(value, 10)?),
                "size" => {
                    let s = need(value)?;
                    m.size = Some(
                        parse_size(&s)
                            .ok_or_else(|| err(format!("invalid value for size: {s}")))?,
                    )
                }
                "env" => m.env = Some(need(value)?),
                other => return Err(err(format!("unexpected key '{other}' in '{field}'"))),
            }
        }
        let _ = kind_seen;
        if m.target.is_none()
            && matches!(
                m.kind,
                MountKind::Bind | MountKind::Cache | MountKind::Tmpfs
            )
        {
            return Err(err("mount destination (target) is required".to_string()));
        }
        Ok(m)
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

/// `64m`, `1g`, `1024`, `10kb` → bytes.
fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((n * mult) as u64)
}
