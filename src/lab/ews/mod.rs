//! The mock Exchange's EWS (`POST /EWS/Exchange.asmx`, SOAP 1.1): the operations a
//! client needs to find a mailbox's folders and read its messages, each answered with
//! its own response element and the `ServerVersionInfo` header of the scenario's
//! deployment (MS-OXWSCORE, MS-OXWSFOLD, MS-OXWSMSG, MS-OXWSSYNC, MS-OXWSRSLNM,
//! MS-OXWSCVTID). An operation the mock does not implement, like a request that is not
//! EWS SOAP, gets the SOAP fault Exchange sends for a request its schema rejects.

mod folders;
mod items;
mod names;
#[cfg(test)]
mod tests;

use std::io;

use hyper::StatusCode;
use quick_xml::events::BytesText;

use super::LabUser;
use super::soap::{
    ERRORS, Element, MESSAGES, SOAP, ServerVersion, TYPES, Writer, XSI, document, leaf,
};
use crate::policy::Deployment;

/// The request versions (`RequestedServerVersion/@Version`) EWS accepts.
const REQUEST_VERSIONS: [&str; 11] = [
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2015",
    "Exchange2016",
    "V2015_10_05",
    "V2016_10_10",
];

/// Who is asking and of which deployment the mock plays the part.
#[derive(Clone, Copy)]
struct Ctx {
    user: &'static LabUser,
    deployment: Deployment,
}

/// Answers one EWS request of `user` (already authenticated): the HTTP status and the
/// SOAP envelope. Exchange answers a fault with 500, everything else with 200.
pub fn respond(
    deployment: Deployment,
    user: &'static LabUser,
    body: &[u8],
) -> (StatusCode, String) {
    let ctx = Ctx { user, deployment };
    let envelope = match Element::parse(body) {
        Ok(e) if e.is(SOAP, "Envelope") => e,
        Ok(_) => {
            return fault(
                ctx,
                "ErrorSchemaValidation",
                "The request failed schema validation: the root element is not a SOAP 1.1 Envelope.",
            );
        }
        Err(e) => {
            return fault(
                ctx,
                "ErrorSchemaValidation",
                &format!("The request failed schema validation: {e}."),
            );
        }
    };
    let version = envelope
        .child(SOAP, "Header")
        .and_then(|h| h.child(TYPES, "RequestedServerVersion"))
        .map(|v| v.attr("Version").unwrap_or_default());
    if version.is_some_and(|v| !REQUEST_VERSIONS.contains(&v)) {
        return fault(
            ctx,
            "ErrorInvalidServerVersion",
            "The specified server version is invalid.",
        );
    }
    let Some(op) = envelope
        .child(SOAP, "Body")
        .and_then(|b| b.children.first())
        .filter(|op| op.ns == MESSAGES)
    else {
        return fault(
            ctx,
            "ErrorSchemaValidation",
            "The request failed schema validation: the SOAP Body holds no EWS operation.",
        );
    };
    let write: fn(&mut Writer, Ctx, &Element) -> io::Result<()> = match op.name.as_str() {
        "ConvertId" => names::convert_id,
        "ResolveNames" => names::resolve_names,
        "GetFolder" => folders::get_folder,
        "FindFolder" => folders::find_folder,
        "FindItem" => items::find_item,
        "GetItem" => items::get_item,
        "SyncFolderItems" => items::sync_folder_items,
        other => {
            return fault(
                ctx,
                "ErrorSchemaValidation",
                &format!(
                    "The request failed schema validation: the lab's Exchange does not implement the operation '{other}'."
                ),
            );
        }
    };
    let text = envelope_with(ctx, |w| {
        w.create_element(format!("m:{}Response", op.name))
            .with_attribute(("xmlns:m", MESSAGES))
            .with_attribute(("xmlns:t", TYPES))
            .write_inner_content(|w| {
                w.create_element("m:ResponseMessages")
                    .write_inner_content(|w| write(w, ctx, op))?;
                Ok(())
            })?;
        Ok(())
    });
    (StatusCode::OK, text)
}

/// The envelope every answer shares: `t:ServerVersionInfo` in the header, then `body`.
fn envelope_with(ctx: Ctx, body: impl FnOnce(&mut Writer) -> io::Result<()>) -> String {
    let v = ServerVersion::of(ctx.deployment);
    document(|w| {
        w.create_element("s:Envelope")
            .with_attribute(("xmlns:s", SOAP))
            .write_inner_content(|w| {
                w.create_element("s:Header").write_inner_content(|w| {
                    w.create_element("h:ServerVersionInfo")
                        .with_attribute(("MajorVersion", v.major.to_string().as_str()))
                        .with_attribute(("MinorVersion", v.minor.to_string().as_str()))
                        .with_attribute(("MajorBuildNumber", v.build.to_string().as_str()))
                        .with_attribute(("MinorBuildNumber", v.revision.to_string().as_str()))
                        .with_attribute(("Version", v.ews_version))
                        .with_attribute(("xmlns:h", TYPES))
                        .with_attribute(("xmlns", TYPES))
                        .with_attribute(("xmlns:xsi", XSI))
                        .write_empty()?;
                    Ok(())
                })?;
                w.create_element("s:Body")
                    .with_attribute(("xmlns:xsi", XSI))
                    .write_inner_content(body)?;
                Ok(())
            })?;
        Ok(())
    })
}

/// The SOAP fault EWS sends for a request it cannot process at all (MS-OXWSCORE
/// 2.2.4.1: the response code in `detail`).
fn fault(ctx: Ctx, code: &str, message: &str) -> (StatusCode, String) {
    let text = envelope_with(ctx, |w| {
        w.create_element("s:Fault").write_inner_content(|w| {
            w.create_element("faultcode")
                .with_attribute(("xmlns:a", TYPES))
                .write_text_content(BytesText::new(&format!("a:{code}")))?;
            w.create_element("faultstring")
                .with_attribute(("xml:lang", "en-US"))
                .write_text_content(BytesText::new(message))?;
            w.create_element("detail").write_inner_content(|w| {
                w.create_element("e:ResponseCode")
                    .with_attribute(("xmlns:e", ERRORS))
                    .write_text_content(BytesText::new(code))?;
                w.create_element("e:Message")
                    .with_attribute(("xmlns:e", ERRORS))
                    .write_text_content(BytesText::new(message))?;
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    });
    (StatusCode::INTERNAL_SERVER_ERROR, text)
}

/// An EWS error for one response message: the `ResponseCode` and the `MessageText`
/// Exchange writes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EwsError(&'static str, &'static str);

const ITEM_NOT_FOUND: EwsError = EwsError(
    "ErrorItemNotFound",
    "The specified object was not found in the store.",
);
const FOLDER_NOT_FOUND: EwsError = EwsError(
    "ErrorFolderNotFound",
    "The specified folder could not be found in the store.",
);
const ID_MALFORMED: EwsError = EwsError("ErrorInvalidIdMalformed", "Id is malformed.");
const ACCESS_DENIED: EwsError = EwsError(
    "ErrorAccessDenied",
    "Access is denied. Check credentials and try again.",
);
const NO_MAILBOX: EwsError = EwsError(
    "ErrorNonExistentMailbox",
    "The SMTP address has no mailbox associated with it.",
);

/// `m:<op>ResponseMessage` with `ResponseClass` `Success`, `Warning` (a code and text
/// with the payload) or `Error` (a code and text, no payload).
fn message(
    w: &mut Writer,
    op: &str,
    outcome: Result<Option<EwsError>, EwsError>,
    payload: impl FnOnce(&mut Writer) -> io::Result<()>,
) -> io::Result<()> {
    let (class, code) = match outcome {
        Ok(None) => ("Success", None),
        Ok(Some(warning)) => ("Warning", Some(warning)),
        Err(error) => ("Error", Some(error)),
    };
    w.create_element(format!("m:{op}ResponseMessage"))
        .with_attribute(("ResponseClass", class))
        .write_inner_content(|w| {
            if let Some(EwsError(_, text)) = code {
                leaf(w, "m:MessageText", text)?;
            }
            leaf(w, "m:ResponseCode", code.map_or("NoError", |c| c.0))?;
            if code.is_some() {
                leaf(w, "m:DescriptiveLinkKey", "0")?;
            }
            if class != "Error" {
                payload(w)?;
            }
            Ok(())
        })?;
    Ok(())
}

/// What a `FolderShape` or `ItemShape` asks for (MS-OXWSCORE `BaseShape`,
/// `AdditionalProperties`, `BodyType`).
#[derive(Debug)]
struct Shape {
    base: BaseShape,
    additional: Vec<String>,
    body_html: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BaseShape {
    IdOnly,
    Default,
    AllProperties,
}

impl Shape {
    fn read(shape: Option<&Element>) -> Shape {
        let base = shape
            .and_then(|s| s.child(TYPES, "BaseShape"))
            .map(Element::text);
        let base = match base {
            Some("IdOnly") => BaseShape::IdOnly,
            Some("AllProperties") => BaseShape::AllProperties,
            _ => BaseShape::Default,
        };
        let additional = shape
            .and_then(|s| s.child(TYPES, "AdditionalProperties"))
            .map(|a| {
                a.all(TYPES, "FieldURI")
                    .filter_map(|f| f.attr("FieldURI").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let body_html = shape
            .and_then(|s| s.child(TYPES, "BodyType"))
            .is_some_and(|b| b.text() == "HTML");
        Shape {
            base,
            additional,
            body_html,
        }
    }

    /// Whether the property `uri` is wanted; `in_default` says whether the default
    /// shape has it.
    fn wants(&self, uri: &str, in_default: bool) -> bool {
        let by_base = match self.base {
            BaseShape::IdOnly => false,
            BaseShape::Default => in_default,
            BaseShape::AllProperties => true,
        };
        by_base || self.additional.iter().any(|a| a == uri)
    }
}

/// A folder named in a request: `t:FolderId` or `t:DistinguishedFolderId` (with an
/// optional `t:Mailbox`), resolved in the user's mailbox.
fn folder_of(ctx: Ctx, id: &Element) -> Result<&'static super::mailbox::Folder, EwsError> {
    use super::mailbox::{Target, folder_named, resolve};
    if id.is(TYPES, "DistinguishedFolderId") {
        let mailbox = id
            .child(TYPES, "Mailbox")
            .and_then(|m| m.child(TYPES, "EmailAddress"))
            .map(Element::text);
        if let Some(address) = mailbox.filter(|a| !a.eq_ignore_ascii_case(ctx.user.upn)) {
            return Err(match super::find_user(address) {
                Some(_) => ACCESS_DENIED,
                None => NO_MAILBOX,
            });
        }
        return folder_named(id.attr("Id").unwrap_or_default()).ok_or(FOLDER_NOT_FOUND);
    }
    match resolve(ctx.user, id.attr("Id").unwrap_or_default()) {
        Some(Target::Folder(f)) => Ok(f),
        Some(Target::Message(_)) => Err(FOLDER_NOT_FOUND),
        None => Err(ID_MALFORMED),
    }
}

/// The folder ids listed under `parent` (`FolderIds`, `ParentFolderIds`).
fn folder_ids(parent: Option<&Element>) -> impl Iterator<Item = &Element> {
    parent.into_iter().flat_map(|p| {
        p.children
            .iter()
            .filter(|c| c.is(TYPES, "FolderId") || c.is(TYPES, "DistinguishedFolderId"))
    })
}
