//! POX Autodiscover (`POST /autodiscover/autodiscover.xml`): Outlook's schema
//! (MS-OXDSCLI: an `Account` with `EXCH`, `EXPR`, `WEB` and MAPI/HTTP `Protocol`
//! sections) and Exchange ActiveSync's (MS-ASCMD `Autodiscover`: the `MobileSync`
//! server URL). Errors are the numbered `Error` elements of MS-OXDSCLI 2.2.4.

use std::io;

use hyper::StatusCode;

use super::{Facts, OAB_GUID, SERVER, deployment_id, display_name};
use crate::lab::find_user;
use crate::lab::soap::{ClientBase, Element, Writer, document, leaf};
use crate::policy::Deployment;

const REQUEST: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";
const RESPONSE: &str = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
const OUTLOOK: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
const MOBILE_REQUEST: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006";
const MOBILE: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006";

/// Answers a POX Autodiscover request. Exchange answers errors with 200 and an `Error`
/// element; the address asked about may be any lab user's.
pub fn pox(deployment: Deployment, base: &ClientBase, body: &[u8]) -> (StatusCode, String) {
    let request = Element::parse(body).ok().and_then(|root| {
        let ns = [REQUEST, MOBILE_REQUEST]
            .into_iter()
            .find(|ns| root.is(ns, "Autodiscover"))?;
        let request = root.child(ns, "Request")?;
        let address = request.child(ns, "EMailAddress")?.text().to_owned();
        let schema = request
            .child(ns, "AcceptableResponseSchema")
            .map(|s| s.text().to_owned())
            .unwrap_or_default();
        Some((address, schema))
    });
    let text = match request {
        None => error(600, "Invalid Request"),
        Some((address, schema)) => match (find_user(&address), schema.as_str()) {
            (None, _) => error(500, "The email address can't be found."),
            (Some(user), OUTLOOK) => outlook(&Facts {
                user,
                deployment,
                base,
            }),
            (Some(user), MOBILE) => mobile(&Facts {
                user,
                deployment,
                base,
            }),
            _ => error(601, "The requested schema version is not supported."),
        },
    };
    (StatusCode::OK, text)
}

fn error(code: u16, message: &str) -> String {
    document(|w| {
        w.create_element("Autodiscover")
            .with_attribute(("xmlns", RESPONSE))
            .write_inner_content(|w| {
                w.create_element("Response").write_inner_content(|w| {
                    w.create_element("Error")
                        .with_attribute(("Time", "00:00:00.0000000"))
                        .with_attribute(("Id", "2477273011"))
                        .write_inner_content(|w| {
                            leaf(w, "ErrorCode", &code.to_string())?;
                            leaf(w, "Message", message)?;
                            w.create_element("DebugData").write_empty()?;
                            Ok(())
                        })?;
                    Ok(())
                })?;
                Ok(())
            })?;
        Ok(())
    })
}

fn wrapped(schema: &str, inner: impl FnOnce(&mut Writer) -> io::Result<()>) -> String {
    document(|w| {
        w.create_element("Autodiscover")
            .with_attribute(("xmlns", RESPONSE))
            .write_inner_content(|w| {
                w.create_element("Response")
                    .with_attribute(("xmlns", schema))
                    .write_inner_content(inner)?;
                Ok(())
            })?;
        Ok(())
    })
}

fn outlook(f: &Facts) -> String {
    let base = f.base;
    let ews = f.ews_url();
    let version = f.version();
    // MS-OXDSCLI ServerVersion: 0111, 6 bits major, 6 bits minor, 1, 15 bits build.
    let server_version = format!(
        "{:08X}",
        (0x7u32 << 28)
            | (u32::from(version.major) << 22)
            | (u32::from(version.minor) << 16)
            | (1 << 15)
            | u32::from(version.build)
    );
    let https = base.url("").starts_with("https:");
    wrapped(OUTLOOK, |w| {
        w.create_element("User").write_inner_content(|w| {
            leaf(w, "DisplayName", &display_name(f.user))?;
            leaf(w, "LegacyDN", &f.user_dn())?;
            leaf(w, "AutoDiscoverSMTPAddress", f.user.upn)?;
            leaf(w, "DeploymentId", deployment_id())?;
            Ok(())
        })?;
        w.create_element("Account").write_inner_content(|w| {
            leaf(w, "AccountType", "email")?;
            leaf(w, "Action", "settings")?;
            leaf(
                w,
                "MicrosoftOnline",
                if f.online() { "True" } else { "False" },
            )?;
            // The URLs both the internal (EXCH) and external (EXPR) sections share.
            let urls = |w: &mut Writer| -> io::Result<()> {
                leaf(w, "ASUrl", &ews)?;
                leaf(w, "EwsUrl", &ews)?;
                leaf(w, "EmwsUrl", &ews)?;
                leaf(w, "EcpUrl", &base.url("/ecp/"))?;
                leaf(w, "OOFUrl", &ews)?;
                leaf(w, "OABUrl", &base.url(&format!("/OAB/{OAB_GUID}/")))?;
                Ok(())
            };
            w.create_element("Protocol").write_inner_content(|w| {
                leaf(w, "Type", "EXCH")?;
                leaf(w, "Server", &f.mailbox_server())?;
                leaf(
                    w,
                    "ServerDN",
                    &format!(
                        "{}/cn=Configuration/cn=Servers/cn={}",
                        f.organization_dn(),
                        f.mailbox_server()
                    ),
                )?;
                leaf(w, "ServerVersion", &server_version)?;
                leaf(w, "MdbDN", &f.mailbox_dn())?;
                if !f.online() {
                    leaf(w, "AD", "LAB-DC01.contoso.com")?;
                }
                urls(w)?;
                leaf(w, "ServerExclusiveConnect", "off")?;
                Ok(())
            })?;
            w.create_element("Protocol").write_inner_content(|w| {
                leaf(w, "Type", "EXPR")?;
                leaf(w, "Server", base.host())?;
                leaf(w, "SSL", if https { "On" } else { "Off" })?;
                leaf(
                    w,
                    "AuthPackage",
                    if f.online() { "Basic" } else { "Negotiate" },
                )?;
                urls(w)?;
                leaf(w, "ServerExclusiveConnect", "on")?;
                leaf(w, "CertPrincipalName", "none")?;
                leaf(w, "GroupingInformation", SERVER)?;
                Ok(())
            })?;
            w.create_element("Protocol").write_inner_content(|w| {
                leaf(w, "Type", "WEB")?;
                for (section, owa_auth, inner) in [
                    ("Internal", "Basic, Fba", "EXCH"),
                    ("External", "Fba", "EXPR"),
                ] {
                    w.create_element(section).write_inner_content(|w| {
                        w.create_element("OWAUrl")
                            .with_attribute(("AuthenticationMethod", owa_auth))
                            .write_text_content(quick_xml::events::BytesText::new(
                                &base.url("/owa/"),
                            ))?;
                        w.create_element("Protocol").write_inner_content(|w| {
                            leaf(w, "Type", inner)?;
                            leaf(w, "ASUrl", &ews)?;
                            Ok(())
                        })?;
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            w.create_element("Protocol")
                .with_attribute(("Type", "mapiHttp"))
                .with_attribute(("Version", "1"))
                .write_inner_content(|w| {
                    for (section, endpoint) in [("MailStore", "emsmdb"), ("AddressBook", "nspi")] {
                        w.create_element(section).write_inner_content(|w| {
                            leaf(w, "InternalUrl", &f.mapi_url(endpoint))?;
                            leaf(w, "ExternalUrl", &f.mapi_url(endpoint))?;
                            Ok(())
                        })?;
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
        Ok(())
    })
}

fn mobile(f: &Facts) -> String {
    let url = f.base.url("/Microsoft-Server-ActiveSync");
    wrapped(MOBILE, |w| {
        leaf(w, "Culture", "en:us")?;
        w.create_element("User").write_inner_content(|w| {
            leaf(w, "DisplayName", &display_name(f.user))?;
            leaf(w, "EMailAddress", f.user.upn)?;
            Ok(())
        })?;
        w.create_element("Action").write_inner_content(|w| {
            w.create_element("Settings").write_inner_content(|w| {
                w.create_element("Server").write_inner_content(|w| {
                    leaf(w, "Type", "MobileSync")?;
                    leaf(w, "Url", &url)?;
                    leaf(w, "Name", &url)?;
                    Ok(())
                })?;
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })
}
