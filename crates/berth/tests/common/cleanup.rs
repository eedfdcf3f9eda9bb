//! Cleanup helpers of the test harness (they never panic): kill shims and containers, remove
//! cgroups, unmount what is left below a test's dirs.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn sigkill(pid: i32) {
    if pid > 1 {
        // SAFETY: kill(2) with a pid read from a file we own; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// SIGKILL every container init (`shims/*/pid`) and shim (`shims/*/shim.pid`).
pub fn kill_shims(shims: &Path) {
    let Ok(dirs) = fs::read_dir(shims) else {
        return;
    };
    for d in dirs.flatten() {
        for name in ["pid", "shim.pid"] {
            if let Ok(s) = fs::read_to_string(d.path().join(name)) {
                if let Ok(pid) = s.trim().parse::<i32>() {
                    sigkill(pid);
                }
            }
        }
    }
}

/// Every `<hierarchy>/<parent>` dir that exists under /sys/fs/cgroup (v1 controllers, the unified
/// hierarchy, or a pure v2 mount), without duplicates of co-mounted controllers.
fn cgroup_roots(parent: &str) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut candidates = vec![Path::new("/sys/fs/cgroup").join(parent)];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            candidates.push(e.path().join(parent));
        }
    }
    for c in candidates {
        if let Ok(real) = fs::canonicalize(&c) {
            if real.is_dir() && seen.insert(real.clone()) {
                out.push(real);
            }
        }
    }
    out
}

/// All cgroup dirs at and below `root`, parents before children.
fn cgroup_tree(root: &Path, out: &mut Vec<PathBuf>) {
    out.push(root.to_path_buf());
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                cgroup_tree(&e.path(), out);
            }
        }
    }
}

fn cgroup_pids(dirs: &[PathBuf]) -> Vec<i32> {
    let mut pids = Vec::new();
    for d in dirs {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids
}

/// Kill every process in the test's cgroups, wait until they are empty, remove them deepest first.
pub fn cleanup_cgroups(parent: &str) {
    let mut dirs = Vec::new();
    for root in cgroup_roots(parent) {
        cgroup_tree(&root, &mut dirs);
    }
    if dirs.is_empty() {
        return;
    }
    // Thaw frozen cgroups (docker pause) so SIGKILL can be delivered.
    for d in &dirs {
        let _ = fs::write(d.join("freezer.state"), "THAWED");
        let _ = fs::write(d.join("cgroup.freeze"), "0");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = cgroup_pids(&dirs);
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("[berth test] processes still in cgroups of {parent}: {pids:?}");
            break;
        }
        pids.into_iter().for_each(sigkill);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Deepest first; a cgroup may stay busy for a moment after its last process died.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in &dirs {
        let deadline = Instant::now() + Duration::from_secs(2);
        while d.exists() {
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    eprintln!("[berth test] cannot remove cgroup {}: {e}", d.display());
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// Decode mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Mount points at or below `base`, deepest first.
pub fn mounts_below(base: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(m))))
        .filter(|p| p.starts_with(base))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    out
}

/// Lazily unmount everything below `base` (repeat: stacked mounts show up one layer at a time).
pub fn unmount_below(base: &Path) {
    for _ in 0..10 {
        let mounts = mounts_below(base);
        if mounts.is_empty() {
            return;
        }
        for m in mounts {
            let Ok(c) = CString::new(m.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: c is a valid NUL-terminated path for the duration of the call.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
    eprintln!("[berth test] mounts left below {}", base.display());
}
