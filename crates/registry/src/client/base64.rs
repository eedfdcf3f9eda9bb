//! Base64 for HTTP Basic credentials and Docker's X-Registry-Auth header: encoding (standard
//! alphabet, padded) and a tolerant decoder (standard or URL-safe alphabet, padding optional).

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard alphabet with `=` padding.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(STD[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// URL-safe alphabet with padding (what the docker CLI sends in X-Registry-Auth).
pub fn encode_url(data: &[u8]) -> String {
    encode(data).replace('+', "-").replace('/', "_")
}

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    } as u32)
}

/// Decode standard or URL-safe base64, with or without padding; whitespace is ignored.
/// None for anything else.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let body = {
        let mut end = clean.len();
        while end > 0 && clean[end - 1] == b'=' {
            end -= 1;
        }
        if clean.len() - end > 2 {
            return None;
        }
        &clean[..end]
    };
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_variants() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "a:b?>~"] {
            let e = encode(s.as_bytes());
            assert_eq!(decode(&e).unwrap(), s.as_bytes(), "{s}");
            assert_eq!(decode(e.trim_end_matches('=')).unwrap(), s.as_bytes());
            assert_eq!(decode(&encode_url(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(decode("Pz8-"), Some(b"??>".to_vec()));
        assert_eq!(decode("Pz8+"), Some(b"??>".to_vec()));
        assert!(decode("a").is_none());
        assert!(decode("ab!c").is_none());
        assert!(decode("ab===").is_none());
    }
}
