//! Running an nft script as one transaction.
//!
//! Preferred: libnftables (the library behind the `nft` binary, Debian's `libnftables1`, a
//! dependency of `nftables`), loaded at run time with `dlopen` (no build-time dependency) and
//! one context kept for the life of the process. The point is speed: the `nft` binary costs
//! 15-30 ms per run on a loaded host, most of it in `close()` of its netlink socket, which waits
//! for an RCU grace period once a transaction destroyed rules; a kept-open context applies the
//! same script in ~0.7 ms. Fallback: `nft -f -` when the library cannot be loaded (or when
//! `BERTH_NFT_BINARY=1`).
//!
//! The library context's netlink socket belongs to the network namespace of the thread that
//! first used it: the engine only ever uses it from the host namespace.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::{NetError, Result};

type RunFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type GetBufFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;

struct Lib {
    ctx: *mut c_void,
    run: RunFn,
    error_buffer: GetBufFn,
    output_buffer: GetBufFn,
}

// The context is only used under the mutex below.
unsafe impl Send for Lib {}

/// None: not tried yet; Some(None): not available (use the binary).
static LIB: Mutex<Option<Option<Lib>>> = Mutex::new(None);

/// Which backend runs scripts: "libnftables" or "nft".
pub fn backend() -> &'static str {
    let mut lib = LIB.lock().unwrap_or_else(|e| e.into_inner());
    match lib.get_or_insert_with(load) {
        Some(_) => "libnftables",
        None => "nft",
    }
}

/// Run `script` as one transaction.
pub fn run(script: &str) -> Result<()> {
    let script_c = CString::new(script)
        .map_err(|_| NetError::Firewall("NUL byte in nft script".to_string()))?;
    let mut guard = LIB.lock().unwrap_or_else(|e| e.into_inner());
    match guard.get_or_insert_with(load) {
        Some(lib) => {
            // SAFETY: ctx comes from nft_ctx_new and is used by one thread at a time (mutex);
            // the buffers returned are owned by the context and copied before the next call.
            unsafe {
                let rc = (lib.run)(lib.ctx, script_c.as_ptr());
                let err = cstr((lib.error_buffer)(lib.ctx));
                let _ = (lib.output_buffer)(lib.ctx); // drain
                if rc == 0 {
                    Ok(())
                } else {
                    Err(NetError::Firewall(format!("nft: {}", err.trim())))
                }
            }
        }
        None => {
            drop(guard);
            run_binary(script)
        }
    }
}

/// `nft -f -` (the fallback; public for tests and benchmarks).
pub fn run_binary(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Firewall(format!("running nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Firewall(format!(
            "nft -f failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The descriptors of this process that are sockets.
fn socket_fds() -> std::collections::HashSet<c_int> {
    let mut out = std::collections::HashSet::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for e in dir.flatten() {
            let is_socket = std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
            if let (true, Some(fd)) = (
                is_socket,
                e.file_name().to_str().and_then(|n| n.parse().ok()),
            ) {
                out.insert(fd);
            }
        }
    }
    out
}

unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

fn load() -> Option<Lib> {
    if std::env::var_os("BERTH_NFT_BINARY").is_some_and(|v| v == "1") {
        return None;
    }
    // SAFETY: plain dlopen/dlsym of libnftables' documented C API (libnftables(3)); the symbols
    // are cast to their documented signatures.
    unsafe {
        let name = c"libnftables.so.1";
        let h = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if h.is_null() {
            tracing::info!("libnftables not available, using the nft binary");
            return None;
        }
        let sym = |n: &CStr| {
            let p = libc::dlsym(h, n.as_ptr());
            (!p.is_null()).then_some(p)
        };
        let (Some(new), Some(buf_out), Some(buf_err), Some(run), Some(get_err), Some(get_out)) = (
            sym(c"nft_ctx_new"),
            sym(c"nft_ctx_buffer_output"),
            sym(c"nft_ctx_buffer_error"),
            sym(c"nft_run_cmd_from_buffer"),
            sym(c"nft_ctx_get_error_buffer"),
            sym(c"nft_ctx_get_output_buffer"),
        ) else {
            tracing::info!("libnftables lacks a symbol, using the nft binary");
            return None;
        };
        let new: unsafe extern "C" fn(u32) -> *mut c_void = std::mem::transmute(new);
        let buf_out: unsafe extern "C" fn(*mut c_void) -> c_int = std::mem::transmute(buf_out);
        let buf_err: unsafe extern "C" fn(*mut c_void) -> c_int = std::mem::transmute(buf_err);
        let before = socket_fds();
        let ctx = new(0); // NFT_CTX_DEFAULT
        if ctx.is_null() {
            return None;
        }
        // libmnl opens the netlink socket without SOCK_CLOEXEC: keep it out of the processes
        // the engine spawns (shims, containers). Sockets another thread opened meanwhile get
        // the flag too, which is harmless (std opens everything close-on-exec).
        for fd in socket_fds().difference(&before) {
            let flags = libc::fcntl(*fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(*fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
        if buf_out(ctx) != 0 || buf_err(ctx) != 0 {
            return None;
        }
        Some(Lib {
            ctx,
            run: std::mem::transmute::<*mut c_void, RunFn>(run),
            error_buffer: std::mem::transmute::<*mut c_void, GetBufFn>(get_err),
            output_buffer: std::mem::transmute::<*mut c_void, GetBufFn>(get_out),
        })
    }
}
