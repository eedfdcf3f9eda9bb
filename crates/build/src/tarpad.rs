//! A reader for build-context tars as the docker CLI sends them.
//!
//! With `-f <file outside the context>` or `-f -`, docker's CLI rewrites the context tar to add
//! the Dockerfile (`.dockerfile.<hex>`) and closes its pipe before the tar writer's `Close`: the
//! stream ends right after the last entry's data, with no padding to 512 bytes and no
//! end-of-archive blocks. dockerd accepts it (Go's tar reader takes EOF while skipping the
//! padding as the end of the archive); a strict reader fails with "unexpected EOF". This
//! adapter completes such a stream: at the inner EOF it adds the missing padding and two zero
//! blocks. Zeros after a complete archive are harmless (readers stop at the first zero block).

use std::io::{self, Read};

pub struct CompleteTarTail<R> {
    inner: R,
    seen: u64,
    /// Zero bytes still to emit once the inner stream has ended.
    tail: Option<u64>,
}

impl<R: Read> CompleteTarTail<R> {
    pub fn new(inner: R) -> Self {
        CompleteTarTail {
            inner,
            seen: 0,
            tail: None,
        }
    }
}

impl<R: Read> Read for CompleteTarTail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.tail.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 {
                self.seen += n as u64;
                return Ok(n);
            }
            let pad = (512 - self.seen % 512) % 512;
            self.tail = Some(pad + 1024);
        }
        let left = self.tail.unwrap_or(0);
        let n = (buf.len() as u64).min(left) as usize;
        buf[..n].fill(0);
        self.tail = Some(left - n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(names: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (n, d) in names {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, n, *d).expect("append");
        }
        b.into_inner().expect("finish")
    }

    fn names(r: impl Read) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut a = tar::Archive::new(r);
        let mut out = Vec::new();
        for e in a.entries()? {
            let mut e = e?;
            let mut d = Vec::new();
            e.read_to_end(&mut d)?;
            out.push((e.path()?.to_string_lossy().into_owned(), d));
        }
        Ok(out)
    }

    #[test]
    fn truncated_docker_cli_tar_is_completed() {
        let full = tar_with(&[("a", b"hello"), (".dockerfile.0123", b"FROM busybox\n")]);
        // What docker's CLI sends: cut right after the last entry's 13 bytes of data.
        let header_and_data = 512 + 512 + 512 + 13;
        let cut = &full[..header_and_data];
        assert!(
            names(cut).is_err(),
            "a strict reader refuses the cut stream"
        );
        let got = names(CompleteTarTail::new(cut)).expect("completed");
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            (".dockerfile.0123".to_string(), b"FROM busybox\n".to_vec())
        );
    }

    #[test]
    fn complete_tars_and_empty_streams_are_unchanged() {
        let full = tar_with(&[("a", b"hello")]);
        let got = names(CompleteTarTail::new(&full[..])).expect("complete");
        assert_eq!(got, vec![("a".to_string(), b"hello".to_vec())]);
        assert!(names(CompleteTarTail::new(&b""[..]))
            .expect("empty")
            .is_empty());
        let mut all = Vec::new();
        CompleteTarTail::new(&full[..])
            .read_to_end(&mut all)
            .expect("read");
        assert_eq!(&all[..full.len()], &full[..]);
        assert!(all[full.len()..].iter().all(|&b| b == 0));
    }
}
