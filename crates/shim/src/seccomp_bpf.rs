//! A container's seccomp filter compiled once to BPF, for `docker exec`.
//!
//! Compiling the Docker default profile with libseccomp (~400 rules, three architectures) takes
//! ~20 ms of CPU; done in every exec helper it was the largest single cost of `docker exec`. The
//! engine compiles it here once per distinct profile (cached in memory) and the exec helper loads
//! the finished program with `seccomp(SECCOMP_SET_MODE_FILTER)`. The rules are translated exactly
//! as libcontainer's `initialize_seccomp` does, and libseccomp's export is the same program its
//! `seccomp_load` would install; the filter flags are passed alongside.
//!
//! Profiles with `SCMP_ACT_NOTIFY` are not compiled ([`compile`] returns None): they need a
//! listener fd, and keep going through libcontainer.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use serde::{Deserialize, Serialize};

const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
const SECCOMP_FILTER_FLAG_LOG: u32 = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 4;
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// A compiled filter: the BPF program (struct sock_filter array, hex) and the seccomp(2) flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledSeccomp {
    pub bpf_hex: String,
    pub flags: u32,
}

fn translate_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn translate_action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match action {
        LinuxSeccompAction::ScmpActKill => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(
            errno
                .try_into()
                .map_err(|e| format!("seccomp trace errno {errno}: {e}"))?,
        ),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
    })
}

fn translate_op(op: LinuxSeccompOperator, datum_b: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(datum_b.unwrap_or(0)),
    }
}

fn uses_notify(s: &LinuxSeccomp) -> bool {
    s.default_action() == LinuxSeccompAction::ScmpActNotify
        || s.syscalls()
            .iter()
            .flatten()
            .any(|c| c.action() == LinuxSeccompAction::ScmpActNotify)
}

/// Compile `s` as libcontainer would load it. Ok(None): the profile needs a notify listener.
pub fn compile(s: &LinuxSeccomp) -> Result<Option<CompiledSeccomp>, String> {
    if uses_notify(s) {
        return Ok(None);
    }
    let default_action = translate_action(s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default_action).map_err(|e| format!("seccomp: {e}"))?;
    let mut flags = 0u32;
    for flag in s.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
        };
    }
    for &arch in s.architectures().iter().flatten() {
        ctx.add_arch(translate_arch(arch))
            .map_err(|e| format!("seccomp arch {arch:?}: {e}"))?;
    }
    ctx.set_ctl_nnp(false)
        .map_err(|e| format!("seccomp nnp: {e}"))?;
    for syscall in s.syscalls().iter().flatten() {
        let action = translate_action(syscall.action(), syscall.errno_ret())?;
        if action == default_action {
            continue;
        }
        for name in syscall.names() {
            // Unknown to this libseccomp/kernel: skipped, as libcontainer does.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let add_err = |e: libseccomp::error::SeccompError| format!("seccomp rule {name}: {e}");
            match syscall.args() {
                Some(args) => {
                    let cmps: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|a| {
                            ScmpArgCompare::new(
                                a.index() as u32,
                                translate_op(a.op(), a.value_two()),
                                a.value(),
                            )
                        })
                        .collect();
                    let mut seen = std::collections::HashSet::new();
                    let dup = args.iter().any(|a| !seen.insert(a.index()));
                    if dup {
                        for c in &cmps {
                            ctx.add_rule_conditional(action, sc, std::slice::from_ref(c))
                                .map_err(add_err)?;
                        }
                    } else {
                        ctx.add_rule_conditional(action, sc, &cmps)
                            .map_err(add_err)?;
                    }
                }
                None => {
                    ctx.add_rule(action, sc).map_err(add_err)?;
                }
            }
        }
    }
    let bpf = export(&ctx)?;
    if bpf.is_empty() || !bpf.len().is_multiple_of(8) {
        return Err(format!("seccomp: exported program of {} bytes", bpf.len()));
    }
    Ok(Some(CompiledSeccomp {
        bpf_hex: to_hex(&bpf),
        flags,
    }))
}

fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, String> {
    // SAFETY: memfd_create with a static name; the fd is owned below.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just created and is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    ctx.export_bpf(&fd)
        .map_err(|e| format!("seccomp export: {e}"))?;
    let mut f = std::fs::File::from(fd);
    f.rewind().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    f.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// [`compile`], memoized per profile for the life of the process (a handful of profiles at most:
/// the default, `unconfined` needs none, and custom `--security-opt seccomp=` files).
pub fn compile_cached(s: &LinuxSeccomp) -> Result<Option<Arc<CompiledSeccomp>>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<CompiledSeccomp>>>>> = OnceLock::new();
    let key = serde_json::to_string(s).map_err(|e| e.to_string())?;
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(hit.clone());
    }
    let compiled = compile(s)?.map(Arc::new);
    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
    if c.len() >= 32 {
        c.clear();
    }
    c.insert(key, compiled.clone());
    Ok(compiled)
}

/// Install the compiled filter on the calling thread (no_new_privs or CAP_SYS_ADMIN required).
pub fn load(c: &CompiledSeccomp) -> std::io::Result<()> {
    install(&program(c)?, c.flags)
}

fn program(c: &CompiledSeccomp) -> std::io::Result<Vec<libc::sock_filter>> {
    let bpf = from_hex(&c.bpf_hex).ok_or_else(|| std::io::Error::other("bad seccomp program"))?;
    if bpf.is_empty() || !bpf.len().is_multiple_of(8) || bpf.len() / 8 > u16::MAX as usize {
        return Err(std::io::Error::other("bad seccomp program length"));
    }
    Ok(bpf
        .chunks_exact(8)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect())
}

/// seccomp(SECCOMP_SET_MODE_FILTER): no allocation, safe after fork.
fn install(filters: &[libc::sock_filter], flags: u32) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: filters.len() as u16,
        filter: filters.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at `filters`, alive for the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn to_hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let v = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| Some(v(p[0])? << 4 | v(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompBuilder, LinuxSyscallBuilder};

    fn profile(action: LinuxSeccompAction) -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .architectures(vec![Arch::ScmpArchNative])
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(vec!["getpid".to_string()])
                .action(action)
                .build()
                .unwrap()])
            .build()
            .unwrap()
    }

    #[test]
    fn hex_round_trip() {
        let b: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&b)).unwrap(), b);
        assert!(from_hex("abc").is_none());
        assert!(from_hex("zz").is_none());
    }

    #[test]
    fn compiles_and_caches_and_skips_notify() {
        let c = compile(&profile(LinuxSeccompAction::ScmpActErrno))
            .unwrap()
            .unwrap();
        assert!(!c.bpf_hex.is_empty() && c.bpf_hex.len().is_multiple_of(16));
        let a = compile_cached(&profile(LinuxSeccompAction::ScmpActErrno)).unwrap();
        assert_eq!(a.as_deref(), Some(&c));
        assert!(compile(&profile(LinuxSeccompAction::ScmpActNotify))
            .unwrap()
            .is_none());
    }

    #[test]
    fn loaded_program_enforces_rules() {
        let c = compile(&profile(LinuxSeccompAction::ScmpActErrno))
            .unwrap()
            .unwrap();
        let prog = program(&c).unwrap();
        // In a child: no_new_privs, install, and getpid must fail with EPERM (raw syscall, -1).
        // SAFETY: the child only makes raw syscalls (no allocation) and exits.
        match unsafe { libc::fork() } {
            0 => unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                if install(&prog, c.flags).is_err() {
                    libc::_exit(2);
                }
                let r = libc::syscall(libc::SYS_getpid);
                libc::_exit(if r == -1 && *libc::__errno_location() == libc::EPERM {
                    0
                } else {
                    1
                });
            },
            pid if pid > 0 => {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                assert!(libc::WIFEXITED(st));
                assert_eq!(libc::WEXITSTATUS(st), 0);
            }
            _ => panic!("fork failed"),
        }
    }
}
