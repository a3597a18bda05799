//! The lab's TLS: its own certificate authority, kept in the lab directory (`ca.pem`,
//! `ca-key.pem`) so that a client told to trust it once keeps working across restarts,
//! and fresh leaf certificates at every start for exgate's listener and for the identity
//! provider, for `localhost` and `127.0.0.1` (RFC 5280 subjectAltName).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::write_private;
use crate::config::TlsFiles;

/// The lab CA's certificate: what clients are told to trust.
pub const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";

/// The lab's certificate files.
pub struct LabPki {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// exgate's listener: `mail.contoso.com`, `autodiscover.contoso.com`, loopback.
    pub exgate: TlsFiles,
    /// The identity provider: `login.contoso.com`, loopback.
    pub idp: TlsFiles,
}

/// The CA's parameters. The same every time: a restart rebuilds the issuer from them and
/// the stored key instead of parsing `ca.pem`, so the subject must not change.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "exgate lab CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Loads the lab's CA, or creates it when the directory has none (or a broken one).
fn load_or_create_ca(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let (cert_path, key_path) = (dir.join(CA_FILE), dir.join(CA_KEY_FILE));
    let stored = std::fs::read_to_string(&key_path)
        .ok()
        .filter(|_| cert_path.exists())
        .and_then(|pem| KeyPair::from_pem(&pem).ok());
    if let Some(key) = stored {
        return Ok(Issuer::new(ca_params()?, key));
    }
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok(Issuer::new(ca_params()?, key))
}

/// Issues a server certificate for `names` and writes it and its key as `<stem>.pem` and
/// `<stem>-key.pem`.
fn issue(
    dir: &Path,
    ca: &Issuer<'static, KeyPair>,
    stem: &str,
    names: &[&str],
) -> anyhow::Result<TlsFiles> {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Python 3.13's default (VERIFY_X509_STRICT) wants the authority key identifier.
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    let files = TlsFiles {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}-key.pem")),
    };
    std::fs::write(&files.cert, cert.pem())
        .with_context(|| format!("writing {}", files.cert.display()))?;
    write_private(&files.key, key.serialize_pem().as_bytes())?;
    Ok(files)
}

/// The lab's CA (kept) and this start's server certificates, in `dir`; exgate's also
/// names `extra` hosts (the host of `--keytab`'s `HTTP/<host>` service, which Kerberos
/// clients put in their URLs).
pub fn prepare(dir: &Path, extra: &[&str]) -> anyhow::Result<LabPki> {
    let ca = load_or_create_ca(dir)?;
    let loopback = ["localhost", "127.0.0.1"];
    let mut names = vec![
        "mail.contoso.com",
        "autodiscover.contoso.com",
        loopback[0],
        loopback[1],
    ];
    for name in extra {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name);
        }
    }
    let exgate = issue(dir, &ca, "exgate", &names)?;
    let idp = issue(
        dir,
        &ca,
        "idp",
        &["login.contoso.com", loopback[0], loopback[1]],
    )?;
    Ok(LabPki {
        ca: dir.join(CA_FILE),
        exgate,
        idp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client trusting only `ca.pem` accepts both servers' certificates for
    /// `localhost` and `127.0.0.1` (and exgate's for the extra host it was given), and the
    /// CA survives a second start.
    #[test]
    fn the_ca_is_kept_and_its_leaves_verify_for_loopback() {
        use rustls::client::danger::ServerCertVerifier as _;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let dir = std::env::temp_dir().join(format!("exgate-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = prepare(&dir, &[]).unwrap();
        let ca_pem = std::fs::read(&first.ca).unwrap();
        let second = prepare(&dir, &["exch.contoso.test", "MAIL.contoso.com"]).unwrap();
        assert_eq!(std::fs::read(&second.ca).unwrap(), ca_pem, "the CA is kept");

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(&ca_pem).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder(roots.into())
            .build()
            .unwrap();
        let exgate_names = [
            "localhost",
            "127.0.0.1",
            "mail.contoso.com",
            "exch.contoso.test",
        ];
        let idp_names = ["localhost", "127.0.0.1", "login.contoso.com"];
        for (files, names) in [
            (&second.exgate, &exgate_names[..]),
            (&second.idp, &idp_names[..]),
        ] {
            let leaf = CertificateDer::from_pem_file(&files.cert).unwrap();
            for name in names {
                verifier
                    .verify_server_cert(
                        &leaf,
                        &[],
                        &ServerName::try_from(*name).unwrap(),
                        &[],
                        UnixTime::now(),
                    )
                    .unwrap_or_else(|e| panic!("{}: {name}: {e}", files.cert.display()));
            }
            // The leaf and its key form a usable pair.
            crate::config::tls::server_config(files).unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
