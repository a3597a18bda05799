//! `GetFolder` and `FindFolder` (MS-OXWSFOLD) over the lab mailbox's hierarchy.

use std::io;

use super::super::mailbox::{self, FOLDERS, Folder, Target};
use super::{Ctx, Shape, folder_ids, folder_of, message};
use crate::lab::soap::{Element, MESSAGES, Writer, leaf};

/// `GetFolder`: one response message per requested folder, in the request's order.
pub(super) fn get_folder(w: &mut Writer, ctx: Ctx, op: &Element) -> io::Result<()> {
    let shape = Shape::read(op.child(MESSAGES, "FolderShape"));
    for id in folder_ids(op.child(MESSAGES, "FolderIds")) {
        let found = folder_of(ctx, id);
        message(w, "GetFolder", found.map(|_| None), |w| {
            w.create_element("m:Folders")
                .write_inner_content(|w| match found {
                    Ok(f) => write_folder(w, ctx, f, &shape),
                    Err(_) => Ok(()),
                })?;
            Ok(())
        })?;
    }
    Ok(())
}

/// `FindFolder`: the subfolders of each parent, `Shallow` (children) or `Deep` (the
/// whole subtree, parents before children), paged by `IndexedPageFolderView`.
pub(super) fn find_folder(w: &mut Writer, ctx: Ctx, op: &Element) -> io::Result<()> {
    let shape = Shape::read(op.child(MESSAGES, "FolderShape"));
    let deep = op.attr("Traversal") == Some("Deep");
    let view = op.child(MESSAGES, "IndexedPageFolderView");
    let offset: usize = view
        .and_then(|v| v.attr("Offset"))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let max: usize = view
        .and_then(|v| v.attr("MaxEntriesReturned"))
        .and_then(|m| m.parse().ok())
        .unwrap_or(usize::MAX);
    for id in folder_ids(op.child(MESSAGES, "ParentFolderIds")) {
        let found = folder_of(ctx, id);
        message(w, "FindFolder", found.map(|_| None), |w| {
            let Ok(parent) = found else { return Ok(()) };
            let all: Vec<&Folder> = if deep {
                FOLDERS
                    .iter()
                    .filter(|f| descends_from(f, parent))
                    .collect()
            } else {
                mailbox::children(parent).collect()
            };
            let page: Vec<&Folder> = all.iter().copied().skip(offset).take(max).collect();
            let end = offset + page.len();
            w.create_element("m:RootFolder")
                .with_attribute(("IndexedPagingOffset", end.to_string().as_str()))
                .with_attribute(("TotalItemsInView", all.len().to_string().as_str()))
                .with_attribute((
                    "IncludesLastItemInRange",
                    if end >= all.len() { "true" } else { "false" },
                ))
                .write_inner_content(|w| {
                    w.create_element("t:Folders").write_inner_content(|w| {
                        for f in page {
                            write_folder(w, ctx, f, &shape)?;
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

fn descends_from(folder: &Folder, ancestor: &Folder) -> bool {
    let mut parent = folder.parent;
    while let Some(p) = parent {
        if p == ancestor.distinguished {
            return true;
        }
        parent = mailbox::folder_named(p).and_then(|f| f.parent);
    }
    false
}

/// One folder with the properties `shape` asks for, in the schema's order
/// (MS-OXWSFOLD `BaseFolderType`, then `FolderType`'s `UnreadCount`).
fn write_folder(w: &mut Writer, ctx: Ctx, f: &'static Folder, shape: &Shape) -> io::Result<()> {
    let unread = mailbox::messages_in(f).filter(|(_, m)| !m.is_read).count();
    let total = mailbox::messages_in(f).count();
    w.create_element(format!("t:{}", f.element))
        .write_inner_content(|w| {
            let target = Target::Folder(f);
            w.create_element("t:FolderId")
                .with_attribute(("Id", mailbox::id(ctx.user, target).as_str()))
                .with_attribute(("ChangeKey", mailbox::change_key(target).as_str()))
                .write_empty()?;
            if let Some(parent) = f.parent.and_then(mailbox::folder_named)
                && shape.wants("folder:ParentFolderId", false)
            {
                let target = Target::Folder(parent);
                w.create_element("t:ParentFolderId")
                    .with_attribute(("Id", mailbox::id(ctx.user, target).as_str()))
                    .with_attribute(("ChangeKey", mailbox::change_key(target).as_str()))
                    .write_empty()?;
            }
            if !f.class.is_empty() && shape.wants("folder:FolderClass", false) {
                leaf(w, "t:FolderClass", f.class)?;
            }
            if shape.wants("folder:DisplayName", true) {
                leaf(w, "t:DisplayName", f.display_name)?;
            }
            if shape.wants("folder:TotalCount", true) {
                leaf(w, "t:TotalCount", &total.to_string())?;
            }
            if shape.wants("folder:ChildFolderCount", true) {
                let n = mailbox::children(f).count();
                leaf(w, "t:ChildFolderCount", &n.to_string())?;
            }
            if shape.wants("folder:DistinguishedFolderId", false) {
                leaf(w, "t:DistinguishedFolderId", f.distinguished)?;
            }
            // CalendarFolderType and ContactsFolderType have no unread count.
            let mail_like = matches!(f.element, "Folder" | "TasksFolder");
            if mail_like && shape.wants("folder:UnreadCount", true) {
                leaf(w, "t:UnreadCount", &unread.to_string())?;
            }
            Ok(())
        })?;
    Ok(())
}
