//! TLS on both sides: clients to exgate, and exgate to an `https://` upstream.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::support::*;

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

fn server_config(pki: &Pki) -> rustls::ServerConfig {
    let certs = vec![CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

/// An `https://` fake Exchange with `pki`'s certificate.
async fn https_upstream(pki: &Pki) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(pki)));
    Upstream::serve(listener, Some(acceptor)).await
}

/// exgate trusting `ca_pem` for its upstream, with a TLS listener when `listener` holds
/// a certificate and key.
async fn exgate_to(
    upstream: &Upstream,
    ca_pem: &str,
    listener: Option<&Pki>,
) -> exgate::proxy::Running {
    let mut files = vec![("ca.pem", ca_pem), ("policies.ps1", "")];
    if let Some(pki) = listener {
        files.extend([
            ("cert.pem", pki.cert_pem.as_str()),
            ("key.pem", pki.key_pem.as_str()),
        ]);
    }
    let dir = write_files(&files);
    let toml = config_text(
        "ca_file = \"ca.pem\"\n[exchange]\ndeployment = \"online\"\n[policy]\nscript = \"policies.ps1\"\n",
        &[format!("https://localhost:{}", upstream.addr.port())],
        if listener.is_some() {
            "tls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\""
        } else {
            ""
        },
    );
    std::fs::write(dir.join("exgate.toml"), toml).unwrap();
    let config =
        exgate::config::load_with_env(&dir.join("exgate.toml"), Some(Default::default())).unwrap();
    exgate::proxy::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works_on_both_sides() {
    let pki = pki();
    let upstream = https_upstream(&pki).await;
    let running = exgate_to(&upstream, &pki.ca_pem, Some(&pki)).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut client_config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let tcp = tokio::net::TcpStream::connect(running.proxy_addr)
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut c = Client::handshake(hyper_util::rt::TokioIo::new(tls)).await;
    let reply = c.get("/EWS/Exchange.asmx", &[]).await;
    assert_eq!(reply.status, 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");

    // A plain-HTTP client gets nowhere on the TLS listener.
    let mut plain = tokio::net::TcpStream::connect(running.proxy_addr)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET /ews/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_certificate_from_an_unknown_ca_is_refused() {
    let upstream = https_upstream(&pki()).await;
    let running = exgate_to(&upstream, &pki().ca_pem, None).await;
    let mut c = Client::connect(running.proxy_addr).await;
    assert_eq!(c.get("/ews/", &[]).await.status, 502);
    assert!(upstream.requests().is_empty());
}
