//! End-to-end tests of the shim: a busybox bundle run through `spawn` + `ShimClient`.
//! Needs root, cgroups and /bin/busybox (Debian's busybox-static).
//!
//! The shim executable is `$BERTH_EXE` if set (e.g. target/debug/berth), otherwise this crate's
//! `shim` example, which `cargo test -p berth-shim` builds and which dispatches like `berth shim`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_shim::client::{self, ShimClient};
use berth_shim::logs::{self, Stream};
use berth_shim::proto::{ShimOptions, CTL_SOCKET, EXIT_FILE, PID_FILE, SHIM_PID_FILE};
use berth_shim::ShimError;
use oci_spec::runtime::Spec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn shim_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_EXE") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let p = target.join("debug/examples/shim");
    assert!(
        p.exists(),
        "shim executable {} is missing: run `cargo test -p berth-shim` (which builds the example) \
         or set BERTH_EXE=target/debug/berth after `cargo build -p berth`",
        p.display()
    );
    p
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos
    )
}

/// Controllers whose hierarchy root may hold our test parent cgroup.
fn cgroup_roots() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.push(e.path());
            }
        }
    }
    out.push(PathBuf::from("/sys/fs/cgroup"));
    out
}

struct Fixture {
    _tmp: tempfile::TempDir,
    id: String,
    state_dir: PathBuf,
    opts: ShimOptions,
    cgroup_parent: String,
}

impl Fixture {
    fn new(args: &[&str], open_stdin: bool) -> Fixture {
        assert!(
            Path::new("/bin/busybox").exists(),
            "/bin/busybox missing: apt-get install busybox-static"
        );
        let tmp = tempfile::Builder::new()
            .prefix("shimt")
            .tempdir_in("/tmp")
            .unwrap();
        let id = unique("shimtest");
        let bundle = tmp.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for name in ["sh", "echo", "cat", "sleep", "ls"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(name)).unwrap();
        }
        let cgroup_parent = unique("berth-shimtest");
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        process.set_env(Some(vec!["PATH=/bin".into()]));
        process.set_terminal(Some(false));
        spec.set_process(Some(process));
        let mut root = spec.root().clone().unwrap();
        root.set_path(rootfs.clone());
        spec.set_root(Some(root));
        let mut linux = spec.linux().clone().unwrap();
        linux.set_cgroups_path(Some(PathBuf::from(format!("/{cgroup_parent}/{id}"))));
        spec.set_linux(Some(linux));
        spec.save(bundle.join("config.json")).unwrap();

        let state_dir = tmp.path().join("s");
        let opts = ShimOptions {
            id: id.clone(),
            bundle,
            runtime_root: tmp.path().join("rt"),
            log_path: tmp.path().join("ctr.log"),
            log_max_size: None,
            log_max_file: 1,
            open_stdin,
            stdin_once: open_stdin,
            tty: false,
        };
        Fixture {
            _tmp: tmp,
            id,
            state_dir,
            opts,
            cgroup_parent,
        }
    }

    async fn spawn(&self) -> berth_shim::Result<client::Spawned> {
        let (exe, dir, opts) = (shim_exe(), self.state_dir.clone(), self.opts.clone());
        let task = tokio::task::spawn_blocking(move || client::spawn(&exe, &dir, &opts));
        with_timeout(task).await.unwrap()
    }

    fn leaf_cgroups(&self) -> Vec<PathBuf> {
        cgroup_roots()
            .into_iter()
            .map(|r| r.join(&self.cgroup_parent).join(&self.id))
            .filter(|p| p.exists())
            .collect()
    }

    /// After the shim exits: its socket is gone and the container state and leaf cgroups too.
    async fn assert_cleaned_up(&self) {
        let sock = self.state_dir.join(CTL_SOCKET);
        poll_until(|| !sock.exists(), "ctl.sock removed").await;
        assert!(self.state_dir.join(EXIT_FILE).exists());
        assert!(
            !self.opts.runtime_root.join(&self.id).exists(),
            "libcontainer state left behind"
        );
        assert!(
            self.leaf_cgroups().is_empty(),
            "cgroups left: {:?}",
            self.leaf_cgroups()
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Kill a leftover shim and container (failed test), then remove the cgroup dirs.
        for f in [PID_FILE, SHIM_PID_FILE] {
            if let Ok(s) = std::fs::read_to_string(self.state_dir.join(f)) {
                if let Ok(pid) = s.trim().parse::<i32>() {
                    if self.state_dir.join(CTL_SOCKET).exists() {
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        for r in cgroup_roots() {
            let parent = r.join(&self.cgroup_parent);
            let _ = std::fs::remove_dir(parent.join(&self.id));
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

async fn poll_until(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Read frames until EOF: (stdout, stderr).
async fn read_frames(stream: &mut UnixStream) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let mut hdr = [0u8; 8];
        match stream.read_exact(&mut hdr).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("read frame: {e}"),
        }
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let mut data = vec![0u8; len];
        stream.read_exact(&mut data).await.unwrap();
        match hdr[0] {
            1 => out.extend(data),
            2 => err.extend(data),
            s => panic!("bad stream {s}"),
        }
    }
    (out, err)
}

async fn with_timeout<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn runs_a_container_to_its_exit_code() {
    let fx = Fixture::new(
        &["sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3"],
        false,
    );
    let spawned = fx.spawn().await.unwrap();
    assert!(spawned.pid > 0 && spawned.shim_pid > 0);
    assert_eq!(
        std::fs::read_to_string(fx.state_dir.join(PID_FILE))
            .unwrap()
            .trim(),
        spawned.pid.to_string()
    );
    let c = ShimClient::new(&fx.state_dir);
    assert!(c.alive().await);
    let mut att = c.attach(false, true, true).await.unwrap();
    c.start().await.unwrap();
    let (out, err) = with_timeout(read_frames(&mut att)).await;
    assert_eq!(String::from_utf8_lossy(&out), "out1\nout2\n");
    assert_eq!(String::from_utf8_lossy(&err), "err1\n");
    let exit = with_timeout(c.wait()).await.unwrap();
    assert_eq!(exit.exit_code, 3);
    assert!(!exit.oom_killed);
    assert!(chrono::DateTime::parse_from_rfc3339(&exit.finished_at).is_ok());

    let entries = logs::read_all(&fx.opts.log_path, 1).unwrap();
    let lines: Vec<(Stream, String)> = entries
        .iter()
        .map(|e| (e.stream, String::from_utf8_lossy(&e.line).into_owned()))
        .collect();
    assert!(
        lines.contains(&(Stream::Stdout, "out1\n".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Stream::Stderr, "err1\n".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Stream::Stdout, "out2\n".into())),
        "{lines:?}"
    );

    fx.assert_cleaned_up().await;
    // With the shim gone, wait falls back to exit.json; the shim is not alive.
    assert_eq!(c.wait().await.unwrap().exit_code, 3);
    assert_eq!(client::read_exit(&fx.state_dir).unwrap().exit_code, 3);
    assert!(!c.alive().await);
    assert!(matches!(c.start().await, Err(ShimError::NotRunning(_))));
}

#[tokio::test]
async fn kill_ends_the_container_with_128_plus_signal() {
    let fx = Fixture::new(&["sleep", "100"], false);
    fx.spawn().await.unwrap();
    let c = ShimClient::new(&fx.state_dir);
    c.start().await.unwrap();
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.wait().await })
    };
    c.kill(libc::SIGKILL).await.unwrap();
    let exit = with_timeout(waiter).await.unwrap().unwrap();
    assert_eq!(exit.exit_code, 128 + libc::SIGKILL);
    fx.assert_cleaned_up().await;
    assert!(c.kill(libc::SIGKILL).await.is_err());
}

#[tokio::test]
async fn kill_before_start() {
    let fx = Fixture::new(&["sleep", "100"], false);
    fx.spawn().await.unwrap();
    let c = ShimClient::new(&fx.state_dir);
    c.kill(libc::SIGKILL).await.unwrap();
    let exit = with_timeout(c.wait()).await.unwrap();
    assert_eq!(exit.exit_code, 137);
    fx.assert_cleaned_up().await;
}

#[tokio::test]
async fn stdin_reaches_the_container() {
    let fx = Fixture::new(&["cat"], true);
    fx.spawn().await.unwrap();
    let c = ShimClient::new(&fx.state_dir);
    let mut att = c.attach(true, true, true).await.unwrap();
    c.start().await.unwrap();
    att.write_all(b"hello\n").await.unwrap();
    att.write_all(b"world\n").await.unwrap();
    // Half-close: with stdin_once, the container's stdin closes and cat exits.
    att.shutdown().await.unwrap();
    let (out, err) = with_timeout(read_frames(&mut att)).await;
    assert_eq!(String::from_utf8_lossy(&out), "hello\nworld\n");
    assert!(err.is_empty());
    assert_eq!(with_timeout(c.wait()).await.unwrap().exit_code, 0);
    fx.assert_cleaned_up().await;
}

#[tokio::test]
async fn missing_executable_is_reported_and_cleaned_up() {
    let fx = Fixture::new(&["no-such-command", "x"], false);
    let err = fx.spawn().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ShimError::Runtime(_)), "{err:?}");
    assert!(
        msg.contains("\"no-such-command\": executable file not found in $PATH"),
        "{msg}"
    );
    assert!(!fx.opts.runtime_root.join(&fx.id).exists());
    assert!(
        fx.leaf_cgroups().is_empty(),
        "cgroups left: {:?}",
        fx.leaf_cgroups()
    );
    assert!(!fx.state_dir.join(CTL_SOCKET).exists());
}

#[tokio::test]
async fn tty_mode_merges_stderr_into_stdout() {
    let mut fx = Fixture::new(&["sh", "-c", "echo a; echo b >&2; echo c"], false);
    fx.opts.tty = true;
    fx.spawn().await.unwrap();
    let c = ShimClient::new(&fx.state_dir);
    let mut att = c.attach(false, true, true).await.unwrap();
    c.start().await.unwrap();
    let (out, err) = with_timeout(read_frames(&mut att)).await;
    assert_eq!(String::from_utf8_lossy(&out), "a\nb\nc\n");
    assert!(err.is_empty());
    assert_eq!(with_timeout(c.wait()).await.unwrap().exit_code, 0);
    let logged = logs::read_all(&fx.opts.log_path, 1).unwrap();
    assert!(logged.iter().all(|e| e.stream == Stream::Stdout));
    assert_eq!(logged.len(), 3);
    fx.assert_cleaned_up().await;
}

#[tokio::test]
async fn missing_bundle_is_an_error() {
    let fx = Fixture::new(&["sh"], false);
    std::fs::remove_file(fx.opts.bundle.join("config.json")).unwrap();
    let err = fx.spawn().await.unwrap_err();
    assert!(matches!(err, ShimError::Runtime(_)), "{err:?}");
    assert!(!fx.opts.runtime_root.join(&fx.id).exists());
}

#[tokio::test]
async fn container_inherits_only_its_stdio() {
    // The ready pipe, the shim's sockets and log files must not leak into the container.
    let fx = Fixture::new(&["ls", "/proc/self/fd"], false);
    fx.spawn().await.unwrap();
    let c = ShimClient::new(&fx.state_dir);
    let mut att = c.attach(false, true, true).await.unwrap();
    c.start().await.unwrap();
    let (out, err) = with_timeout(read_frames(&mut att)).await;
    // 3 is the directory ls itself is reading.
    assert_eq!(
        String::from_utf8_lossy(&out),
        "0\n1\n2\n3\n",
        "stderr: {}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(with_timeout(c.wait()).await.unwrap().exit_code, 0);
    fx.assert_cleaned_up().await;
}
