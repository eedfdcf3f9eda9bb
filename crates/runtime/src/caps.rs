//! Capabilities: Docker's default set and `--cap-add/--cap-drop` (names with or without `CAP_`,
//! any case, and `ALL`).

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability};

use crate::{Result, RuntimeError};

/// Docker's default capabilities (moby's `DefaultCapabilities`), as `CAP_*` names.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Capability names indexed by their number (linux/capability.h), up to CAP_CHECKPOINT_RESTORE.
const CAP_TABLE: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Number of the last capability the running kernel knows, capped to our table.
fn last_cap() -> usize {
    let max = CAP_TABLE.len() - 1;
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map_or(max, |n| n.min(max))
}

/// This process's bounding set (`CapBnd` in /proc/self/status), if readable.
fn bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Every capability the kernel knows (for `--privileged` and `--cap-add ALL`), limited to the
/// engine's own bounding set: a container cannot get a capability its runtime lacks (capset
/// would fail), e.g. when berth itself runs in a container without CAP_SYS_RESOURCE.
pub fn all_caps() -> Vec<String> {
    let bounding = bounding_set().unwrap_or(u64::MAX);
    CAP_TABLE[..=last_cap()]
        .iter()
        .enumerate()
        .filter(|(i, _)| bounding & (1u64 << i) != 0)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The bit number of a `CAP_*` name.
pub fn cap_number(name: &str) -> Option<usize> {
    CAP_TABLE.iter().position(|c| *c == name)
}

/// `CAP_`-prefixed upper-case name, or an error for a capability we do not know.
fn normalize(name: &str) -> Result<String> {
    let upper = name.trim().to_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if CAP_TABLE.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(RuntimeError::InvalidArgument(format!(
            "unknown capability: \"{full}\""
        )))
    }
}

/// Normalized names plus whether `ALL` was among them.
fn normalize_list(names: &[String]) -> Result<(Vec<String>, bool)> {
    let mut out = Vec::new();
    let mut all = false;
    for n in names {
        if n.trim().eq_ignore_ascii_case("ALL") {
            all = true;
            continue;
        }
        out.push(normalize(n)?);
    }
    Ok((out, all))
}

fn push_unique(v: &mut Vec<String>, c: String) {
    if !v.contains(&c) {
        v.push(c);
    }
}

/// The effective set for a container: start from the defaults (or all, when privileged),
/// apply `add` then `drop` as Docker does (`ALL` allowed in either). Unknown names are an
/// `InvalidArgument` error with Docker's message ("unknown capability: \"CAP_FOO\"").
pub fn effective(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<String>> {
    // Docker validates names even when privileged overrides them.
    let (drops, drop_all) = normalize_list(drop)?;
    let (adds, add_all) = normalize_list(add)?;
    if privileged {
        return Ok(all_caps());
    }
    let mut caps = Vec::new();
    if add_all {
        for c in all_caps() {
            if !drops.contains(&c) {
                push_unique(&mut caps, c);
            }
        }
    } else if drop_all {
        for c in adds {
            push_unique(&mut caps, c);
        }
    } else {
        for c in DEFAULT_CAPS {
            if !drops.iter().any(|d| d == c) {
                push_unique(&mut caps, c.to_string());
            }
        }
        for c in adds {
            push_unique(&mut caps, c);
        }
    }
    Ok(caps)
}

/// `CAP_*` names → the oci-spec set.
pub fn to_oci(names: &[String]) -> Result<Capabilities> {
    names
        .iter()
        .map(|n| {
            let short = n.strip_prefix("CAP_").unwrap_or(n);
            Capability::from_str(short)
                .map_err(|_| RuntimeError::InvalidArgument(format!("unknown capability: \"{n}\"")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn defaults_without_changes() {
        let caps = effective(false, &[], &[]).unwrap();
        assert_eq!(caps, s(DEFAULT_CAPS));
    }

    #[test]
    fn add_and_drop_normalize_names() {
        let caps = effective(false, &s(&["net_admin", "CAP_SYS_ADMIN"]), &s(&["chown"])).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps.len(), DEFAULT_CAPS.len() + 1);
    }

    #[test]
    fn drop_all_then_add() {
        let caps = effective(false, &s(&["kill"]), &s(&["all"])).unwrap();
        assert_eq!(caps, s(&["CAP_KILL"]));
        assert!(effective(false, &[], &s(&["ALL"])).unwrap().is_empty());
    }

    #[test]
    fn add_all_minus_drop() {
        let caps = effective(false, &s(&["ALL"]), &s(&["SYS_ADMIN"])).unwrap();
        assert_eq!(caps.len(), all_caps().len() - 1);
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn privileged_gets_all() {
        let caps = effective(true, &[], &s(&["chown"])).unwrap();
        assert_eq!(caps, all_caps());
        assert!(caps.contains(&"CAP_CHOWN".to_string()));
    }

    #[test]
    fn unknown_capability_message() {
        let err = effective(false, &s(&["foo"]), &[]).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability: \"CAP_FOO\"");
        assert!(effective(false, &[], &s(&["CAP_BAR"])).is_err());
    }

    #[test]
    fn all_caps_follows_kernel_and_converts() {
        let n: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let bnd = bounding_set().unwrap();
        let expected = (0..=n.min(CAP_TABLE.len() - 1))
            .filter(|i| bnd & (1u64 << i) != 0)
            .count();
        assert_eq!(all_caps().len(), expected);
        assert_eq!(cap_number("CAP_CHECKPOINT_RESTORE"), Some(40));
        // Every name in the table maps to an oci-spec capability.
        let table = s(CAP_TABLE);
        assert_eq!(to_oci(&table).unwrap().len(), CAP_TABLE.len());
    }
}
