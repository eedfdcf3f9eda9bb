//! `berth build`: docker's classic `build` client. The context directory is sent as a tar
//! (`.dockerignore` applied, the Dockerfile and `.dockerignore` always kept), or — the speed
//! path, the engine being on a local unix socket — named by `berth-context=<abs dir>` with an
//! empty body, the engine reading it in place. The JSON stream is rendered as docker does.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use berth_build::ignore::{read_patterns, Ignore};
use berth_build::{Context, EntryKind};
use bytes::Bytes;
use clap::{ArgAction, Args};

use super::out;
use crate::client::{bytes_body, empty_body, for_each_json_line, stream_body, Client, Query};
use crate::error::{CliError, Result};

#[derive(Args, Debug, Default)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"; "-" reads it from stdin)
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Set metadata for an image
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<String>,
    /// Additional build contexts (e.g., name=path)
    #[arg(long = "build-context")]
    pub build_contexts: Vec<String>,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    pub force_rm: bool,
    /// Set type of progress output (accepted for compatibility)
    #[arg(long)]
    pub progress: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Build context: a directory, or "-" (a tar or a Dockerfile on stdin)
    pub context: String,
}

/// Where the Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileLoc {
    /// Inside the context: its relative path.
    InContext(String),
    /// Outside the context: read and added to the tar under a random name.
    Outside(PathBuf),
    /// `-f -`.
    Stdin,
}

/// `--build-arg K=V` → "K": "V"; `--build-arg K` → the environment's K, or null.
pub fn build_args_json(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for a in args {
        match a.split_once('=') {
            Some((k, v)) => m.insert(k.to_string(), serde_json::Value::String(v.to_string())),
            None => m.insert(
                a.clone(),
                env(a).map_or(serde_json::Value::Null, serde_json::Value::String),
            ),
        };
    }
    serde_json::Value::Object(m)
}

/// `--label K=V` → "K": "V"; `--label K` → "K": "".
pub fn labels_json(labels: &[String]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for l in labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        m.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    serde_json::Value::Object(m)
}

/// Docker's rules for `-f`: default `Dockerfile` in the context (or `dockerfile` if only that
/// exists); a relative `-f` is relative to the current directory.
pub fn locate_dockerfile(ctx_dir: &Path, file: Option<&str>) -> Result<DockerfileLoc> {
    let abs = match file {
        Some("-") => return Ok(DockerfileLoc::Stdin),
        Some(f) => {
            let p = PathBuf::from(f);
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir()?.join(p)
            }
        }
        None => {
            let d = ctx_dir.join("Dockerfile");
            let alt = ctx_dir.join("dockerfile");
            if std::fs::symlink_metadata(&d).is_err() && std::fs::symlink_metadata(&alt).is_ok() {
                alt
            } else {
                d
            }
        }
    };
    let resolved = std::fs::canonicalize(&abs).map_err(|e| {
        CliError::other(format!(
            "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: {}",
            abs.display(),
            errno_text(&e)
        ))
    })?;
    match resolved.strip_prefix(ctx_dir) {
        Ok(rel) if !rel.as_os_str().is_empty() => {
            Ok(DockerfileLoc::InContext(rel.to_string_lossy().into_owned()))
        }
        _ => Ok(DockerfileLoc::Outside(resolved)),
    }
}

fn errno_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        _ => e.to_string(),
    }
}

/// The context's ignore rules with docker's exceptions: `.dockerignore` and the Dockerfile
/// are always sent (unless the Dockerfile comes from stdin).
pub fn context_ignore(dockerignore: Option<&str>, dockerfile: Option<&str>) -> Ignore {
    let mut patterns = dockerignore.map(read_patterns).unwrap_or_default();
    let base = Ignore::from_patterns(&patterns);
    if base.matches(".dockerignore") {
        patterns.push("!.dockerignore".to_string());
    }
    if let Some(df) = dockerfile {
        if base.matches(df) {
            patterns.push(format!("!{df}"));
        }
    }
    Ignore::from_patterns(&patterns)
}

/// Write the context as a tar (uid/gid 0, modes and mtimes kept). `extra`: a Dockerfile to add
/// under a random name, also appended to `.dockerignore` (as docker does). Returns the size.
pub fn write_context_tar(
    ctx: &Context,
    dockerignore: Option<&str>,
    extra: Option<(&str, &[u8])>,
    w: &mut dyn Write,
) -> io::Result<u64> {
    let mut counter = Counting { w, n: 0 };
    {
        let mut tb = tar::Builder::new(&mut counter);
        tb.mode(tar::HeaderMode::Complete);
        for e in &ctx.entries()[1..] {
            if extra.is_some() && e.path == ".dockerignore" {
                continue;
            }
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode & 0o7777);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(u64::try_from(e.mtime_ns / 1_000_000_000).unwrap_or(0));
            match &e.kind {
                EntryKind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tb.append_data(&mut h, format!("{}/", e.path), io::empty())?;
                }
                EntryKind::File => {
                    let f = ctx.open_file(&e.path).map_err(io::Error::other)?;
                    let len = f.metadata()?.len();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(len);
                    tb.append_data(&mut h, &e.path, f.take(len))?;
                }
                EntryKind::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tb.append_link(&mut h, &e.path, target)?;
                }
                // Sockets, FIFOs and devices are not sent.
                EntryKind::Other => {}
            }
        }
        if let Some((name, data)) = extra {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o600);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(now);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            tb.append_data(&mut h, name, data)?;
            let mut ign = match dockerignore {
                Some(t) => t.to_string(),
                None => ".dockerignore".to_string(),
            };
            ign.push_str(&format!("\n{name}\n"));
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o600);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(now);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(ign.len() as u64);
            tb.append_data(&mut h, ".dockerignore", ign.as_bytes())?;
        }
        tb.finish()?;
    }
    Ok(counter.n)
}

struct Counting<'a> {
    w: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.w.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// A `Write` that hands chunks to the request body stream.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the daemon closed the upload"))
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n.div_ceil(2)];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if ok.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = t ^ u128::from(std::process::id());
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect::<String>()[..n].to_string()
}

/// Whether stdin's bytes are an archive (tar, gzip, bzip2, xz, zstd) rather than a Dockerfile.
pub fn is_archive(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
        || b.starts_with(b"BZh")
        || b.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || b.get(257..262) == Some(b"ustar")
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut v = Vec::new();
    io::stdin().lock().read_to_end(&mut v)?;
    Ok(v)
}

/// What is sent.
enum Body {
    /// Speed path: `berth-context=<dir>`, empty body.
    InPlace(PathBuf),
    /// A tar produced from the directory while it is sent.
    DirTar {
        dir: PathBuf,
        dockerignore: Option<String>,
        ignore: Ignore,
        extra: Option<(String, Vec<u8>)>,
    },
    /// Bytes ready to send (stdin's archive, or a tar holding a Dockerfile from stdin).
    Bytes(Vec<u8>),
}

pub async fn build(c: &Client, a: BuildArgs) -> Result<i32> {
    if let Some(f) = &a.iidfile {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::other(format!("Removing image ID file: {e}"))),
        }
    }
    let mut q = Query::new();
    for t in &a.tags {
        q = q.add("t", t.as_str());
    }
    let (body, dockerfile_param) = if a.context == "-" {
        if a.file.as_deref() == Some("-") {
            return Err(CliError::Usage(
                "invalid argument: can't use stdin for both build context and dockerfile"
                    .to_string(),
            ));
        }
        if io::stdin().is_terminal() {
            return Err(CliError::other(
                "unable to prepare context: the build context on stdin is empty",
            ));
        }
        let data = read_stdin()?;
        if is_archive(&data) {
            (Body::Bytes(data), a.file.clone().unwrap_or_default())
        } else {
            let mut tar = Vec::new();
            {
                let mut tb = tar::Builder::new(&mut tar);
                let mut h = tar::Header::new_gnu();
                h.set_mode(0o600);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h.set_size(data.len() as u64);
                h.set_entry_type(tar::EntryType::Regular);
                tb.append_data(&mut h, "Dockerfile", &data[..])?;
                tb.finish()?;
            }
            (Body::Bytes(tar), "Dockerfile".to_string())
        }
    } else {
        let dir = std::fs::canonicalize(&a.context).map_err(|_| {
            CliError::other(format!(
                "unable to prepare context: path {:?} not found",
                a.context
            ))
        })?;
        if !dir.is_dir() {
            return Err(CliError::other(format!(
                "unable to prepare context: path {:?} is not a directory",
                a.context
            )));
        }
        let loc = locate_dockerfile(&dir, a.file.as_deref())?;
        let force_tar = std::env::var("BERTH_BUILD_TAR").is_ok_and(|v| !v.is_empty() && v != "0");
        match loc {
            DockerfileLoc::InContext(rel) if !force_tar => (Body::InPlace(dir), rel),
            loc => {
                let dockerignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
                    Ok(t) => Some(t),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(CliError::other(format!("reading .dockerignore: {e}"))),
                };
                let (extra, rel_df) = match &loc {
                    DockerfileLoc::InContext(rel) => (None, rel.clone()),
                    DockerfileLoc::Outside(p) => {
                        let text = std::fs::read(p)?;
                        let name = format!(".dockerfile.{}", random_hex(20));
                        (Some((name.clone(), text)), name)
                    }
                    DockerfileLoc::Stdin => {
                        let text = read_stdin()?;
                        let name = format!(".dockerfile.{}", random_hex(20));
                        (Some((name.clone(), text)), name)
                    }
                };
                let keep_df = match &loc {
                    DockerfileLoc::InContext(rel) => Some(rel.as_str()),
                    _ => None,
                };
                let ignore = context_ignore(dockerignore.as_deref(), keep_df);
                (
                    Body::DirTar {
                        dir,
                        dockerignore,
                        ignore,
                        extra,
                    },
                    rel_df,
                )
            }
        }
    };
    q = q.add_if(
        !dockerfile_param.is_empty(),
        "dockerfile",
        dockerfile_param.as_str(),
    );
    if !a.build_args.is_empty() {
        let env = |k: &str| std::env::var(k).ok();
        q = q.add(
            "buildargs",
            build_args_json(&a.build_args, &env).to_string(),
        );
    }
    if !a.labels.is_empty() {
        q = q.add("labels", labels_json(&a.labels).to_string());
    }
    q = q
        .add_opt("target", a.target.clone())
        .add_if(a.no_cache, "nocache", "1")
        .add_if(a.pull, "pull", "1")
        .add_opt("networkmode", a.network.clone())
        .add_if(a.quiet, "q", "1")
        .add("rm", if a.rm { "1" } else { "0" })
        .add_if(a.force_rm, "forcerm", "1")
        .add_opt("platform", a.platform.clone())
        .add("version", "1");
    for bc in &a.build_contexts {
        let (name, path) = bc.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("invalid build context: {bc:?}: expected name=path"))
        })?;
        let value = if path.contains("://") {
            path.to_string()
        } else {
            let abs = std::fs::canonicalize(path).map_err(|_| {
                CliError::other(format!(
                    "unable to prepare context: path {path:?} not found"
                ))
            })?;
            abs.to_string_lossy().into_owned()
        };
        q = q.add("berth-build-context", format!("{name}={value}"));
    }
    let quiet = a.quiet;
    let req_body = match body {
        Body::InPlace(dir) => {
            q = q.add("berth-context", dir.to_string_lossy().into_owned());
            empty_body()
        }
        Body::Bytes(b) => {
            if !quiet {
                out(&format!(
                    "Sending build context to Docker daemon  {}\n",
                    crate::units::human_size_prec(b.len() as f64, 4)
                ))?;
            }
            bytes_body(b)
        }
        Body::DirTar {
            dir,
            dockerignore,
            ignore,
            extra,
        } => {
            let ctx = Context::open_with(&dir, &ignore)
                .map_err(|e| CliError::other(format!("error checking context: {e}")))?;
            let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
            tokio::task::spawn_blocking(move || {
                let mut w = ChannelWriter {
                    tx: tx.clone(),
                    buf: Vec::new(),
                };
                let extra_ref = extra.as_ref().map(|(n, d)| (n.as_str(), d.as_slice()));
                let res = write_context_tar(&ctx, dockerignore.as_deref(), extra_ref, &mut w)
                    .and_then(|n| w.flush().map(|_| n));
                match res {
                    Ok(n) => {
                        if !quiet {
                            let _ = out(&format!(
                                "Sending build context to Docker daemon  {}\n",
                                crate::units::human_size_prec(n as f64, 4)
                            ));
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                    }
                }
            });
            let s = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            stream_body(s)
        }
    };
    let resp = c
        .request(
            hyper::Method::POST,
            &format!("/build{}", q.render()),
            Some("application/x-tar"),
            req_body,
        )
        .await?;
    let mut r = Renderer::new(quiet);
    for_each_json_line(resp, |m| r.message(&m)).await?;
    if let Some((msg, code)) = r.failure {
        if quiet {
            eprint!("{}", r.buffered);
        }
        eprintln!("{msg}");
        return Ok(code);
    }
    let id = r.image_id.clone().or_else(|| {
        // A daemon that sends no aux message: -q's stream is the ID.
        r.buffered
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with("sha256:"))
            .map(str::to_string)
    });
    if quiet {
        if let Some(id) = &id {
            out(&format!("{id}\n"))?;
        }
    }
    if let (Some(f), Some(id)) = (&a.iidfile, &id) {
        std::fs::write(f, id)
            .map_err(|e| CliError::other(format!("Failed to write image ID to file: {e}")))?;
    }
    Ok(0)
}

/// Renders the classic builder's JSON messages.
pub struct Renderer {
    quiet: bool,
    /// -q: what would have been printed (shown on failure).
    pub buffered: String,
    pub image_id: Option<String>,
    /// The error message and the exit code (errorDetail.code, default 1).
    pub failure: Option<(String, i32)>,
}

impl Renderer {
    pub fn new(quiet: bool) -> Renderer {
        Renderer {
            quiet,
            buffered: String::new(),
            image_id: None,
            failure: None,
        }
    }

    fn print(&mut self, s: &str) -> Result<()> {
        if self.quiet {
            self.buffered.push_str(s);
            Ok(())
        } else {
            out(s)
        }
    }

    pub fn message(&mut self, m: &serde_json::Value) -> Result<()> {
        if let Some(e) = crate::client::stream_error(m) {
            let code = m
                .get("errorDetail")
                .and_then(|d| d.get("code"))
                .and_then(|c| c.as_i64())
                .filter(|c| *c > 0 && *c < 256)
                .unwrap_or(1) as i32;
            self.failure = Some((e, code));
            return Ok(());
        }
        if let Some(id) = m
            .get("aux")
            .and_then(|a| a.get("ID"))
            .and_then(|i| i.as_str())
        {
            self.image_id = Some(id.to_string());
            return Ok(());
        }
        if let Some(s) = m.get("stream").and_then(|s| s.as_str()) {
            let s = s.to_string();
            return self.print(&s);
        }
        if let Some(status) = m.get("status").and_then(|s| s.as_str()) {
            if m.get("progressDetail")
                .and_then(|p| p.get("current"))
                .is_some()
            {
                return Ok(());
            }
            let line = match m.get("id").and_then(|i| i.as_str()) {
                Some(id) if !id.is_empty() => format!("{id}: {status}\n"),
                _ => format!("{status}\n"),
            };
            return self.print(&line);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
