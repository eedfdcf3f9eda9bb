//! Shared harness for berth's integration tests: a private engine per test, the real docker CLI
//! against it, raw HTTP over its unix socket, and a busybox rootfs to import.
//!
//! Every `TestDaemon` lives in `/tmp/bt-<rand>/` (`data/`, `run/` (the exec-root), `daemon.log`,
//! `docker-config/`) and uses the cgroup parent `berth-test-<rand>`. The dir names are short on
//! purpose: `<exec-root>/shims/<64-hex id>/ctl.sock` must fit in a unix socket address (108 bytes). Dropping it kills the engine,
//! every shim and container process, removes its cgroups, unmounts everything below its dirs and
//! removes them. Set `BERTH_TEST_KEEP=1` to keep the dirs (the log) of a failed test for reading,
//! `BERTH_TEST_DEBUG=1` to start the engine with `--debug`.

#![allow(dead_code)]

mod cleanup;
pub mod net;

pub mod registry;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use cleanup::lock;
#[allow(unused_imports)]
pub use cleanup::{cleanup_cgroups, kill_shims, mounts_below, unmount_below};

/// How long the engine may take to answer `/_ping` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Default limit for one docker/berth CLI command (override: BERTH_TEST_CMD_TIMEOUT seconds).
const CMD_TIMEOUT: Duration = Duration::from_secs(120);
/// Limit for one raw API request.
const API_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TestDaemon {
    /// `/tmp/bt-<rand>`: parent of everything below.
    base: PathBuf,
    data_root: PathBuf,
    exec_root: PathBuf,
    socket: PathBuf,
    log_path: PathBuf,
    docker_config: PathBuf,
    cgroup_parent: String,
    extra_args: Vec<String>,
    child: Mutex<Option<Child>>,
    net: net::TestNet,
}

impl TestDaemon {
    /// Start an engine on fresh temp dirs and wait until it answers `GET /_ping`.
    pub fn start() -> TestDaemon {
        Self::start_with_args(&[])
    }

    /// Like [`TestDaemon::start`], with extra `berth daemon` flags (kept across `restart`).
    pub fn start_with_args(extra: &[&str]) -> TestDaemon {
        let rand = random_hex(8);
        let base = PathBuf::from(format!("/tmp/bt-{rand}"));
        let data_root = base.join("data");
        let exec_root = base.join("run");
        let docker_config = base.join("docker-config");
        for d in [&base, &data_root, &exec_root, &docker_config] {
            if let Err(e) = fs::create_dir_all(d) {
                panic!("cannot create {}: {e}", d.display());
            }
        }
        let _ = fs::set_permissions(&base, fs::Permissions::from_mode(0o755));
        let socket = exec_root.join("berth.sock");
        assert!(
            socket.as_os_str().len() < 100,
            "socket path too long: {}",
            socket.display()
        );
        let d = TestDaemon {
            log_path: base.join("daemon.log"),
            base,
            data_root,
            exec_root,
            socket,
            docker_config,
            cgroup_parent: format!("berth-test-{rand}"),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            child: Mutex::new(None),
            net: net::TestNet::claim(&rand),
        };
        // `d` exists before the engine does: a panic below still runs Drop and cleans up.
        d.spawn();
        d.wait_ready();
        d
    }

    pub fn data_root(&self) -> &Path {
        &self.data_root
    }
    pub fn exec_root(&self) -> &Path {
        &self.exec_root
    }
    pub fn socket(&self) -> &Path {
        &self.socket
    }
    /// `unix:///tmp/bt-<rand>/run/berth.sock`
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    /// A scratch dir owned by this test (removed on drop).
    pub fn scratch_dir(&self) -> PathBuf {
        let p = self.base.join("scratch");
        let _ = fs::create_dir_all(&p);
        p
    }

    /// This engine's bridge name, subnets and nftables table.
    pub fn net(&self) -> &net::TestNet {
        &self.net
    }

    /// The engine's pid, if it is running.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(|c| c.id())
    }

    fn spawn(&self) {
        let log = match fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
        {
            Ok(f) => f,
            Err(e) => panic!("cannot open {}: {e}", self.log_path.display()),
        };
        let log2 = match log.try_clone() {
            Ok(f) => f,
            Err(e) => panic!("cannot dup log fd: {e}"),
        };
        let mut cmd = Command::new(berth_exe());
        cmd.arg("daemon")
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--exec-root")
            .arg(&self.exec_root)
            .arg("-H")
            .arg(self.host())
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .args(self.net.daemon_args(&self.extra_args, &self.base))
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log);
        if std::env::var_os("BERTH_TEST_DEBUG").is_some() {
            cmd.arg("--debug");
        }
        // Start the engine as `nohup cmd &` would: SIGHUP and SIGQUIT ignored. Containers must
        // not inherit that (the shim resets them); the kill -s HUP test shows it.
        // SAFETY: only async-signal-safe calls (signal) between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                libc::signal(libc::SIGQUIT, libc::SIG_IGN);
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start {}: {e}", berth_exe().display()),
        };
        *lock(&self.child) = Some(child);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(c) = lock(&self.child).as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "berth daemon exited during start ({st}); log:\n{}",
                        self.log_tail(80)
                    );
                }
            }
            if let Ok((200, _)) = self.try_api("GET", "/_ping", None, "", Duration::from_secs(2)) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "berth daemon did not answer /_ping within {START_TIMEOUT:?}; log:\n{}",
                    self.log_tail(80)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL the engine (containers keep running) and reap it.
    pub fn kill9(&self) {
        if let Some(mut c) = lock(&self.child).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL the engine and start it again on the same dirs (live-restore tests).
    pub fn restart(&self) {
        self.kill9();
        self.spawn();
        self.wait_ready();
    }

    /// Start the engine again after [`TestDaemon::kill9`].
    pub fn start_again(&self) {
        if lock(&self.child).is_none() {
            self.spawn();
        }
        self.wait_ready();
    }

    /// The last `lines` lines of the engine's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read(&self.log_path).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    // ---- the docker CLI and our own CLI ----

    /// Run the docker CLI against this engine (stdin is /dev/null).
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_stdin(args, None)
    }

    /// Run the docker CLI with `input` on its stdin (None: /dev/null).
    pub fn docker_stdin<'a>(&self, args: &[&str], input: impl Into<Option<&'a [u8]>>) -> Output {
        let mut cmd = Command::new(docker_exe());
        self.client_env(&mut cmd);
        cmd.args(args);
        run_with_timeout(cmd, input.into(), cmd_timeout())
    }

    /// Run the docker CLI; panic (with output and engine log) unless it succeeds. Returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        self.expect_ok("docker", args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run the docker CLI; panic unless it fails. Returns stderr.
    pub fn docker_err(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        if out.status.success() {
            panic!(
                "docker {args:?} succeeded but should have failed\n{}",
                self.describe(&out)
            );
        }
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Run our own binary as the CLI against this engine.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_stdin(args, None)
    }

    pub fn berth_stdin<'a>(&self, args: &[&str], input: impl Into<Option<&'a [u8]>>) -> Output {
        let mut cmd = Command::new(berth_exe());
        self.client_env(&mut cmd);
        cmd.args(args);
        run_with_timeout(cmd, input.into(), cmd_timeout())
    }

    pub fn berth_ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        self.expect_ok("berth", args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn client_env(&self, cmd: &mut Command) {
        for k in [
            "DOCKER_CONTEXT",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH",
            "DOCKER_API_VERSION",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("DOCKER_HOST", self.host())
            .env("BERTH_HOST", self.host())
            .env("DOCKER_CONFIG", &self.docker_config)
            .env("DOCKER_CLI_HINTS", "false");
    }

    fn expect_ok(&self, prog: &str, args: &[&str], out: &Output) {
        if !out.status.success() {
            panic!("{prog} {args:?} failed\n{}", self.describe(out));
        }
    }

    /// Status, stdout, stderr and the engine's log tail, for failure messages.
    pub fn describe(&self, out: &Output) -> String {
        format!(
            "status: {}\n--- stdout\n{}\n--- stderr\n{}\n--- daemon log (tail)\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(40)
        )
    }

    // ---- raw HTTP over the unix socket ----

    /// One HTTP/1.1 request; `body` is sent as application/json. Panics on transport errors.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let (st, b) = self.api_raw(method, path, body.map(str::as_bytes), "application/json");
        (st, String::from_utf8_lossy(&b).into_owned())
    }

    /// Like [`TestDaemon::api`], parsing the response body as JSON (Null if it is not JSON).
    pub fn api_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let (st, b) = self.api(method, path, body);
        (
            st,
            serde_json::from_str(&b).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A request with any body and content type (e.g. a tar with application/x-tar).
    pub fn api_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> (u16, Vec<u8>) {
        match self.try_api(method, path, body, content_type, API_TIMEOUT) {
            Ok(r) => r,
            Err(e) => panic!(
                "{method} {path}: {e}\n--- daemon log (tail)\n{}",
                self.log_tail(40)
            ),
        }
    }

    fn try_api(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
        timeout: Duration,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        http_request(&self.socket, method, path, body, content_type, timeout)
    }

    // ---- images ----

    /// `docker import <busybox rootfs tar> <tag>`; returns the image id printed by docker.
    pub fn import_busybox(&self, tag: &str) -> String {
        let tar = busybox_rootfs_tar();
        let tar = tar.to_string_lossy();
        self.docker_ok(&["import", &tar, tag]).trim().to_string()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // Nothing here may panic: Drop also runs while a failed test unwinds.
        let keep = std::env::var_os("BERTH_TEST_KEEP").is_some() && std::thread::panicking();
        if std::thread::panicking() {
            eprintln!(
                "[berth test] engine log: {} (BERTH_TEST_KEEP=1 keeps it)",
                self.log_path.display()
            );
        }
        let bridges = net::bridges_of(&self.socket);
        self.kill9();
        kill_shims(&self.exec_root.join("shims"));
        cleanup_cgroups(&self.cgroup_parent);
        unmount_below(&self.base);
        self.net.cleanup(&bridges);
        if keep {
            eprintln!(
                "[berth test] kept {} (BERTH_TEST_KEEP)",
                self.base.display()
            );
            return;
        }
        // libcontainer's state (`<exec-root>/runtime`) and everything else live under base.
        if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!("[berth test] cannot remove {}: {e}", self.base.display());
        }
    }
}

// ---- process and HTTP helpers ----

pub fn berth_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

pub fn docker_exe() -> PathBuf {
    let p = Path::new("/usr/local/bin/docker");
    if p.exists() {
        p.to_path_buf()
    } else {
        PathBuf::from("docker")
    }
}

fn cmd_timeout() -> Duration {
    std::env::var("BERTH_TEST_CMD_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(CMD_TIMEOUT)
}

/// `chars` lowercase hex digits from /dev/urandom.
pub fn random_hex(chars: usize) -> String {
    let mut buf = vec![0u8; chars.div_ceil(2)];
    if let Err(e) = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)) {
        panic!("/dev/urandom: {e}");
    }
    let mut s: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(chars);
    s
}

/// Run `cmd` with piped output; kill it after `timeout` (the Output then says so on stderr).
pub fn run_with_timeout(mut cmd: Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot run {:?}: {e}", cmd.get_program()),
    };
    let writer = match (input, child.stdin.take()) {
        (Some(data), Some(mut stdin)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            }))
        }
        _ => None,
    };
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = reader(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err_t = reader(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() > deadline => {
                timed_out = true;
                let _ = child.kill();
                match child.wait() {
                    Ok(st) => break st,
                    Err(e) => panic!("wait: {e}"),
                }
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("wait: {e}"),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_t.join().unwrap_or_default();
    let mut stderr = err_t.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(format!("\n[harness] killed after {timeout:?}\n").as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// One HTTP/1.1 request over a unix socket with `Connection: close`; returns status and body
/// (chunked transfer encoding decoded).
pub fn http_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    content_type: &str,
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    } else if matches!(method, "POST" | "PUT") {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        s.write_all(b)?;
    }
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    parse_http_response(&resp)
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

pub fn parse_http_response(resp: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&resp[..end]);
    let rest = &resp[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| bad("bad HTTP status line"))?;
    let mut chunked = false;
    let mut len = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if k == "content-length" {
            len = v.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = len {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk"))?;
        let size_str = String::from_utf8_lossy(&b[..nl]);
        let size_str = size_str.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16).map_err(|_| bad("bad chunk size"))?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or(&[]);
    }
}

// ---- the busybox rootfs ----

/// True if the ELF file at `path` has no program interpreter (PT_INTERP), i.e. is static.
pub fn is_static_elf(path: &Path) -> bool {
    let Ok(b) = fs::read(path) else { return false };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false; // only 64-bit little-endian is checked
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap_or([0; 8])) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= b.len() && u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) != 3
    })
}

/// The path of a busybox rootfs tar (built once per user, cached in the temp dir).
///
/// Contents: /bin/busybox (Debian's busybox-static) and a symlink per applet in /bin; /etc/passwd
/// (root, nobody 65534, app 1000) and /etc/group; empty /tmp (1777) /root /home/app /proc /sys
/// /dev /var.
pub fn busybox_rootfs_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let path = std::env::temp_dir().join(format!("berth-busybox-{uid}.tar"));
        if fs::metadata(&path).map(|m| m.len() > 0).unwrap_or(false) {
            return path;
        }
        let tmp = path.with_extension(format!("tar.tmp-{}-{}", std::process::id(), random_hex(4)));
        if let Err(e) = write_busybox_tar(&tmp) {
            let _ = fs::remove_file(&tmp);
            panic!("cannot build busybox rootfs tar: {e}");
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            panic!("cannot rename {} to {}: {e}", tmp.display(), path.display());
        }
        path
    })
    .clone()
}

fn write_busybox_tar(out: &Path) -> std::io::Result<()> {
    let bb = Path::new("/bin/busybox");
    if !is_static_elf(bb) {
        return Err(bad(
            "/bin/busybox is missing or not static: apt-get install busybox-static",
        ));
    }
    let binary = fs::read(bb)?;
    let list = Command::new(bb).arg("--list").output()?;
    if !list.status.success() {
        return Err(bad("busybox --list failed"));
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && l != "busybox" && !l.contains('/'))
        .collect();
    applets.sort();
    applets.dedup();

    const MTIME: u64 = 1_700_000_000;
    let header = |ty: tar::EntryType, mode: u32, uid: u64, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    };
    let f = fs::File::create(out)?;
    let mut tb = tar::Builder::new(std::io::BufWriter::new(f));
    let dirs: [(&str, u32, u64); 11] = [
        ("bin/", 0o755, 0),
        ("dev/", 0o755, 0),
        ("etc/", 0o755, 0),
        ("home/", 0o755, 0),
        ("home/app/", 0o755, 1000),
        ("proc/", 0o555, 0),
        ("root/", 0o700, 0),
        ("sys/", 0o555, 0),
        ("tmp/", 0o1777, 0),
        ("var/", 0o755, 0),
        ("var/tmp/", 0o1777, 0),
    ];
    for (name, mode, uid) in dirs {
        let mut h = header(tar::EntryType::Directory, mode, uid, 0);
        tb.append_data(&mut h, name, std::io::empty())?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, 0, binary.len() as u64);
    tb.append_data(&mut h, "bin/busybox", &binary[..])?;
    for a in &applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0);
        tb.append_link(&mut h, format!("bin/{a}"), "busybox")?;
    }
    let files: [(&str, &str); 2] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
             app:x:1000:1000:app:/home/app:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\nnobody:x:65534:\napp:x:1000:\n"),
    ];
    for (name, text) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, 0, text.len() as u64);
        tb.append_data(&mut h, name, text.as_bytes())?;
    }
    let w = tb.into_inner()?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(())
}
