//! SOAP Autodiscover (`POST /autodiscover/autodiscover.svc`, MS-OXWSADISC):
//! `GetUserSettings`, answering each requested setting the mock has a value for and
//! listing the others in `UserSettingErrors`, as Exchange does.

use std::io;

use hyper::StatusCode;
use quick_xml::events::BytesText;

use super::{Facts, SERVER, deployment_id, display_name};
use crate::lab::find_user;
use crate::lab::soap::{
    ADDRESSING, AUTODISCOVER, ClientBase, Element, SOAP, Writer, XSI, document, leaf,
};
use crate::policy::Deployment;

const ACTION: &str = "http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/";

/// The schemas Exchange Online lists in `EwsSupportedSchemas` (clients pick the newest).
const EWS_SCHEMAS: &str = "Exchange2007, Exchange2007_SP1, Exchange2010, Exchange2010_SP1, Exchange2010_SP2, Exchange2013, Exchange2013_SP1, Exchange2015";

/// The `UserSettingName` values of MS-OXWSADISC the mock has no value for: asked for,
/// they are "not available"; any other unknown name is an invalid setting.
const NOT_AVAILABLE: [&str; 41] = [
    "InternalRpcClientServer",
    "InternalEcpVoicemailUrl",
    "InternalEcpEmailSubscriptionsUrl",
    "InternalEcpTextMessagingUrl",
    "InternalEcpDeliveryReportUrl",
    "InternalEcpRetentionPolicyTagsUrl",
    "InternalEcpPublishingUrl",
    "InternalUMUrl",
    "InternalWebClientUrls",
    "PublicFolderServer",
    "ExternalMailboxServerAuthenticationMethods",
    "EcpVoicemailUrlFragment",
    "EcpEmailSubscriptionsUrlFragment",
    "EcpTextMessagingUrlFragment",
    "EcpDeliveryReportUrlFragment",
    "EcpRetentionPolicyTagsUrlFragment",
    "EcpPublishingUrlFragment",
    "ExternalEcpVoicemailUrl",
    "ExternalEcpEmailSubscriptionsUrl",
    "ExternalEcpTextMessagingUrl",
    "ExternalEcpDeliveryReportUrl",
    "ExternalEcpRetentionPolicyTagsUrl",
    "ExternalEcpPublishingUrl",
    "ExternalUMUrl",
    "ExternalWebClientUrls",
    "AlternateMailboxes",
    "InternalPop3Connections",
    "ExternalPop3Connections",
    "InternalImap4Connections",
    "ExternalImap4Connections",
    "InternalSmtpConnections",
    "ExternalSmtpConnections",
    "InternalServerExclusiveConnect",
    "ExternalServerExclusiveConnect",
    "ExchangeRpcUrl",
    "InteropExternalEwsUrl",
    "InteropExternalEwsVersion",
    "MobileMailboxPolicyInterop",
    "InternalMailboxServerDN",
    "ActiveDirectoryServer",
    "CrossOrganizationSharingEnabled",
];

/// The value of one setting, or `None` when the mock has none.
fn setting(f: &Facts, name: &str) -> Option<String> {
    let online = f.online();
    Some(match name {
        "UserDisplayName" => display_name(f.user),
        "UserDN" => f.user_dn(),
        "UserDeploymentId" => deployment_id().to_owned(),
        "AutoDiscoverSMTPAddress" => f.user.upn.to_owned(),
        "InternalMailboxServer" => f.mailbox_server(),
        "ExternalMailboxServer" => f.base.host().to_owned(),
        "ExternalMailboxServerRequiresSSL" => f.base.url("").starts_with("https:").to_string(),
        "MailboxDN" => f.mailbox_dn(),
        "ActiveDirectoryServer" if !online => "LAB-DC01.contoso.com".to_owned(),
        "CasVersion" => f.version().dotted(),
        "EwsSupportedSchemas" => EWS_SCHEMAS.to_owned(),
        // Exchange Online's ExternalEwsVersion is 15.00.0000.000, whatever its build.
        "ExternalEwsVersion" => "15.00.0000.000".to_owned(),
        "ExternalEwsUrl" | "InternalEwsUrl" => f.ews_url(),
        "ExternalOABUrl" | "InternalOABUrl" => f.oab_url(),
        "ExternalEcpUrl" | "InternalEcpUrl" => f.base.url("/ecp/"),
        "MapiHttpEnabled" => "True".to_owned(),
        "ShowGalAsDefaultView" => "True".to_owned(),
        "GroupingInformation" => SERVER.to_owned(),
        "UserMSOnline" => if online { "True" } else { "False" }.to_owned(),
        _ => return None,
    })
}

/// Answers a SOAP Autodiscover request: `GetUserSettings` (any lab user's settings),
/// or a SOAP fault for the operations the mock does not implement.
pub fn soap(deployment: Deployment, base: &ClientBase, body: &[u8]) -> (StatusCode, String) {
    let envelope = Element::parse(body).ok().filter(|e| e.is(SOAP, "Envelope"));
    let operation = envelope
        .as_ref()
        .and_then(|e| e.child(SOAP, "Body"))
        .and_then(|b| b.children.first());
    let request = match operation {
        Some(op) if op.is(AUTODISCOVER, "GetUserSettingsRequestMessage") => {
            op.child(AUTODISCOVER, "Request")
        }
        Some(op) => {
            return fault(&format!(
                "The lab's Exchange does not implement the Autodiscover operation '{}'.",
                op.name
            ));
        }
        None => return fault("The request is not a SOAP 1.1 envelope."),
    };
    let users: Vec<&str> = request
        .and_then(|r| r.child(AUTODISCOVER, "Users"))
        .map(|u| {
            u.all(AUTODISCOVER, "User")
                .filter_map(|u| u.child(AUTODISCOVER, "Mailbox"))
                .map(Element::text)
                .collect()
        })
        .unwrap_or_default();
    let settings: Vec<&str> = request
        .and_then(|r| r.child(AUTODISCOVER, "RequestedSettings"))
        .map(|s| s.all(AUTODISCOVER, "Setting").map(Element::text).collect())
        .unwrap_or_default();
    let text = envelope_with(deployment, "GetUserSettingsResponse", |w| {
        w.create_element("GetUserSettingsResponseMessage")
            .with_attribute(("xmlns", AUTODISCOVER))
            .write_inner_content(|w| {
                w.create_element("Response")
                    .with_attribute(("xmlns:i", XSI))
                    .write_inner_content(|w| {
                        leaf(w, "ErrorCode", "NoError")?;
                        w.create_element("ErrorMessage").write_empty()?;
                        w.create_element("UserResponses").write_inner_content(|w| {
                            for address in &users {
                                user_response(w, deployment, base, address, &settings)?;
                            }
                            Ok(())
                        })?;
                        Ok(())
                    })?;
                Ok(())
            })?;
        Ok(())
    });
    (StatusCode::OK, text)
}

fn user_response(
    w: &mut Writer,
    deployment: Deployment,
    base: &ClientBase,
    address: &str,
    settings: &[&str],
) -> io::Result<()> {
    w.create_element("UserResponse").write_inner_content(|w| {
        let Some(user) = find_user(address).filter(|_| address.contains('@')) else {
            leaf(w, "ErrorCode", "InvalidUser")?;
            leaf(w, "ErrorMessage", &format!("Invalid user: '{address}'"))?;
            w.create_element("RedirectTarget")
                .with_attribute(("i:nil", "true"))
                .write_empty()?;
            return Ok(());
        };
        let facts = Facts {
            user,
            deployment,
            base,
        };
        let values: Vec<(&str, Option<String>)> =
            settings.iter().map(|s| (*s, setting(&facts, s))).collect();
        leaf(w, "ErrorCode", "NoError")?;
        leaf(w, "ErrorMessage", "No error.")?;
        w.create_element("RedirectTarget")
            .with_attribute(("i:nil", "true"))
            .write_empty()?;
        w.create_element("UserSettingErrors")
            .write_inner_content(|w| {
                for (name, _) in values.iter().filter(|(_, v)| v.is_none()) {
                    let (code, message) = if NOT_AVAILABLE.contains(name) {
                        (
                            "SettingIsNotAvailable",
                            format!("User setting '{name}' is not available. "),
                        )
                    } else {
                        (
                            "InvalidSetting",
                            format!("The requested setting '{name}' is invalid."),
                        )
                    };
                    w.create_element("UserSettingError")
                        .write_inner_content(|w| {
                            leaf(w, "ErrorCode", code)?;
                            leaf(w, "ErrorMessage", &message)?;
                            leaf(w, "SettingName", name)?;
                            Ok(())
                        })?;
                }
                Ok(())
            })?;
        w.create_element("UserSettings").write_inner_content(|w| {
            for (name, value) in &values {
                let Some(value) = value else { continue };
                w.create_element("UserSetting")
                    .with_attribute(("i:type", "StringSetting"))
                    .write_inner_content(|w| {
                        leaf(w, "Name", name)?;
                        leaf(w, "Value", value)?;
                        Ok(())
                    })?;
            }
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(())
}

/// The envelope of every answer: the WS-Addressing action and Autodiscover's own
/// `ServerVersionInfo` (child elements, not EWS's attributes).
fn envelope_with(
    deployment: Deployment,
    action: &str,
    body: impl FnOnce(&mut Writer) -> io::Result<()>,
) -> String {
    let v = crate::lab::soap::ServerVersion::of(deployment);
    document(|w| {
        w.create_element("s:Envelope")
            .with_attribute(("xmlns:s", SOAP))
            .with_attribute(("xmlns:a", ADDRESSING))
            .write_inner_content(|w| {
                w.create_element("s:Header").write_inner_content(|w| {
                    w.create_element("a:Action")
                        .with_attribute(("s:mustUnderstand", "1"))
                        .write_text_content(BytesText::new(&format!("{ACTION}{action}")))?;
                    w.create_element("h:ServerVersionInfo")
                        .with_attribute(("xmlns:h", AUTODISCOVER))
                        .with_attribute(("xmlns:i", XSI))
                        .write_inner_content(|w| {
                            leaf(w, "h:MajorVersion", &v.major.to_string())?;
                            leaf(w, "h:MinorVersion", &v.minor.to_string())?;
                            leaf(w, "h:MajorBuildNumber", &v.build.to_string())?;
                            leaf(w, "h:MinorBuildNumber", &v.revision.to_string())?;
                            leaf(w, "h:Version", "Exchange2015")?;
                            Ok(())
                        })?;
                    Ok(())
                })?;
                w.create_element("s:Body").write_inner_content(body)?;
                Ok(())
            })?;
        Ok(())
    })
}

/// The fault WCF sends for a request it cannot dispatch (HTTP 500).
fn fault(reason: &str) -> (StatusCode, String) {
    let text = document(|w| {
        w.create_element("s:Envelope")
            .with_attribute(("xmlns:s", SOAP))
            .write_inner_content(|w| {
                w.create_element("s:Body").write_inner_content(|w| {
                    w.create_element("s:Fault").write_inner_content(|w| {
                        leaf(w, "faultcode", "s:Client")?;
                        w.create_element("faultstring")
                            .with_attribute(("xml:lang", "en-US"))
                            .write_text_content(BytesText::new(reason))?;
                        Ok(())
                    })?;
                    Ok(())
                })?;
                Ok(())
            })?;
        Ok(())
    });
    (StatusCode::INTERNAL_SERVER_ERROR, text)
}
