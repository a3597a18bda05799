//! The small fixed mailbox every lab user has: a folder hierarchy with Exchange's
//! distinguished folders and three messages in the Inbox. Ids and change keys are
//! stable (derived from the owner and the folder or message), so a client can keep
//! them across requests and lab restarts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::LabUser;

/// A folder of the hierarchy (MS-OXWSFOLD `BaseFolderType`).
#[derive(Debug, PartialEq, Eq)]
pub struct Folder {
    /// The distinguished folder id (MS-OXWSCORE `DistinguishedFolderIdNameType`).
    pub distinguished: &'static str,
    pub display_name: &'static str,
    /// `FolderClass`, e.g. `IPF.Note`.
    pub class: &'static str,
    /// The element EWS answers with: `Folder`, `CalendarFolder`, `ContactsFolder`, `TasksFolder`.
    pub element: &'static str,
    /// The distinguished id of the parent; the root has none.
    pub parent: Option<&'static str>,
}

/// A message (MS-OXWSMSG `MessageType`).
#[derive(Debug)]
pub struct Message {
    /// The distinguished id of the folder holding it.
    pub folder: &'static str,
    pub subject: &'static str,
    pub body: &'static str,
    pub from_name: &'static str,
    pub from: &'static str,
    /// `DateTimeReceived` (and sent), UTC.
    pub received: &'static str,
    pub is_read: bool,
}

const fn folder(
    distinguished: &'static str,
    display_name: &'static str,
    class: &'static str,
    element: &'static str,
    parent: Option<&'static str>,
) -> Folder {
    Folder {
        distinguished,
        display_name,
        class,
        element,
        parent,
    }
}

/// The hierarchy, parents before children: the root, the non-IPM subtree's
/// `msgfolderroot` ("Top of Information Store") and the default folders under it.
pub const FOLDERS: [Folder; 11] = [
    folder("root", "", "", "Folder", None),
    folder(
        "msgfolderroot",
        "Top of Information Store",
        "IPF.Note",
        "Folder",
        Some("root"),
    ),
    folder(
        "inbox",
        "Inbox",
        "IPF.Note",
        "Folder",
        Some("msgfolderroot"),
    ),
    folder(
        "drafts",
        "Drafts",
        "IPF.Note",
        "Folder",
        Some("msgfolderroot"),
    ),
    folder(
        "sentitems",
        "Sent Items",
        "IPF.Note",
        "Folder",
        Some("msgfolderroot"),
    ),
    folder(
        "deleteditems",
        "Deleted Items",
        "IPF.Note",
        "Folder",
        Some("msgfolderroot"),
    ),
    folder(
        "outbox",
        "Outbox",
        "IPF.Note",
        "Folder",
        Some("msgfolderroot"),
    ),
    folder(
        "junkemail",
        "Junk Email",
        "IPF.Note",
        "Folder",
        Some("msgfolderroot"),
    ),
    folder(
        "calendar",
        "Calendar",
        "IPF.Appointment",
        "CalendarFolder",
        Some("msgfolderroot"),
    ),
    folder(
        "contacts",
        "Contacts",
        "IPF.Contact",
        "ContactsFolder",
        Some("msgfolderroot"),
    ),
    folder(
        "tasks",
        "Tasks",
        "IPF.Task",
        "TasksFolder",
        Some("msgfolderroot"),
    ),
];

/// The Inbox, newest first (the order Outlook and FindItem show by default).
pub const MESSAGES: [Message; 3] = [
    Message {
        folder: "inbox",
        subject: "Welcome to the exgate lab",
        body: "This mailbox lives in the lab's mock Exchange. Every request that reached it went through exgate first.",
        from_name: "Lab Administrator",
        from: "admin@contoso.com",
        received: "2025-03-03T09:15:00Z",
        is_read: false,
    },
    Message {
        folder: "inbox",
        subject: "Q3 planning: pilot group moves off Basic",
        body: "The pilot group's authentication policy blocks Basic for Outlook's protocols. Please sign in with modern authentication.",
        from_name: "Lab Administrator",
        from: "admin@contoso.com",
        received: "2025-03-02T16:40:00Z",
        is_read: true,
    },
    Message {
        folder: "inbox",
        subject: "Your MFA registration is complete",
        body: "You can now approve sign-ins with your authenticator. The lab's one-time code is 246810.",
        from_name: "Security Team",
        from: "security@contoso.com",
        received: "2025-03-01T08:05:00Z",
        is_read: true,
    },
];

/// Finds a folder by its distinguished id.
pub fn folder_named(distinguished: &str) -> Option<&'static Folder> {
    FOLDERS.iter().find(|f| f.distinguished == distinguished)
}

/// The folders whose parent is `parent`.
pub fn children(parent: &Folder) -> impl Iterator<Item = &'static Folder> {
    let name = parent.distinguished;
    FOLDERS.iter().filter(move |f| f.parent == Some(name))
}

/// The messages a folder holds.
pub fn messages_in(folder: &Folder) -> impl Iterator<Item = (usize, &'static Message)> {
    let name = folder.distinguished;
    MESSAGES
        .iter()
        .enumerate()
        .filter(move |(_, m)| m.folder == name)
}

/// What an id names: a folder or a message (by its index in [`MESSAGES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Folder(&'static Folder),
    Message(usize),
}

/// The stable id of a folder or message of `owner`'s mailbox (an opaque base64 string,
/// as EWS ids are).
pub fn id(owner: &LabUser, target: Target) -> String {
    STANDARD.encode(format!("exgate-lab/{}/{}", owner.upn, path(target)))
}

/// The change key that goes with [`id`]: the lab's mailbox never changes, so it is the
/// first version of each object.
pub fn change_key(target: Target) -> String {
    STANDARD.encode(format!("v1/{}", path(target)))
}

fn path(target: Target) -> String {
    match target {
        Target::Folder(f) => format!("folder/{}", f.distinguished),
        Target::Message(i) => format!("message/{i}"),
    }
}

/// Reads an id back: what it names, if it is an id of `owner`'s mailbox.
pub fn resolve(owner: &LabUser, id: &str) -> Option<Target> {
    let raw = STANDARD.decode(id.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let rest = text.strip_prefix("exgate-lab/")?.strip_prefix(owner.upn)?;
    match rest.strip_prefix('/')?.split_once('/')? {
        ("folder", name) => folder_named(name).map(Target::Folder),
        ("message", i) => {
            let i: usize = i.parse().ok()?;
            (i < MESSAGES.len()).then_some(Target::Message(i))
        }
        _ => None,
    }
}

/// The display name of a lab user.
pub fn display_name(user: &LabUser) -> String {
    let alias = user.upn.split('@').next().unwrap_or(user.upn);
    let digits: String = alias.chars().filter(char::is_ascii_digit).collect();
    format!("Lab User {digits}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::USERS;

    #[test]
    fn ids_are_stable_and_name_only_their_owners_objects() {
        let (a, b) = (&USERS[0], &USERS[1]);
        let inbox = Target::Folder(folder_named("inbox").unwrap());
        assert_eq!(id(a, inbox), id(a, inbox));
        assert_eq!(resolve(a, &id(a, inbox)), Some(inbox));
        assert_eq!(
            resolve(a, &id(a, Target::Message(2))),
            Some(Target::Message(2))
        );
        assert_eq!(resolve(b, &id(a, inbox)), None, "another user's id");
        assert_eq!(
            resolve(a, &id(a, Target::Message(3))),
            None,
            "no such message"
        );
        assert_eq!(resolve(a, "DUMMY"), None);
        assert_ne!(change_key(inbox), change_key(Target::Message(0)));
    }

    #[test]
    fn every_parent_comes_before_its_children() {
        for (i, f) in FOLDERS.iter().enumerate() {
            if let Some(p) = f.parent {
                assert!(FOLDERS[..i].iter().any(|q| q.distinguished == p), "{f:?}");
            }
        }
        assert_eq!(messages_in(folder_named("inbox").unwrap()).count(), 3);
        assert_eq!(display_name(&USERS[1]), "Lab User 02");
    }
}
