//! `FindItem`, `GetItem` (MS-OXWSCORE) and `SyncFolderItems` (MS-OXWSSYNC) over the lab
//! mailbox's messages (MS-OXWSMSG `MessageType`).

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use quick_xml::events::BytesText;

use super::super::mailbox::{self, MESSAGES, Message, Target};
use super::{Ctx, EwsError, ID_MALFORMED, ITEM_NOT_FOUND, Shape, folder_ids, folder_of, message};
use crate::lab::soap::{Element, MESSAGES as M, TYPES, Writer, leaf};

const UNSUPPORTED_FILTER: EwsError = EwsError(
    "ErrorUnsupportedQueryFilter",
    "The lab's Exchange does not evaluate restrictions, query strings or groupings.",
);
const BAD_SYNC_STATE: EwsError = EwsError(
    "ErrorInvalidSyncStateData",
    "Synchronization state data is corrupt or otherwise invalid.",
);

/// `FindItem`: the messages of each parent folder, newest first (or oldest first for
/// an ascending `DateTimeReceived` sort), paged by `IndexedPageItemView`.
pub(super) fn find_item(w: &mut Writer, ctx: Ctx, op: &Element) -> io::Result<()> {
    let shape = Shape::read(op.child(M, "ItemShape"));
    let filtered = [
        "Restriction",
        "QueryString",
        "GroupBy",
        "DistinguishedGroupBy",
    ]
    .iter()
    .any(|f| op.child(M, f).is_some());
    let ascending = op
        .child(M, "SortOrder")
        .and_then(|s| s.child(TYPES, "FieldOrder"))
        .is_some_and(|o| {
            o.attr("Order") == Some("Ascending")
                && o.child(TYPES, "FieldURI").and_then(|f| f.attr("FieldURI"))
                    == Some("item:DateTimeReceived")
        });
    let view = op.child(M, "IndexedPageItemView");
    let number = |name: &str| {
        view.and_then(|v| v.attr(name))
            .and_then(|n| n.parse::<usize>().ok())
    };
    let (offset, max) = (number("Offset").unwrap_or(0), number("MaxEntriesReturned"));
    let from_end = view.and_then(|v| v.attr("BasePoint")) == Some("End");
    // Only the normal traversal sees messages: the lab has no associated or
    // soft-deleted items.
    let normal = op
        .attr("Traversal")
        .is_none_or(|t| t == "Shallow" || t == "Deep");
    for id in folder_ids(op.child(M, "ParentFolderIds")) {
        let found = folder_of(ctx, id).and_then(|f| {
            if filtered {
                Err(UNSUPPORTED_FILTER)
            } else {
                Ok(f)
            }
        });
        message(w, "FindItem", found.map(|_| None), |w| {
            let Ok(folder) = found else { return Ok(()) };
            let mut all: Vec<usize> = mailbox::messages_in(folder)
                .filter(|_| normal)
                .map(|(i, _)| i)
                .collect();
            if ascending {
                all.reverse();
            }
            let total = all.len();
            let max = max.unwrap_or(total);
            let start = if from_end {
                total.saturating_sub(offset + max)
            } else {
                offset.min(total)
            };
            let end = if from_end {
                total.saturating_sub(offset)
            } else {
                (offset + max).min(total)
            };
            let next = if from_end { total - start } else { end };
            w.create_element("m:RootFolder")
                .with_attribute(("IndexedPagingOffset", next.to_string().as_str()))
                .with_attribute(("TotalItemsInView", total.to_string().as_str()))
                .with_attribute((
                    "IncludesLastItemInRange",
                    (next >= total).to_string().as_str(),
                ))
                .write_inner_content(|w| {
                    w.create_element("t:Items").write_inner_content(|w| {
                        for &i in &all[start..end] {
                            write_message(w, ctx, i, &shape, false)?;
                        }
                        Ok(())
                    })?;
                    Ok(())
                })?;
            Ok(())
        })?;
    }
    Ok(())
}

/// `GetItem`: one response message per requested id.
pub(super) fn get_item(w: &mut Writer, ctx: Ctx, op: &Element) -> io::Result<()> {
    let shape = Shape::read(op.child(M, "ItemShape"));
    let ids = op
        .child(M, "ItemIds")
        .into_iter()
        .flat_map(|i| i.all(TYPES, "ItemId"));
    for id in ids {
        let found = match mailbox::resolve(ctx.user, id.attr("Id").unwrap_or_default()) {
            Some(Target::Message(i)) => Ok(i),
            Some(Target::Folder(_)) => Err(ITEM_NOT_FOUND),
            None => Err(ID_MALFORMED),
        };
        message(w, "GetItem", found.map(|_| None), |w| {
            w.create_element("m:Items")
                .write_inner_content(|w| match found {
                    Ok(i) => write_message(w, ctx, i, &shape, true),
                    Err(_) => Ok(()),
                })?;
            Ok(())
        })?;
    }
    Ok(())
}

/// `SyncFolderItems`: every message of the folder as a `Create`, at most
/// `MaxChangesReturned` at a time; the sync state records how many the client has.
pub(super) fn sync_folder_items(w: &mut Writer, ctx: Ctx, op: &Element) -> io::Result<()> {
    let shape = Shape::read(op.child(M, "ItemShape"));
    let folder = folder_ids(op.child(M, "SyncFolderId"))
        .next()
        .ok_or(super::FOLDER_NOT_FOUND)
        .and_then(|id| folder_of(ctx, id));
    let state = op
        .child(M, "SyncState")
        .map(Element::text)
        .unwrap_or_default();
    let max: usize = op
        .child(M, "MaxChangesReturned")
        .and_then(|m| m.text().parse().ok())
        .unwrap_or(512);
    let found = folder.and_then(|f| {
        let prefix = format!("exgate-lab-sync/{}/", f.distinguished);
        let seen = if state.is_empty() {
            Some(0)
        } else {
            STANDARD
                .decode(state)
                .ok()
                .and_then(|s| String::from_utf8(s).ok())
                .and_then(|s| s.strip_prefix(&prefix)?.parse::<usize>().ok())
        };
        seen.map(|seen| (f, prefix, seen)).ok_or(BAD_SYNC_STATE)
    });
    message(
        w,
        "SyncFolderItems",
        found.as_ref().map(|_| None).map_err(|e| *e),
        |w| {
            let Ok((folder, prefix, seen)) = &found else {
                return Ok(());
            };
            let all: Vec<usize> = mailbox::messages_in(folder).map(|(i, _)| i).collect();
            let new: Vec<usize> = all.iter().copied().skip(*seen).take(max).collect();
            let now = seen + new.len();
            leaf(w, "m:SyncState", &STANDARD.encode(format!("{prefix}{now}")))?;
            leaf(
                w,
                "m:IncludesLastItemInRange",
                &(now >= all.len()).to_string(),
            )?;
            w.create_element("m:Changes").write_inner_content(|w| {
                for i in new {
                    w.create_element("t:Create")
                        .write_inner_content(|w| write_message(w, ctx, i, &shape, true))?;
                }
                Ok(())
            })?;
            Ok(())
        },
    )
}

/// One message with what `shape` asks for, in `ItemType`'s then `MessageType`'s schema
/// order. `full` is GetItem's (and SyncFolderItems') default shape, which adds the
/// body and recipients that FindItem never returns.
fn write_message(w: &mut Writer, ctx: Ctx, i: usize, shape: &Shape, full: bool) -> io::Result<()> {
    let m: &Message = &MESSAGES[i];
    let want = |uri: &str, in_default: bool| shape.wants(uri, in_default);
    let target = Target::Message(i);
    w.create_element("t:Message").write_inner_content(|w| {
        w.create_element("t:ItemId")
            .with_attribute(("Id", mailbox::id(ctx.user, target).as_str()))
            .with_attribute(("ChangeKey", mailbox::change_key(target).as_str()))
            .write_empty()?;
        if want("item:ParentFolderId", false) {
            let parent =
                Target::Folder(mailbox::folder_named(m.folder).expect("a message's folder exists"));
            w.create_element("t:ParentFolderId")
                .with_attribute(("Id", mailbox::id(ctx.user, parent).as_str()))
                .with_attribute(("ChangeKey", mailbox::change_key(parent).as_str()))
                .write_empty()?;
        }
        if want("item:ItemClass", true) {
            leaf(w, "t:ItemClass", "IPM.Note")?;
        }
        if want("item:Subject", true) {
            leaf(w, "t:Subject", m.subject)?;
        }
        if want("item:Sensitivity", true) {
            leaf(w, "t:Sensitivity", "Normal")?;
        }
        if full && want("item:Body", true) {
            let (kind, text) = if shape.body_html {
                let escaped = quick_xml::escape::escape(m.body);
                (
                    "HTML",
                    format!("<html><body><p>{escaped}</p></body></html>"),
                )
            } else {
                ("Text", m.body.to_owned())
            };
            w.create_element("t:Body")
                .with_attribute(("BodyType", kind))
                .with_attribute(("IsTruncated", "false"))
                .write_text_content(BytesText::new(&text))?;
        }
        if want("item:DateTimeReceived", true) {
            leaf(w, "t:DateTimeReceived", m.received)?;
        }
        if want("item:Size", true) {
            leaf(
                w,
                "t:Size",
                &(1024 + m.subject.len() + m.body.len()).to_string(),
            )?;
        }
        if want("item:Importance", true) {
            leaf(w, "t:Importance", "Normal")?;
        }
        if want("item:IsDraft", true) {
            leaf(w, "t:IsDraft", "false")?;
        }
        if want("item:DateTimeSent", true) {
            leaf(w, "t:DateTimeSent", m.received)?;
        }
        if want("item:DateTimeCreated", true) {
            leaf(w, "t:DateTimeCreated", m.received)?;
        }
        if want("item:DisplayTo", true) {
            leaf(w, "t:DisplayTo", &mailbox::display_name(ctx.user))?;
        }
        if want("item:HasAttachments", true) {
            leaf(w, "t:HasAttachments", "false")?;
        }
        if want("item:LastModifiedTime", false) {
            leaf(w, "t:LastModifiedTime", m.received)?;
        }
        if want("message:Sender", full) {
            w.create_element("t:Sender")
                .write_inner_content(|w| write_mailbox(w, m.from_name, m.from))?;
        }
        if full && want("message:ToRecipients", true) {
            let name = mailbox::display_name(ctx.user);
            w.create_element("t:ToRecipients")
                .write_inner_content(|w| write_mailbox(w, &name, ctx.user.upn))?;
        }
        if want("message:ConversationTopic", false) {
            leaf(w, "t:ConversationTopic", m.subject)?;
        }
        if want("message:From", true) {
            w.create_element("t:From")
                .write_inner_content(|w| write_mailbox(w, m.from_name, m.from))?;
        }
        if want("message:InternetMessageId", false) {
            leaf(w, "t:InternetMessageId", &format!("<lab-{i}@contoso.com>"))?;
        }
        if want("message:IsRead", true) {
            leaf(w, "t:IsRead", &m.is_read.to_string())?;
        }
        Ok(())
    })?;
    Ok(())
}

/// MS-OXWSCORE `EmailAddressType`, as a `t:Mailbox`.
pub(super) fn write_mailbox(w: &mut Writer, name: &str, address: &str) -> io::Result<()> {
    w.create_element("t:Mailbox").write_inner_content(|w| {
        leaf(w, "t:Name", name)?;
        leaf(w, "t:EmailAddress", address)?;
        leaf(w, "t:RoutingType", "SMTP")?;
        leaf(w, "t:MailboxType", "Mailbox")?;
        Ok(())
    })?;
    Ok(())
}
