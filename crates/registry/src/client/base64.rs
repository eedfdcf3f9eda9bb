//! Base64 for HTTP Basic credentials and Docker's X-Registry-Auth header: encoding (standard
//! alphabet, padded) and a tolerant decoder (standard or URL-safe alphabet, padding optional),
//! on the `base64` crate.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Standard alphabet with `=` padding.
pub fn encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// URL-safe alphabet with padding (what the docker CLI sends in X-Registry-Auth).
pub fn encode_url(data: &[u8]) -> String {
    URL_SAFE.encode(data)
}

/// Decode standard or URL-safe base64, with or without padding; whitespace is ignored.
/// None for anything else.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if clean.contains(['-', '_']) {
        URL_LENIENT.decode(&clean).ok()
    } else {
        STD_LENIENT.decode(&clean).ok()
    }
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
