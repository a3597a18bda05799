//! `ResolveNames` (MS-OXWSRSLNM) against the lab's users and `ConvertId`
//! (MS-OXWSCVTID) between the id formats of the lab mailbox.

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::super::mailbox;
use super::items::write_mailbox;
use super::{Ctx, EwsError, ID_MALFORMED, message};
use crate::lab::soap::{Element, MESSAGES, TYPES, Writer, leaf};
use crate::lab::{LabUser, USERS};

const NO_RESULTS: EwsError = EwsError("ErrorNameResolutionNoResults", "No results were found.");
const MULTIPLE_RESULTS: EwsError = EwsError(
    "ErrorNameResolutionMultipleResults",
    "Multiple results were found.",
);

/// `ResolveNames`: ambiguous name resolution over the lab's users (the start of the
/// SMTP address, alias or display name, an `SMTP:` prefix allowed). One match is a
/// success, several a warning with all of them, none an error.
pub(super) fn resolve_names(w: &mut Writer, _ctx: Ctx, op: &Element) -> io::Result<()> {
    let entry = op
        .child(MESSAGES, "UnresolvedEntry")
        .map(Element::text)
        .unwrap_or_default();
    let wanted = entry
        .strip_prefix("SMTP:")
        .or_else(|| entry.strip_prefix("smtp:"))
        .unwrap_or(entry)
        .to_ascii_lowercase();
    let full = op.attr("ReturnFullContactData") == Some("true");
    let found: Vec<&LabUser> = USERS
        .iter()
        .filter(|u| {
            let name = mailbox::display_name(u).to_ascii_lowercase();
            !wanted.is_empty()
                && (u.upn.starts_with(&wanted)
                    || name.starts_with(&wanted)
                    || name.split(' ').any(|word| word.starts_with(&wanted)))
        })
        .collect();
    let outcome = match found.len() {
        0 => Err(NO_RESULTS),
        1 => Ok(None),
        _ => Ok(Some(MULTIPLE_RESULTS)),
    };
    message(w, "ResolveNames", outcome, |w| {
        w.create_element("m:ResolutionSet")
            .with_attribute(("TotalItemsInView", found.len().to_string().as_str()))
            .with_attribute(("IncludesLastItemInRange", "true"))
            .write_inner_content(|w| {
                for user in &found {
                    let name = mailbox::display_name(user);
                    w.create_element("t:Resolution").write_inner_content(|w| {
                        write_mailbox(w, &name, user.upn)?;
                        if full {
                            w.create_element("t:Contact").write_inner_content(|w| {
                                leaf(w, "t:DisplayName", &name)?;
                                leaf(w, "t:ContactSource", "ActiveDirectory")?;
                                Ok(())
                            })?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        Ok(())
    })
}

/// The id formats `ConvertId` converts between. The lab's EWS id is the base64 of its
/// store entry id, so `EwsId`, `EwsLegacyId` and `EntryId` share one spelling and
/// `HexEntryId` is the same bytes in hex.
const FORMATS: [&str; 4] = ["EwsId", "EwsLegacyId", "EntryId", "HexEntryId"];

/// `ConvertId`: each `AlternateId` of the user's mailbox in `DestinationFormat`.
/// Anything else (exchangelib's version probe sends `DUMMY`) is a malformed id.
pub(super) fn convert_id(w: &mut Writer, ctx: Ctx, op: &Element) -> io::Result<()> {
    let destination = op.attr("DestinationFormat").unwrap_or_default();
    let ids = op
        .child(MESSAGES, "SourceIds")
        .into_iter()
        .flat_map(|s| s.all(TYPES, "AlternateId"));
    for source in ids {
        let format = source.attr("Format").unwrap_or_default();
        let raw = source.attr("Id").unwrap_or_default();
        let bytes = match format {
            "HexEntryId" => decode_hex(raw),
            f if FORMATS.contains(&f) => STANDARD.decode(raw).ok(),
            _ => None,
        };
        let converted = bytes
            .filter(|b| {
                mailbox::resolve(ctx.user, &STANDARD.encode(b)).is_some()
                    && FORMATS.contains(&destination)
            })
            .map(|b| match destination {
                "HexEntryId" => b.iter().map(|x| format!("{x:02X}")).collect(),
                _ => STANDARD.encode(b),
            })
            .ok_or(ID_MALFORMED);
        message(
            w,
            "ConvertId",
            converted.as_ref().map(|_| None).map_err(|e| *e),
            |w| {
                let Ok(id) = &converted else { return Ok(()) };
                w.create_element("m:AlternateId")
                    .with_attribute(("xsi:type", "t:AlternateIdType"))
                    .with_attribute(("Format", destination))
                    .with_attribute(("Id", id.as_str()))
                    .with_attribute(("Mailbox", ctx.user.upn))
                    .write_empty()?;
                Ok(())
            },
        )?;
    }
    Ok(())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
