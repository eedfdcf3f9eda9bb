//! HTTPS for the registry client: a hyper connector that speaks plain TCP for `http://` and
//! rustls (ring provider, already built for `berth registry serve`) for `https://`.
//!
//! Trust: the system bundle (`/etc/ssl/certs/ca-certificates.crt`) plus, as dockerd, every
//! `*.crt` in `/etc/docker/certs.d/<host[:port]>/` (and berth's own `/etc/berth/certs.d/...`).
//! `skip_verify` (insecure registries, as Docker's InsecureSkipVerify) accepts any certificate.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const CERTS_DIRS: &[&str] = &["/etc/berth/certs.d", "/etc/docker/certs.d"];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The CA certificates of a PEM file (unreadable or invalid entries are skipped).
fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    match CertificateDer::pem_file_iter(path) {
        Ok(it) => it.filter_map(|c| c.ok()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The `*.crt` files of `<dir>/<authority>/` (`:` may be written as-is, as Docker's).
pub fn certs_d_files(dirs: &[PathBuf], authority: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d.join(authority)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// The client TLS configuration for a registry authority.
pub fn client_config(
    authority: &str,
    skip_verify: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut cfg = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let dirs: Vec<PathBuf> = CERTS_DIRS.iter().map(PathBuf::from).collect();
        let mut files = vec![PathBuf::from(SYSTEM_BUNDLE)];
        files.extend(certs_d_files(&dirs, authority));
        for f in files {
            for c in pem_certs(&f) {
                let _ = roots.add(c);
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Docker's InsecureSkipVerify: any certificate is accepted (the handshake signatures are still
/// checked, so the peer holds the key of the certificate it shows).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection: plain TCP or TLS over TCP.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the connector hands to hyper.
pub struct Conn(TokioIo<Io>);

impl Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// http:// over TCP, https:// over rustls with `tls`.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    tls: Arc<rustls::ClientConfig>,
}

impl Connector {
    pub fn new(http: HttpConnector, tls: Arc<rustls::ClientConfig>) -> Connector {
        let mut http = http;
        http.enforce_http(false);
        Connector { http, tls }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_string();
        let fut = tower::Service::<Uri>::call(&mut self.http, uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = fut.await?.into_inner();
            if !https {
                return Ok(Conn(TokioIo::new(Io::Plain(tcp))));
            }
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("invalid TLS server name {host:?}: {e}"))?;
            let s = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await?;
            Ok(Conn(TokioIo::new(Io::Tls(Box::new(s)))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build_and_certs_d_is_read() {
        assert!(client_config("quay.io", false).is_ok());
        assert!(client_config("10.0.0.1:5000", true).is_ok());
        let d = tempfile::tempdir().unwrap();
        let host = d.path().join("myreg:5000");
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("ca.crt"), "x").unwrap();
        std::fs::write(host.join("client.key"), "x").unwrap();
        let files = certs_d_files(&[d.path().to_path_buf()], "myreg:5000");
        assert_eq!(files, vec![host.join("ca.crt")]);
        assert!(pem_certs(&host.join("ca.crt")).is_empty());
    }
}
