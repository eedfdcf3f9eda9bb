//! TLS for `--tls-cert/--tls-key` (rustls with the ring provider, HTTP/1.1).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("certificate {cert:?}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate {cert:?}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("certificate {cert:?}: no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("key {key:?}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
