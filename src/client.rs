//! A minimal HTTP/1.1 client for exgate's own clients (`exgate cmdlet`, the lab's
//! walkthrough): one connection per request, loopback only; `https://` verified against
//! a given CA only (the lab's).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// A response, fully read.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// TLS trusting only the CA certificates in a PEM file (the lab's `ca.pem`).
pub fn tls_trusting(ca_file: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("reading {}", ca_file.display()))?
    {
        roots.add(cert.with_context(|| format!("parsing {}", ca_file.display()))?)?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{} holds no certificate",
        ca_file.display()
    );
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Sends requests to loopback URLs, `http://`, or `https://` when it trusts a CA.
#[derive(Clone, Default)]
pub struct Client {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A client that also speaks `https://`, trusting only the CA in `ca_file`.
    pub fn trusting(ca_file: &Path) -> anyhow::Result<Client> {
        Ok(Client {
            tls: Some(tls_trusting(ca_file)?),
        })
    }

    /// Sends one request to a loopback URL.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<HttpResponse> {
        let uri: Uri = url.parse()?;
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("{url} has no host"))?
            .clone();
        let host = authority.host();
        anyhow::ensure!(
            host == "127.0.0.1" || host == "localhost" || host == "[::1]",
            "the lab only talks to loopback, not {host}"
        );
        let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header("host", authority.as_str());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into()))?;
        match uri.scheme_str() {
            Some("https") => {
                let tls = self
                    .tls
                    .clone()
                    .with_context(|| format!("{url}: https needs a CA to trust"))?;
                let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, stream)
                    .await
                    .with_context(|| format!("TLS with {authority}"))?;
                send(stream, req).await
            }
            _ => send(stream, req).await,
        }
    }
}

async fn send<S>(stream: S, req: Request<Full<Bytes>>) -> anyhow::Result<HttpResponse>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let (parts, body) = sender.send_request(req).await?.into_parts();
    Ok(HttpResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

/// Sends one request to a loopback `http://` URL.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<HttpResponse> {
    Client::default().request(method, url, headers, body).await
}
