//! Seccomp profiles in Docker's JSON format → OCI `LinuxSeccomp`.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSyscall,
};
use serde::Deserialize;

use crate::{Result, RuntimeError};

/// Docker's default profile, embedded (assets/seccomp-default.json).
pub const DEFAULT_PROFILE: &str = include_str!("../assets/seccomp-default.json");

/// Go's name for this architecture (what `arches` in includes/excludes refer to).
const GO_ARCH: &str = "amd64";
/// libseccomp's name for it (the `archMap` key).
const NATIVE_ARCH: &str = "SCMP_ARCH_X86_64";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<Syscall>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    /// Legacy single-name form.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

fn arch_matches(arches: &[String]) -> bool {
    arches
        .iter()
        .any(|a| a == GO_ARCH || a.eq_ignore_ascii_case("x86_64"))
}

/// "major.minor" → (major, minor); Docker accepts only that form.
fn parse_kernel(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().splitn(3, |c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn running_kernel() -> Result<(u32, u32)> {
    let uts = nix::sys::utsname::uname().map_err(|e| RuntimeError::Io {
        context: "uname".into(),
        source: e.into(),
    })?;
    let release = uts.release().to_string_lossy().into_owned();
    parse_kernel(&release)
        .ok_or_else(|| RuntimeError::Seccomp(format!("cannot parse kernel version {release:?}")))
}

fn kernel_at_least(min: &str, running: (u32, u32)) -> Result<bool> {
    let want = parse_kernel(min)
        .ok_or_else(|| RuntimeError::Seccomp(format!("invalid minKernel {min:?}")))?;
    Ok(running >= want)
}

fn parse_arch(name: &str) -> Result<Arch> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| RuntimeError::Seccomp(format!("unknown architecture {name:?}")))
}

/// Whether a rule applies given the caps, this architecture and the running kernel.
fn rule_applies(call: &Syscall, caps: &[String], kernel: (u32, u32)) -> Result<bool> {
    if let Some(ex) = &call.excludes {
        if ex.arches.as_deref().is_some_and(arch_matches) {
            return Ok(false);
        }
        if let Some(c) = &ex.caps {
            if c.iter().any(|c| caps.contains(c)) {
                return Ok(false);
            }
        }
        if let Some(k) = &ex.min_kernel {
            if kernel_at_least(k, kernel)? {
                return Ok(false);
            }
        }
    }
    if let Some(inc) = &call.includes {
        if let Some(a) = &inc.arches {
            if !a.is_empty() && !arch_matches(a) {
                return Ok(false);
            }
        }
        if let Some(c) = &inc.caps {
            if !c.iter().all(|c| caps.contains(c)) {
                return Ok(false);
            }
        }
        if let Some(k) = &inc.min_kernel {
            if !kernel_at_least(k, kernel)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Convert a Docker-format profile to the OCI section for this host's architecture, keeping the
/// rules whose `includes`/`excludes` (caps, arches, minKernel) match `caps` (effective capability
/// names `CAP_*`). Errors name the problem (bad JSON, unknown action).
pub fn from_docker_profile(json: &str, caps: &[String]) -> Result<LinuxSeccomp> {
    from_docker_profile_for_kernel(json, caps, running_kernel()?)
}

fn from_docker_profile_for_kernel(
    json: &str,
    caps: &[String],
    kernel: (u32, u32),
) -> Result<LinuxSeccomp> {
    let profile: Profile = serde_json::from_str(json)
        .map_err(|e| RuntimeError::Seccomp(format!("decoding seccomp profile failed: {e}")))?;

    let explicit = profile.architectures.clone().unwrap_or_default();
    let arch_map = profile.arch_map.unwrap_or_default();
    if !explicit.is_empty() && !arch_map.is_empty() {
        return Err(RuntimeError::Seccomp(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'".into(),
        ));
    }
    let mut arches = Vec::new();
    for a in &explicit {
        arches.push(parse_arch(a)?);
    }
    for entry in arch_map.iter().filter(|e| e.architecture == NATIVE_ARCH) {
        arches.push(parse_arch(&entry.architecture)?);
        for sub in entry.sub_architectures.iter().flatten() {
            arches.push(parse_arch(sub)?);
        }
    }

    let mut syscalls = Vec::new();
    for call in profile.syscalls.unwrap_or_default() {
        let mut names = call.names.clone().unwrap_or_default();
        if let Some(n) = &call.name {
            if !names.is_empty() {
                return Err(RuntimeError::Seccomp("use either 'name' or 'names'".into()));
            }
            names.push(n.clone());
        }
        if !rule_applies(&call, caps, kernel)? {
            continue;
        }
        let mut rule = LinuxSyscall::default();
        rule.set_names(names);
        rule.set_action(call.action);
        rule.set_errno_ret(call.errno_ret);
        rule.set_args(call.args.filter(|a| !a.is_empty()));
        syscalls.push(rule);
    }

    let mut out = LinuxSeccomp::default();
    out.set_default_action(profile.default_action);
    out.set_default_errno_ret(profile.default_errno_ret);
    out.set_architectures((!arches.is_empty()).then_some(arches));
    out.set_flags(profile.flags.filter(|f| !f.is_empty()));
    out.set_listener_path(profile.listener_path.map(Into::into));
    out.set_listener_metadata(profile.listener_metadata);
    out.set_syscalls(Some(syscalls));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccompOperator;

    fn default_caps() -> Vec<String> {
        crate::caps::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        s.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|r| r.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn default_profile_with_default_caps() {
        let s = from_docker_profile(DEFAULT_PROFILE, &default_caps()).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        // clone: only the masked rule (no CAP_SYS_ADMIN), not the s390 one.
        let clone = rules_for(&s, "clone");
        assert_eq!(clone.len(), 1);
        let args = clone[0].args().as_ref().unwrap();
        assert_eq!(args[0].index(), 0);
        assert_eq!(args[0].value(), 2114060288);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        // clone3 returns ENOSYS so that libcs fall back to clone.
        let clone3 = rules_for(&s, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
        // arch-specific and cap-gated rules.
        assert_eq!(rules_for(&s, "arch_prctl").len(), 1);
        assert!(rules_for(&s, "s390_runtime_instr").is_empty());
        assert!(rules_for(&s, "mount").is_empty());
        assert!(rules_for(&s, "reboot").is_empty());
        assert_eq!(rules_for(&s, "chroot").len(), 1);
        // minKernel 4.8 rule (ptrace) is kept on this kernel.
        assert_eq!(rules_for(&s, "ptrace").len(), 1);
        assert!(rules_for(&s, "read").len() == 1);
    }

    #[test]
    fn sys_admin_changes_clone_rules() {
        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".into());
        let s = from_docker_profile(DEFAULT_PROFILE, &caps).unwrap();
        let clone = rules_for(&s, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].args().is_none());
        let clone3 = rules_for(&s, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(rules_for(&s, "mount").len(), 1);
    }

    #[test]
    fn min_kernel_filters() {
        let json = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"5.10"}},
            {"names":["b"],"action":"SCMP_ACT_ALLOW","excludes":{"minKernel":"5.10"}},
            {"name":"c","action":"SCMP_ACT_LOG","includes":{"arches":["arm64"]}}]}"#;
        let old = from_docker_profile_for_kernel(json, &[], (4, 19)).unwrap();
        let names: Vec<_> = old
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| r.names()[0].clone())
            .collect();
        assert_eq!(names, vec!["b"]);
        let new = from_docker_profile_for_kernel(json, &[], (6, 1)).unwrap();
        let names: Vec<_> = new
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| r.names()[0].clone())
            .collect();
        assert_eq!(names, vec!["a"]);
        assert!(new.architectures().is_none());
    }

    #[test]
    fn errors_are_named() {
        let e = from_docker_profile("{", &[]).unwrap_err().to_string();
        assert!(e.contains("decoding seccomp profile failed"), "{e}");
        let e = from_docker_profile(r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("SCMP_ACT_BOGUS"), "{e}");
        let e = from_docker_profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("archMap"), "{e}");
    }

    #[test]
    fn kernel_version_parsing() {
        assert_eq!(parse_kernel("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("5"), Some((5, 0)));
        assert_eq!(parse_kernel("x"), None);
    }

    /// libcontainer (libseccomp) must accept the converted default profile: load it in a child.
    #[test]
    fn libcontainer_loads_default_profile() {
        let s = from_docker_profile(DEFAULT_PROFILE, &default_caps()).unwrap();
        // SAFETY: the child only calls async-signal-tolerant code paths before _exit; it is a
        // test process and libseccomp allocates, which is acceptable here.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = unsafe {
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        2
                    } else if libcontainer::seccomp::initialize_seccomp(&s).is_err() {
                        3
                    } else if libc::syscall(libc::SYS_reboot, 0, 0, 0, 0) == -1
                        && *libc::__errno_location() == libc::EPERM
                    {
                        // reboot is denied with EPERM by the filter (default action).
                        0
                    } else {
                        4
                    }
                };
                unsafe { libc::_exit(code) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
