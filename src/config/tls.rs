//! TLS settings, read and parsed when the configuration loads (so that `validate`
//! refuses what `serve` would): the listener's certificate and key, and the trust for
//! `https://` upstreams (a CA file, the system roots, or — loudly — none). rustls does
//! the parsing and the checks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{ConfigError, error};

/// A PEM certificate chain and its private key (`server.tls_cert_file`,
/// `server.tls_key_file`), resolved against the configuration's folder.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The listener's TLS: the files, and the rustls configuration made of them.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub files: TlsFiles,
    pub config: Arc<rustls::ServerConfig>,
}

/// The listener's TLS configuration: TLS 1.2 and 1.3, ALPN `http/1.1` only (NTLM cannot
/// cross HTTP/2 multiplexing). Errors name `server.tls_cert_file` or
/// `server.tls_key_file` and the file, never the key's bytes.
pub fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, ConfigError> {
    const CERT: &str = "server.tls_cert_file";
    const KEY: &str = "server.tls_key_file";
    let certs = certificates(&files.cert).map_err(|m| error(CERT, m))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        // An encrypted key parses as nothing: say so rather than "no PEM item".
        let encrypted =
            std::fs::read(&files.key).is_ok_and(|b| b.windows(9).any(|w| w == b"ENCRYPTED"));
        let why = match encrypted {
            true => "it is encrypted, which exgate does not read: decrypt it first (openssl pkey -in KEY -out KEY.plain) and keep it readable by exgate only".to_owned(),
            false => format!(
                "no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC): {}",
                pem_error(&e)
            ),
        };
        error(KEY, format!("{}: {why}", files.key.display()))
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            let hint = match &e {
                rustls::Error::InconsistentKeys(_) => {
                    " (the key is not the first certificate's: the file must hold the leaf certificate first, then its intermediates)"
                }
                rustls::Error::General(_) => {
                    " (rustls takes RSA keys of 2048 bits or more, ECDSA P-256 and P-384, and Ed25519)"
                }
                _ => "",
            };
            error(
                KEY,
                format!(
                    "{} and {} do not form a usable pair: {e}{hint}",
                    files.cert.display(),
                    files.key.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Trust for `https://` upstreams: the CA certificates of `ca_file`, else the system's
/// roots; with `insecure`, none (handshake signatures are still checked). The error
/// (for `upstream.ca_file`) names the file.
pub fn client_config(
    ca_file: Option<&Path>,
    insecure: bool,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder();
    if insecure {
        let provider = builder.crypto_provider().clone();
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth());
    }
    let roots = match ca_file {
        Some(path) => ca_roots(path)?,
        None => {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system store may hold certificates rustls cannot use; skip those.
                let _ = roots.add(cert);
            }
            roots
        }
    };
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The CA certificates of a PEM file, each usable as a trust anchor; at least one.
pub fn ca_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: a certificate is not a usable CA: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The certificates of a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect())
        .map_err(|e| format!("{}: {}", path.display(), pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A PEM reading error in words: an I/O error's own text, else rustls' description.
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("not valid PEM ({other})"),
    }
}

/// Accepts any upstream certificate but still checks handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
