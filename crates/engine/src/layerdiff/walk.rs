//! Reading an overlay upper directory (or any tree) into an in-memory list of what changed,
//! without following a single symlink: directories are opened with `O_NOFOLLOW` relative to
//! their parent's descriptor, everything else is only `lstat`ed here.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// What one entry of the walked tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory; `opaque` when the overlay marks it so (its lower contents are hidden).
    Dir {
        opaque: bool,
    },
    File,
    Symlink,
    Fifo,
    /// An overlay whiteout (0/0 character device): the name is deleted.
    Whiteout,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub name: CString,
    pub st: libc::stat,
    pub kind: Kind,
    /// Present in the merged lower layers (only computed when lowers were given).
    pub in_lower: bool,
    pub children: Vec<Node>,
}

/// How the tree is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// An overlay upper dir: whiteouts and opaque dirs are recognised, the runtime's mount points
    /// are left out (and directories that only held them).
    Upper,
    /// A plain tree (a merged root filesystem): everything as it is.
    Plain,
}

pub(crate) fn io_err(ctx: impl Into<String>, e: io::Error) -> crate::EngineError {
    crate::EngineError::Internal(format!("{}: {e}", ctx.into()))
}

pub(crate) fn sys_openat(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: valid C string; the returned fd is ours.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd, C string and out pointer.
    let rc = unsafe {
        libc::fstatat(
            dir,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: filled by fstatat.
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn open_dir_path(p: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    sys_openat(libc::AT_FDCWD, &c, libc::O_RDONLY | libc::O_DIRECTORY)
}

/// Names in a directory, sorted bytewise, without `.` and `..`.
pub(crate) fn list_dir(d: &OwnedFd) -> io::Result<Vec<CString>> {
    let dup = sys_openat(d.as_raw_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY)?;
    let mut dir = nix::dir::Dir::from_fd(dup.into_raw_fd()).map_err(io::Error::from)?;
    let mut out = Vec::new();
    for ent in dir.iter() {
        let ent = ent.map_err(io::Error::from)?;
        let n = ent.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            out.push(n.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn getxattr(fd: RawFd, name: &CStr) -> Option<Vec<u8>> {
    let mut buf = [0u8; 8];
    // SAFETY: valid fd, C string and buffer.
    let n = unsafe { libc::fgetxattr(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// Overlayfs marks a directory opaque with `trusted.overlay.opaque=y` (or the `user.` variant
/// when mounted with `userxattr`).
pub(crate) fn is_opaque(fd: &OwnedFd) -> bool {
    [c"trusted.overlay.opaque", c"user.overlay.opaque"]
        .iter()
        .any(|n| getxattr(fd.as_raw_fd(), n).as_deref() == Some(b"y"))
}

fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// The merged view of the lower layers at one directory: the directories (top first) whose
/// entries show through at this level.
struct Lowers(Vec<OwnedFd>);

impl Lowers {
    /// Look `name` up as overlayfs does: the top-most layer with an entry decides; a whiteout
    /// hides it; directories merge down until a non-directory or an opaque directory.
    fn lookup(&self, name: &CStr) -> (bool, Lowers) {
        let mut found = false;
        let mut dirs = Vec::new();
        for l in &self.0 {
            let Ok(st) = lstat_at(l.as_raw_fd(), name) else {
                continue;
            };
            if is_whiteout(&st) {
                break;
            }
            found = true;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                break;
            }
            let Ok(d) = sys_openat(
                l.as_raw_fd(),
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            ) else {
                break;
            };
            let opaque = is_opaque(&d);
            dirs.push(d);
            if opaque {
                break;
            }
        }
        (found, Lowers(dirs))
    }
}

/// Deepest directory nesting walked: the walk (and the tar writer) recurse once per level, and a
/// container can nest directories without limit; deeper trees are refused, never a stack overflow.
pub(crate) const MAX_DEPTH: usize = 512;

pub(crate) struct Walker<'a> {
    mode: Mode,
    /// Paths (relative, no leading `/`) left out in `Mode::Upper`.
    hidden: HashSet<&'a [u8]>,
}

impl<'a> Walker<'a> {
    pub fn new(mode: Mode, hidden: &'a [&'a str]) -> Self {
        Walker {
            mode,
            hidden: hidden
                .iter()
                .map(|h| h.trim_start_matches('/').as_bytes())
                .collect(),
        }
    }

    /// Read the tree under `root`; `lowers` (top first) only decide `Node::in_lower`.
    pub fn collect(
        &self,
        root: &std::path::Path,
        lowers: &[std::path::PathBuf],
    ) -> crate::Result<Vec<Node>> {
        let d = open_dir_path(root).map_err(|e| io_err(format!("open {root:?}"), e))?;
        let mut l = Vec::new();
        for p in lowers {
            l.push(open_dir_path(p).map_err(|e| io_err(format!("open {p:?}"), e))?);
        }
        let lowers = Lowers(l);
        Ok(self.dir(&d, b"", &lowers, 0)?.0)
    }

    /// The entries of `d` (whose path is `prefix`), and whether some were left out as hidden.
    fn dir(
        &self,
        d: &OwnedFd,
        prefix: &[u8],
        lowers: &Lowers,
        depth: usize,
    ) -> crate::Result<(Vec<Node>, bool)> {
        if depth > MAX_DEPTH {
            return Err(crate::EngineError::InvalidArgument(format!(
                "directory tree deeper than {MAX_DEPTH} levels at /{}",
                String::from_utf8_lossy(&prefix[..prefix.len().min(200)])
            )));
        }
        let shown = || String::from_utf8_lossy(prefix).into_owned();
        let names = list_dir(d).map_err(|e| io_err(format!("read dir /{}", shown()), e))?;
        let mut out = Vec::with_capacity(names.len());
        let mut had_hidden = false;
        for name in names {
            let mut path = prefix.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name.to_bytes());
            if self.mode == Mode::Upper && self.hidden.contains(&path[..]) {
                had_hidden = true;
                continue;
            }
            let st = match lstat_at(d.as_raw_fd(), &name) {
                Ok(st) => st,
                // Gone while we walk (a container that was not paused): as tar does, skip.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => {
                    return Err(io_err(
                        format!("lstat /{}", String::from_utf8_lossy(&path)),
                        e,
                    ))
                }
            };
            let (in_lower, sub_lowers) = lowers.lookup(&name);
            let kind = match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => Kind::Dir { opaque: false },
                libc::S_IFREG => Kind::File,
                libc::S_IFLNK => Kind::Symlink,
                libc::S_IFIFO => Kind::Fifo,
                libc::S_IFCHR if self.mode == Mode::Upper && is_whiteout(&st) => {
                    // A whiteout of something no lower has is a no-op; Docker keeps it too.
                    Kind::Whiteout
                }
                // Device nodes and sockets are not archived (berth never creates device
                // nodes from images; /dev comes from the runtime).
                _ => continue,
            };
            let mut node = Node {
                name: name.clone(),
                st,
                kind,
                in_lower,
                children: Vec::new(),
            };
            if let Kind::Dir { .. } = node.kind {
                let cd = match sys_openat(
                    d.as_raw_fd(),
                    &name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                ) {
                    Ok(cd) => cd,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                        continue
                    }
                    Err(e) => {
                        return Err(io_err(
                            format!("open /{}", String::from_utf8_lossy(&path)),
                            e,
                        ))
                    }
                };
                let opaque = self.mode == Mode::Upper && is_opaque(&cd);
                let below = if opaque {
                    Lowers(Vec::new())
                } else {
                    sub_lowers
                };
                let (children, hidden_below) = self.dir(&cd, &path, &below, depth + 1)?;
                if self.mode == Mode::Upper && children.is_empty() && hidden_below && !opaque {
                    // Only there for the runtime's mount points: not a change.
                    had_hidden = true;
                    continue;
                }
                node.kind = Kind::Dir { opaque };
                node.children = children;
            }
            out.push(node);
        }
        Ok((out, had_hidden))
    }
}

/// Flatten a tree into `(path, node)` in tar order (parents first, names sorted).
pub(crate) fn flatten<'n>(nodes: &'n [Node], prefix: &[u8], out: &mut Vec<(Vec<u8>, &'n Node)>) {
    for n in nodes {
        let mut p = prefix.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(n.name.to_bytes());
        out.push((p.clone(), n));
        flatten(&n.children, &p, out);
    }
}
