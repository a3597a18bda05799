//! TLS configuration for both sides, with rustls: the listener's certificate, and trust
//! for `https://` upstreams (a CA file, the system roots, or — loudly — none).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{TlsFiles, UpstreamConfig};

/// The listener's TLS configuration: TLS 1.2 and 1.3, ALPN `http/1.1` only (NTLM cannot
/// cross HTTP/2 multiplexing).
pub fn server_config(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", files.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no certificate",
        files.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key in {}", files.key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Trust for `https://` upstreams.
pub fn client_config(upstream: &UpstreamConfig) -> anyhow::Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder();
    if upstream.insecure_skip_verify {
        tracing::warn!(
            "upstream.insecure_skip_verify = true: upstream certificates are NOT verified"
        );
        let provider = builder.crypto_provider().clone();
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    match &upstream.ca_file {
        Some(path) => add_pem_roots(&mut roots, path)?,
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A system store may hold certificates rustls cannot use; skip those.
                let _ = roots.add(cert);
            }
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> anyhow::Result<()> {
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading upstream.ca_file {}", path.display()))?
    {
        roots
            .add(cert.with_context(|| format!("parsing {}", path.display()))?)
            .with_context(|| format!("a certificate in {} is not a usable CA", path.display()))?;
        added += 1;
    }
    anyhow::ensure!(
        added > 0,
        "upstream.ca_file {} holds no certificate",
        path.display()
    );
    Ok(())
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
