//! Kerberos in the on-premises labs (`exgate lab --keytab FILE`): the keytab of Exchange's
//! HTTP service principal, exported from a real KDC, given to exgate (`[kerberos]
//! keytab`) and to the mock Exchange, which authenticates `Negotiate` Kerberos AP-REQs
//! by reading their ticket with it, as Exchange reads them with its account's key.
//!
//! The mock reads the ticket only (who it was issued to, with the service's key): it
//! does not check the authenticator, keep a replay cache or answer with an AP-REP. A lab
//! needs no more; exgate needs no more either (it never answers the AP-REQ itself).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use super::{LabUser, find_user};
use crate::kerberos::{Keytab, TicketClient, TicketReader, keytab::etype};

/// The keytab the lab was started with.
#[derive(Clone, Debug)]
pub struct LabKeytab {
    /// Absolute: exgate's configuration names it, whatever the lab's directory.
    pub path: PathBuf,
    /// Its keys (`Debug` redacts them).
    pub keytab: Arc<Keytab>,
    /// The host of its first `HTTP/<host>` principal: the name clients put in the URL, so
    /// that their GSS-API asks the KDC for a ticket for that service.
    pub host: String,
    /// What the lab should tell the user about the keytab: keys of that service of a type
    /// exgate cannot decrypt (an MIT KDC encrypts a service's tickets in the type of its
    /// first key, so with `aes256-cts-hmac-sha384-192` first every ticket is unreadable).
    pub warnings: Vec<String>,
}

impl LabKeytab {
    /// Reads and checks `path`: an MIT keytab holding an `HTTP/<host>` principal with a
    /// key of a type exgate decrypts. Errors name the file, never a key.
    pub fn load(path: &Path) -> anyhow::Result<LabKeytab> {
        let path =
            std::path::absolute(path).with_context(|| format!("--keytab {}", path.display()))?;
        let bytes = std::fs::read(&path)
            .with_context(|| format!("--keytab: cannot read {}", path.display()))?;
        let keytab = Keytab::parse(&bytes)
            .with_context(|| format!("--keytab {} is not a usable keytab", path.display()))?;
        let host = keytab
            .entries
            .iter()
            .filter(|e| etype::supported(e.etype))
            .find_map(|e| match e.principal.components.as_slice() {
                [service, host] if service == "HTTP" => Some(host.clone()),
                _ => None,
            })
            .with_context(|| {
                format!(
                    "--keytab {} holds no HTTP/<host> key exgate can decrypt tickets with \
                     (aes256-cts-hmac-sha1-96, aes128-cts-hmac-sha1-96 or rc4-hmac); it has: {}",
                    path.display(),
                    keytab.describe().join("; ")
                )
            })?;
        anyhow::ensure!(
            is_plain_host(&host),
            "--keytab {}: HTTP/{host} is not a host name clients can put in a URL",
            path.display()
        );
        let mut unreadable: Vec<String> = keytab
            .entries
            .iter()
            .filter(|e| e.principal.components == ["HTTP", host.as_str()])
            .filter(|e| !etype::supported(e.etype))
            .map(|e| etype::name(e.etype))
            .collect();
        unreadable.dedup();
        let warnings = unreadable
            .into_iter()
            .map(|name| {
                format!(
                    "HTTP/{host} also has a {name} key: if it is the principal's first key, its \
                     KDC encrypts tickets in it and neither exgate nor the mock Exchange can \
                     read them (give the principal aes256-cts-hmac-sha1-96, \
                     aes128-cts-hmac-sha1-96 or rc4-hmac keys only)"
                )
            })
            .collect();
        Ok(LabKeytab {
            path,
            keytab: Arc::new(keytab),
            host,
            warnings,
        })
    }

    /// A ticket reader over these keys, for the mock Exchange.
    pub fn reader(&self) -> TicketReader {
        TicketReader::new(self.keytab.clone(), 1_000)
    }
}

/// Letters, digits, `-` and `.`: what the certificate, `--resolve` and a URL take as is.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The lab user a ticket's client is, mapped as the NTLM side maps the names it reads:
/// `name@REALM` with the realm being the users' DNS domain (`CONTOSO.COM`) or NetBIOS
/// domain (`CONTOSO`), any case. None for any other realm or name.
pub fn lab_user(client: &TicketClient) -> Option<&'static LabUser> {
    let (name, realm) = client.principal.rsplit_once('@')?;
    let domain = ["contoso.com", "CONTOSO"];
    domain
        .iter()
        .any(|d| d.eq_ignore_ascii_case(realm))
        .then(|| find_user(name))
        .flatten()
}

/// The current Unix time, in seconds, for [`TicketReader::read`].
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kerberos::Principal;
    use crate::kerberos::keytab::build;

    fn client(user: &str) -> TicketClient {
        TicketClient {
            principal: user.to_owned(),
            endtime: 0,
            etype: etype::AES256_CTS_HMAC_SHA1_96,
        }
    }

    #[test]
    fn ticket_clients_map_to_lab_users_by_realm_and_name() {
        for name in [
            "user01@CONTOSO.COM",
            "user01@contoso.com",
            "USER01@CONTOSO",
            "user01@contoso.com@CONTOSO.COM",
        ] {
            assert_eq!(
                lab_user(&client(name)).map(|u| u.upn),
                Some("user01@contoso.com"),
                "{name}"
            );
        }
        for name in [
            "user01@FABRIKAM.COM",
            "user01",
            "HTTP/user01@CONTOSO.COM",
            "nobody@CONTOSO.COM",
        ] {
            assert!(lab_user(&client(name)).is_none(), "{name}");
        }
    }

    fn principal(components: &[&str]) -> Principal {
        Principal {
            components: components.iter().map(|c| (*c).to_owned()).collect(),
            realm: "CONTOSO.COM".into(),
        }
    }

    #[test]
    fn a_keytab_gives_its_http_host_and_an_absolute_path() {
        let dir = std::env::temp_dir().join(format!("exgate-lab-kt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let host = principal(&["host", "other.contoso.com"]);
        let http = principal(&["HTTP", "mail.contoso.com"]);
        let file = dir.join("exchange.keytab");
        std::fs::write(
            &file,
            build(&[
                (&host, 1, etype::AES256_CTS_HMAC_SHA1_96, &[7u8; 32]),
                (&http, 2, 16, &[1u8; 24]),
                (&http, 2, etype::AES128_CTS_HMAC_SHA1_96, &[9u8; 16]),
            ]),
        )
        .unwrap();
        let loaded = LabKeytab::load(&file).unwrap();
        assert_eq!(loaded.host, "mail.contoso.com");
        assert!(loaded.path.is_absolute());
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].contains("des3-cbc-sha1"),
            "{:?}",
            loaded.warnings
        );
        assert!(!format!("{loaded:?}").contains("9, 9, 9"), "{loaded:?}");

        // Only keys of a type exgate cannot decrypt, or no HTTP principal: refused.
        std::fs::write(&file, build(&[(&http, 2, 16, &[1u8; 24])])).unwrap();
        let e = format!("{:#}", LabKeytab::load(&file).unwrap_err());
        assert!(e.contains("no HTTP/<host> key"), "{e}");
        std::fs::write(
            &file,
            build(&[(&host, 1, etype::AES256_CTS_HMAC_SHA1_96, &[7u8; 32])]),
        )
        .unwrap();
        assert!(LabKeytab::load(&file).is_err());
        std::fs::write(&file, b"not a keytab").unwrap();
        let e = format!("{:#}", LabKeytab::load(&file).unwrap_err());
        assert!(e.contains("not a usable keytab"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
