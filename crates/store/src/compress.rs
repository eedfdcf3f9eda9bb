//! Detect gzip / zstd / plain streams by magic bytes and wrap them in a decoder.

use std::io::{BufRead, Read};

use crate::{IoContext, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Look at the first bytes of `r` (without consuming them) to tell its compression.
pub fn detect<R: BufRead>(r: &mut R) -> Result<Compression> {
    let buf = r.fill_buf().ctx(|| "read stream header".to_string())?;
    Ok(if buf.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if buf.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// A reader yielding the decompressed bytes of `r`, whatever its compression (auto-detected).
pub fn decompressed<'a, R: BufRead + 'a>(mut r: R) -> Result<Box<dyn Read + 'a>> {
    Ok(match detect(&mut r)? {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(r).ctx(|| "init zstd decoder".to_string())?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Write};

    fn roundtrip(data: &[u8], expect: Compression) {
        let mut r = BufReader::new(data);
        assert_eq!(detect(&mut r).unwrap(), expect);
        let mut out = Vec::new();
        decompressed(BufReader::new(data))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello world, hello world");
    }

    #[test]
    fn detects_and_decodes() {
        let plain = b"hello world, hello world";
        roundtrip(plain, Compression::None);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(plain).unwrap();
        roundtrip(&gz.finish().unwrap(), Compression::Gzip);
        let zs = zstd::stream::encode_all(&plain[..], 3).unwrap();
        roundtrip(&zs, Compression::Zstd);
    }

    #[test]
    fn empty_stream_is_plain() {
        let mut r = BufReader::new(&b""[..]);
        assert_eq!(detect(&mut r).unwrap(), Compression::None);
    }
}
