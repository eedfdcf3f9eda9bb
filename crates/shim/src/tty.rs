//! Pseudo-terminals from libcontainer's console socket: the container's init (or an exec'd
//! process) creates the pty inside the container and sends the master over a unix socket that we
//! listen on; we pump the master like a pipe and resize it with TIOCSWINSZ.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The console socket's file name in a shim state dir.
pub const CONSOLE_SOCKET: &str = "console.sock";

/// Listen on `dir/name` (bound through the short `/proc/self/fd` path, so any dir length works).
/// Returns the listener and the real path to give libcontainer.
pub fn bind_console(dir: &Path, name: &str) -> std::io::Result<(UnixListener, PathBuf)> {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let (_dir, short) = crate::proto::short_socket_path(dir, name)?;
    let l = UnixListener::bind(short)?;
    Ok((l, path))
}

/// Accept libcontainer's connection and take the pty master it sends (SCM_RIGHTS), waiting at most
/// `timeout` for the connection.
pub fn receive_master(l: &UnixListener, timeout: Duration) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let ms = timeout.as_millis().min(u16::MAX as u128) as u16;
    let mut fds = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::from(ms)).map_err(std::io::Error::from)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no console connection",
        ));
    }
    let (conn, _) = l.accept()?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just gave us this fd.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other("no pty master received"))
}

/// TIOCSWINSZ on a pty master (or slave).
pub fn resize(fd: RawFd, height: u16, width: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ioctl with a valid winsize pointer.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
