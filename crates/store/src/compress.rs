//! Detect gzip / zstd / plain streams by magic bytes and wrap them in a decoder.

use std::io::{BufRead, Read};

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Look at the first bytes of `r` (without consuming them) to tell its compression.
pub fn detect<R: BufRead>(r: &mut R) -> Result<Compression> {
    todo!("{:p}", r)
}

/// A reader yielding the decompressed bytes of `r`, whatever its compression (auto-detected).
pub fn decompressed<'a, R: BufRead + 'a>(mut r: R) -> Result<Box<dyn Read + 'a>> {
    let _ = detect(&mut r)?;
    todo!()
}
