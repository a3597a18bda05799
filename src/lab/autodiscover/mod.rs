//! The mock Exchange's Autodiscover, in its three forms: POX (`autodiscover.xml`,
//! MS-OXDSCLI, and the ActiveSync schema of MS-ASCMD), SOAP (`autodiscover.svc`,
//! `GetUserSettings`, MS-OXWSADISC) and Autodiscover v2 (`autodiscover.json`, the JSON
//! endpoint Outlook and Exchange ActiveSync clients ask first). Every URL in an answer
//! is built on [`ClientBase`], the address the client used.

mod pox;
mod svc;
#[cfg(test)]
mod tests;

pub use pox::pox;
pub use svc::soap;

use hyper::StatusCode;

use super::soap::{ClientBase, ServerVersion};
use super::{LabUser, TENANT, mailbox};
use crate::policy::Deployment;
use crate::policy::path::query_pairs;

/// What Autodiscover tells about one user of one deployment, at one client address.
struct Facts<'a> {
    user: &'static LabUser,
    deployment: Deployment,
    base: &'a ClientBase,
}

/// The offline address book's id (one per organization).
const OAB_GUID: &str = "3f9a2c61-7d0e-4c4b-9a51-0b8e2f6d1c77";
/// The mock's server name, as `X-FEServer` also reports it.
const SERVER: &str = "LAB-EXCH01";

impl Facts<'_> {
    fn online(&self) -> bool {
        self.deployment == Deployment::Online
    }

    fn alias(&self) -> &'static str {
        self.user.upn.split('@').next().unwrap_or(self.user.upn)
    }

    /// The organization part of legacy Exchange DNs.
    fn organization_dn(&self) -> &'static str {
        if self.online() {
            "/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)"
        } else {
            "/o=Contoso/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)"
        }
    }

    fn user_dn(&self) -> String {
        format!(
            "{}/cn=Recipients/cn={}",
            self.organization_dn(),
            self.alias()
        )
    }

    fn mailbox_guid(&self) -> String {
        let digits: String = self.alias().chars().filter(char::is_ascii_digit).collect();
        format!("6d2f3c1a-91e4-4b52-8f0a-5e7c9b1d2a{digits:0>2}")
    }

    /// Modern Exchange names the mailbox, not a server: `<mailbox guid>@<domain>`.
    fn mailbox_server(&self) -> String {
        format!("{}@contoso.com", self.mailbox_guid())
    }

    fn mailbox_dn(&self) -> String {
        format!(
            "{}/cn=Configuration/cn=Servers/cn={}/cn=Microsoft Private MDB",
            self.organization_dn(),
            self.mailbox_server()
        )
    }

    fn ews_url(&self) -> String {
        self.base.url("/EWS/Exchange.asmx")
    }

    fn oab_url(&self) -> String {
        self.base.url(&format!("/OAB/{OAB_GUID}/"))
    }

    fn mapi_url(&self, endpoint: &str) -> String {
        self.base.url(&format!(
            "/mapi/{endpoint}/?MailboxId={}",
            self.mailbox_server()
        ))
    }

    fn version(&self) -> ServerVersion {
        ServerVersion::of(self.deployment)
    }
}

/// Autodiscover v2: `GET /autodiscover/autodiscover.json/v1.0/<address>?Protocol=X` or
/// `GET /autodiscover/autodiscover.json?Email=<address>&Protocol=X`. The answer is
/// `{"Protocol": …, "Url": …}` for `EWS`, `AutodiscoverV1` and `ActiveSync` (protocol
/// names are case-insensitive), and Exchange Online's 400 `InvalidProtocol` otherwise.
pub fn v2(base: &ClientBase, path: &str, query: &str) -> (StatusCode, String) {
    let mut protocol = String::new();
    // The address segment is percent-decoded as a query component would be.
    let mut email = path
        .split_once("/v1.0/")
        .and_then(|(_, address)| query_pairs(address).next())
        .map(|(address, _)| address.into_owned());
    for (key, value) in query_pairs(query) {
        if key.eq_ignore_ascii_case("Protocol") {
            protocol = value.into_owned();
        } else if key.eq_ignore_ascii_case("Email") && email.is_none() {
            email = Some(value.into_owned());
        }
    }
    let answer = match protocol.to_ascii_lowercase().as_str() {
        _ if email.as_deref().is_none_or(|e| !e.contains('@')) => Err((
            "InvalidUser",
            "The given user value is invalid. A valid SMTP address is required.".to_owned(),
        )),
        "ews" => Ok(("EWS", base.url("/EWS/Exchange.asmx"))),
        "autodiscoverv1" => Ok(("AutodiscoverV1", base.url("/autodiscover/autodiscover.xml"))),
        "activesync" => Ok(("ActiveSync", base.url("/Microsoft-Server-ActiveSync"))),
        _ => Err((
            "InvalidProtocol",
            format!(
                "The given protocol value '{protocol}' is invalid. Supported values are 'Ews,AutodiscoverV1,ActiveSync'"
            ),
        )),
    };
    match answer {
        Ok((protocol, url)) => (
            StatusCode::OK,
            serde_json::json!({"Protocol": protocol, "Url": url}).to_string(),
        ),
        Err((code, message)) => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({"ErrorCode": code, "ErrorMessage": message}).to_string(),
        ),
    }
}

/// `UserDeploymentId`, `DeploymentId`: the organization's id.
fn deployment_id() -> &'static str {
    TENANT
}

/// The display name of the user Autodiscover describes.
fn display_name(user: &LabUser) -> String {
    mailbox::display_name(user)
}
