//! Each operation's answer, parsed back with quick-xml: the elements a client reads.

use hyper::StatusCode;

use super::respond;
use crate::lab::USERS;
use crate::lab::mailbox::{self, Target, folder_named};
use crate::lab::soap::{ERRORS, Element, MESSAGES, SOAP, TYPES};
use crate::policy::Deployment;

/// The first descendant along `path` (`s:`, `m:`, `t:`, `e:` prefixed local names).
fn at<'a>(e: &'a Element, path: &str) -> &'a Element {
    path.split('/').fold(e, |e, step| {
        let (ns, name) = step_ns(step);
        e.child(ns, name)
            .unwrap_or_else(|| panic!("no {step} in {e:#?}"))
    })
}

fn step_ns(step: &str) -> (&'static str, &str) {
    let (prefix, name) = step.split_once(':').expect("a prefixed step");
    let ns = match prefix {
        "s" => SOAP,
        "m" => MESSAGES,
        "t" => TYPES,
        "e" => ERRORS,
        _ => panic!("unknown prefix {prefix}"),
    };
    (ns, name)
}

/// Every child `step` of `e`.
fn each<'a>(e: &'a Element, step: &'a str) -> Vec<&'a Element> {
    let (ns, name) = step_ns(step);
    e.all(ns, name).collect()
}

fn request(deployment: Deployment, user: usize, op: &str) -> (StatusCode, Element) {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}" xmlns:m="{MESSAGES}" xmlns:t="{TYPES}"><soap:Header><t:RequestedServerVersion Version="Exchange2016"/></soap:Header><soap:Body>{op}</soap:Body></soap:Envelope>"#
    );
    let (status, text) = respond(deployment, &USERS[user], body.as_bytes());
    (
        status,
        Element::parse(text.as_bytes()).expect("well-formed answer"),
    )
}

/// The answer to an operation that succeeded at the SOAP level.
fn answer(deployment: Deployment, op: &str) -> Element {
    let (status, root) = request(deployment, 1, op);
    assert_eq!(status, StatusCode::OK);
    root
}

/// Its response messages, each checked to be `m:<op>ResponseMessage`.
fn responses<'a>(root: &'a Element, op_name: &str) -> Vec<&'a Element> {
    let list = at(
        root,
        &format!("s:Body/m:{op_name}Response/m:ResponseMessages"),
    );
    let name = format!("{op_name}ResponseMessage");
    assert!(
        list.children.iter().all(|c| c.is(MESSAGES, &name)),
        "{list:#?}"
    );
    list.children.iter().collect()
}

fn code(message: &Element) -> (&str, &str) {
    (
        message.attr("ResponseClass").unwrap_or_default(),
        at(message, "m:ResponseCode").text(),
    )
}

const INBOX: &str = r#"<t:DistinguishedFolderId Id="inbox"/>"#;

#[test]
fn every_answer_carries_the_server_version_of_its_deployment() {
    for (deployment, minor, build) in [
        (Deployment::Online, "20", "8069"),
        (Deployment::OnPremises, "2", "1544"),
    ] {
        let (_, root) = request(
            deployment,
            1,
            "<m:ResolveNames><m:UnresolvedEntry>user02</m:UnresolvedEntry></m:ResolveNames>",
        );
        let info = at(&root, "s:Header/t:ServerVersionInfo");
        assert_eq!(info.attr("MajorVersion"), Some("15"));
        assert_eq!(info.attr("MinorVersion"), Some(minor));
        assert_eq!(info.attr("MajorBuildNumber"), Some(build));
    }
}

#[test]
fn exchangelibs_version_probe_gets_a_malformed_id_and_the_version_header() {
    let op = r#"<m:ConvertId DestinationFormat="EntryId"><m:SourceIds><t:AlternateId Id="DUMMY" Format="EwsId" Mailbox="DUMMY"/></m:SourceIds></m:ConvertId>"#;
    let (status, root) = request(Deployment::OnPremises, 1, op);
    assert_eq!(status, StatusCode::OK);
    assert!(
        at(&root, "s:Header/t:ServerVersionInfo")
            .attr("Version")
            .is_some()
    );
    let msg = at(
        &root,
        "s:Body/m:ConvertIdResponse/m:ResponseMessages/m:ConvertIdResponseMessage",
    );
    assert_eq!(code(msg), ("Error", "ErrorInvalidIdMalformed"));
    assert_eq!(at(msg, "m:MessageText").text(), "Id is malformed.");
}

#[test]
fn convert_id_turns_a_mailbox_id_into_hex_and_back() {
    let id = mailbox::id(&USERS[1], Target::Message(0));
    let op = format!(
        r#"<m:ConvertId DestinationFormat="HexEntryId"><m:SourceIds><t:AlternateId Id="{id}" Format="EwsId" Mailbox="user02@contoso.com"/></m:SourceIds></m:ConvertId>"#
    );
    let root = answer(Deployment::Online, &op);
    let msgs = responses(&root, "ConvertId");
    assert_eq!(code(msgs[0]), ("Success", "NoError"));
    let hex = at(msgs[0], "m:AlternateId").attr("Id").unwrap().to_owned();
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{hex}");
    let op = format!(
        r#"<m:ConvertId DestinationFormat="EwsId"><m:SourceIds><t:AlternateId Id="{hex}" Format="HexEntryId" Mailbox="user02@contoso.com"/></m:SourceIds></m:ConvertId>"#
    );
    let root = answer(Deployment::Online, &op);
    let msgs = responses(&root, "ConvertId");
    assert_eq!(at(msgs[0], "m:AlternateId").attr("Id"), Some(id.as_str()));
}

#[test]
fn get_folder_answers_each_distinguished_folder_in_order() {
    let op = r#"<m:GetFolder><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox"/><t:DistinguishedFolderId Id="archiveroot"/><t:DistinguishedFolderId Id="calendar"/><t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>user01@contoso.com</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId><t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>nobody@contoso.com</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId></m:FolderIds></m:GetFolder>"#;
    let root = answer(Deployment::OnPremises, op);
    let msgs = responses(&root, "GetFolder");
    assert_eq!(msgs.len(), 5);
    let inbox = at(msgs[0], "m:Folders/t:Folder");
    assert_eq!(at(inbox, "t:DisplayName").text(), "Inbox");
    assert_eq!(at(inbox, "t:FolderClass").text(), "IPF.Note");
    assert_eq!(at(inbox, "t:TotalCount").text(), "3");
    assert_eq!(at(inbox, "t:UnreadCount").text(), "1");
    assert_eq!(at(inbox, "t:DistinguishedFolderId").text(), "inbox");
    let id = at(inbox, "t:FolderId").attr("Id").unwrap();
    assert_eq!(
        mailbox::resolve(&USERS[1], id),
        Some(Target::Folder(folder_named("inbox").unwrap()))
    );
    assert_eq!(code(msgs[1]), ("Error", "ErrorFolderNotFound"));
    let calendar = at(msgs[2], "m:Folders/t:CalendarFolder");
    assert!(calendar.child(TYPES, "UnreadCount").is_none());
    assert_eq!(code(msgs[3]), ("Error", "ErrorAccessDenied"));
    assert_eq!(code(msgs[4]), ("Error", "ErrorNonExistentMailbox"));
}

#[test]
fn find_folder_lists_children_or_the_whole_subtree() {
    let op = |traversal: &str, parent: &str| {
        format!(
            r#"<m:FindFolder Traversal="{traversal}"><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="folder:DisplayName"/><t:FieldURI FieldURI="folder:ParentFolderId"/></t:AdditionalProperties></m:FolderShape><m:ParentFolderIds><t:DistinguishedFolderId Id="{parent}"/></m:ParentFolderIds></m:FindFolder>"#
        )
    };
    let names = |traversal: &str, parent: &str| -> Vec<String> {
        let root = answer(Deployment::Online, &op(traversal, parent));
        let msgs = responses(&root, "FindFolder");
        let root = at(msgs[0], "m:RootFolder");
        assert_eq!(root.attr("IncludesLastItemInRange"), Some("true"));
        let folders = at(root, "t:Folders");
        assert_eq!(
            root.attr("TotalItemsInView").unwrap(),
            folders.children.len().to_string()
        );
        folders
            .children
            .iter()
            .map(|f| at(f, "t:DisplayName").text().to_owned())
            .collect()
    };
    assert_eq!(names("Shallow", "root"), ["Top of Information Store"]);
    let deep = names("Deep", "root");
    assert_eq!(deep.len(), 10);
    assert!(deep.contains(&"Inbox".to_owned()) && deep.contains(&"Tasks".to_owned()));
    assert_eq!(names("Shallow", "msgfolderroot").len(), 9);
    assert!(names("Deep", "inbox").is_empty());
}

#[test]
fn find_item_pages_the_inbox_newest_first() {
    let op = |offset: usize| {
        format!(
            r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/></t:AdditionalProperties></m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="2" Offset="{offset}" BasePoint="Beginning"/><m:ParentFolderIds>{INBOX}</m:ParentFolderIds></m:FindItem>"#
        )
    };
    let root = answer(Deployment::Online, &op(0));
    let msgs = responses(&root, "FindItem");
    let root = at(msgs[0], "m:RootFolder");
    assert_eq!(root.attr("TotalItemsInView"), Some("3"));
    assert_eq!(root.attr("IncludesLastItemInRange"), Some("false"));
    assert_eq!(root.attr("IndexedPagingOffset"), Some("2"));
    let items = each(at(root, "t:Items"), "t:Message");
    assert_eq!(items.len(), 2);
    assert_eq!(
        at(items[0], "t:Subject").text(),
        "Welcome to the exgate lab"
    );
    assert!(
        items[0].child(TYPES, "Body").is_none(),
        "FindItem returns no body"
    );
    assert!(
        items[0].child(TYPES, "IsRead").is_none(),
        "IdOnly plus Subject"
    );
    let root = answer(Deployment::Online, &op(2));
    let msgs = responses(&root, "FindItem");
    let root = at(msgs[0], "m:RootFolder");
    assert_eq!(root.attr("IncludesLastItemInRange"), Some("true"));
    let items = each(at(root, "t:Items"), "t:Message");
    assert_eq!(
        at(items[0], "t:Subject").text(),
        "Your MFA registration is complete"
    );
}

#[test]
fn find_item_with_a_restriction_says_the_lab_cannot_filter() {
    let op = format!(
        r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:Restriction><t:Exists><t:FieldURI FieldURI="item:Subject"/></t:Exists></m:Restriction><m:ParentFolderIds>{INBOX}</m:ParentFolderIds></m:FindItem>"#
    );
    let root = answer(Deployment::Online, &op);
    let msgs = responses(&root, "FindItem");
    assert_eq!(code(msgs[0]), ("Error", "ErrorUnsupportedQueryFilter"));
}

#[test]
fn get_item_returns_the_subject_and_body_in_the_asked_format() {
    let id = mailbox::id(&USERS[1], Target::Message(1));
    let foreign = mailbox::id(&USERS[0], Target::Message(1));
    for (body_type, expect) in [("Text", "Text"), ("HTML", "HTML"), ("Best", "Text")] {
        let op = format!(
            r#"<m:GetItem><m:ItemShape><t:BaseShape>Default</t:BaseShape><t:BodyType>{body_type}</t:BodyType></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/><t:ItemId Id="{foreign}"/></m:ItemIds></m:GetItem>"#
        );
        let root = answer(Deployment::OnPremises, &op);
        let msgs = responses(&root, "GetItem");
        let message = at(msgs[0], "m:Items/t:Message");
        assert_eq!(
            at(message, "t:Subject").text(),
            "Q3 planning: pilot group moves off Basic"
        );
        let body = at(message, "t:Body");
        assert_eq!(body.attr("BodyType"), Some(expect));
        assert!(
            body.text().contains("authentication policy blocks Basic"),
            "{body:?}"
        );
        assert_eq!(
            at(message, "t:From/t:Mailbox/t:EmailAddress").text(),
            "admin@contoso.com"
        );
        assert_eq!(
            at(message, "t:ToRecipients/t:Mailbox/t:EmailAddress").text(),
            "user02@contoso.com"
        );
        assert_eq!(at(message, "t:ItemId").attr("Id"), Some(id.as_str()));
        assert_eq!(
            code(msgs[1]),
            ("Error", "ErrorInvalidIdMalformed"),
            "another user's item"
        );
    }
}

#[test]
fn resolve_names_succeeds_warns_or_fails_by_the_number_of_matches() {
    let op = |entry: &str| {
        format!(
            r#"<m:ResolveNames ReturnFullContactData="true"><m:UnresolvedEntry>{entry}</m:UnresolvedEntry></m:ResolveNames>"#
        )
    };
    let root = answer(Deployment::Online, &op("SMTP:user02@contoso.com"));
    let msgs = responses(&root, "ResolveNames");
    assert_eq!(code(msgs[0]), ("Success", "NoError"));
    let resolution = at(msgs[0], "m:ResolutionSet/t:Resolution");
    assert_eq!(
        at(resolution, "t:Mailbox/t:EmailAddress").text(),
        "user02@contoso.com"
    );
    assert_eq!(
        at(resolution, "t:Contact/t:DisplayName").text(),
        "Lab User 02"
    );
    let root = answer(Deployment::Online, &op("lab"));
    let msgs = responses(&root, "ResolveNames");
    assert_eq!(
        code(msgs[0]),
        ("Warning", "ErrorNameResolutionMultipleResults")
    );
    assert_eq!(
        at(msgs[0], "m:ResolutionSet").attr("TotalItemsInView"),
        Some("3")
    );
    let root = answer(Deployment::Online, &op("nobody"));
    let msgs = responses(&root, "ResolveNames");
    assert_eq!(code(msgs[0]), ("Error", "ErrorNameResolutionNoResults"));
    assert!(msgs[0].child(MESSAGES, "ResolutionSet").is_none());
}

#[test]
fn sync_folder_items_hands_out_the_inbox_in_batches_then_nothing() {
    let op = |state: &str| {
        format!(
            r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/></t:AdditionalProperties></m:ItemShape><m:SyncFolderId>{INBOX}</m:SyncFolderId>{state}<m:MaxChangesReturned>2</m:MaxChangesReturned></m:SyncFolderItems>"#
        )
    };
    let mut state = String::new();
    let mut seen = Vec::new();
    for (batch, last) in [(2, "false"), (1, "true"), (0, "true")] {
        let root = answer(Deployment::Online, &op(&state));
        let msgs = responses(&root, "SyncFolderItems");
        assert_eq!(code(msgs[0]), ("Success", "NoError"));
        assert_eq!(at(msgs[0], "m:IncludesLastItemInRange").text(), last);
        let creates = each(at(msgs[0], "m:Changes"), "t:Create");
        assert_eq!(creates.len(), batch);
        seen.extend(
            creates
                .iter()
                .map(|c| at(c, "t:Message/t:Subject").text().to_owned()),
        );
        state = format!(
            "<m:SyncState>{}</m:SyncState>",
            at(msgs[0], "m:SyncState").text()
        );
    }
    assert_eq!(seen.len(), 3);
    let root = answer(Deployment::Online, &op("<m:SyncState>bogus</m:SyncState>"));
    let msgs = responses(&root, "SyncFolderItems");
    assert_eq!(code(msgs[0]), ("Error", "ErrorInvalidSyncStateData"));
}

#[test]
fn what_the_lab_does_not_implement_is_a_soap_fault() {
    let cases = [
        (&b"<m:CreateItem/>"[..], "ErrorSchemaValidation"),
        (b"", "ErrorSchemaValidation"),
        (b"<FindItem/>", "ErrorSchemaValidation"),
    ];
    for (op, expect) in cases {
        let body = if op.is_empty() || op.starts_with(b"<F") {
            op.to_vec()
        } else {
            format!(r#"<s:Envelope xmlns:s="{SOAP}" xmlns:m="{MESSAGES}"><s:Body>{}</s:Body></s:Envelope>"#, String::from_utf8_lossy(op)).into_bytes()
        };
        let (status, text) = respond(Deployment::Online, &USERS[1], &body);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let root = Element::parse(text.as_bytes()).unwrap();
        let fault = at(&root, "s:Body/s:Fault");
        assert_eq!(
            fault.child("", "faultcode").unwrap().text(),
            format!("a:{expect}")
        );
        let detail = fault.child("", "detail").unwrap();
        assert_eq!(at(detail, "e:ResponseCode").text(), expect);
    }
    let body = format!(
        r#"<s:Envelope xmlns:s="{SOAP}" xmlns:m="{MESSAGES}" xmlns:t="{TYPES}"><s:Header><t:RequestedServerVersion Version="Exchange2099"/></s:Header><s:Body><m:GetFolder/></s:Body></s:Envelope>"#
    );
    let (status, text) = respond(Deployment::Online, &USERS[1], body.as_bytes());
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text.contains("ErrorInvalidServerVersion"), "{text}");
}
