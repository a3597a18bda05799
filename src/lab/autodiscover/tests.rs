//! Autodiscover's answers, parsed back: the settings and URLs a client reads.

use hyper::{HeaderMap, StatusCode};

use super::{pox, soap, v2};
use crate::lab::soap::{AUTODISCOVER, ClientBase, Element, SOAP};
use crate::policy::Deployment;

const OUTLOOK: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
const RESPONSE: &str = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";

/// What a client reaching exgate at `https://mail.example.net:8443` sends along.
fn base() -> ClientBase {
    let mut h = HeaderMap::new();
    h.insert("host", "mail.example.net:8443".parse().unwrap());
    h.insert("x-forwarded-proto", "https".parse().unwrap());
    ClientBase::from_headers(&h, Deployment::Online)
}

/// The first descendant along `path`, every step in namespace `ns`.
fn at<'a>(e: &'a Element, ns: &str, path: &str) -> &'a Element {
    path.split('/').fold(e, |e, step| {
        e.child(ns, step)
            .unwrap_or_else(|| panic!("no {step} in {e:#?}"))
    })
}

fn get_user_settings(deployment: Deployment, user: &str, settings: &[&str]) -> Element {
    let settings: String = settings
        .iter()
        .map(|s| format!("<a:Setting>{s}</a:Setting>"))
        .collect();
    let body = format!(
        r#"<?xml version='1.0' encoding='utf-8'?><s:Envelope xmlns:s="{SOAP}" xmlns:a="{AUTODISCOVER}" xmlns:wsa="http://www.w3.org/2005/08/addressing"><s:Header><a:RequestedServerVersion>Exchange2010</a:RequestedServerVersion><wsa:Action>http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettings</wsa:Action></s:Header><s:Body><a:GetUserSettingsRequestMessage><a:Request><a:Users><a:User><a:Mailbox>{user}</a:Mailbox></a:User></a:Users><a:RequestedSettings>{settings}</a:RequestedSettings></a:Request></a:GetUserSettingsRequestMessage></s:Body></s:Envelope>"#
    );
    let (status, text) = soap(deployment, &base(), body.as_bytes());
    assert_eq!(status, StatusCode::OK);
    Element::parse(text.as_bytes()).unwrap()
}

fn user_response(root: &Element) -> &Element {
    let body = root.child(SOAP, "Body").unwrap();
    at(
        body,
        AUTODISCOVER,
        "GetUserSettingsResponseMessage/Response/UserResponses/UserResponse",
    )
}

#[test]
fn get_user_settings_answers_what_it_has_at_the_clients_address() {
    let wanted = [
        "ExternalEwsUrl",
        "InternalEwsUrl",
        "UserDisplayName",
        "UserDN",
        "CasVersion",
        "EwsSupportedSchemas",
        "AutoDiscoverSMTPAddress",
        "ExternalEwsVersion",
        "AlternateMailboxes",
        "NoSuchSetting",
    ];
    let root = get_user_settings(Deployment::OnPremises, "user02@contoso.com", &wanted);
    let header = root.child(SOAP, "Header").unwrap();
    let version = at(header, AUTODISCOVER, "ServerVersionInfo");
    assert_eq!(at(version, AUTODISCOVER, "MinorVersion").text(), "2");
    let user = user_response(&root);
    assert_eq!(at(user, AUTODISCOVER, "ErrorCode").text(), "NoError");
    let settings: Vec<(&str, &str)> = at(user, AUTODISCOVER, "UserSettings")
        .children
        .iter()
        .map(|s| {
            (
                at(s, AUTODISCOVER, "Name").text(),
                at(s, AUTODISCOVER, "Value").text(),
            )
        })
        .collect();
    let value = |name: &str| settings.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    assert_eq!(
        value("ExternalEwsUrl"),
        Some("https://mail.example.net:8443/EWS/Exchange.asmx")
    );
    assert_eq!(value("InternalEwsUrl"), value("ExternalEwsUrl"));
    assert_eq!(value("UserDisplayName"), Some("Lab User 02"));
    assert!(
        value("UserDN")
            .unwrap()
            .ends_with("/cn=Recipients/cn=user02")
    );
    assert_eq!(value("CasVersion"), Some("15.02.1544.004"));
    assert!(
        value("EwsSupportedSchemas")
            .unwrap()
            .ends_with("Exchange2013_SP1, Exchange2015")
    );
    assert_eq!(value("AutoDiscoverSMTPAddress"), Some("user02@contoso.com"));
    assert_eq!(value("ExternalEwsVersion"), Some("15.00.0000.000"));
    assert_eq!(settings.len(), 8);
    let errors: Vec<(&str, &str)> = at(user, AUTODISCOVER, "UserSettingErrors")
        .children
        .iter()
        .map(|e| {
            (
                at(e, AUTODISCOVER, "SettingName").text(),
                at(e, AUTODISCOVER, "ErrorCode").text(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("AlternateMailboxes", "SettingIsNotAvailable"),
            ("NoSuchSetting", "InvalidSetting")
        ]
    );
}

#[test]
fn get_user_settings_of_an_unknown_address_is_an_invalid_user() {
    let root = get_user_settings(
        Deployment::Online,
        "nobody@contoso.com",
        &["ExternalEwsUrl"],
    );
    let user = user_response(&root);
    assert_eq!(at(user, AUTODISCOVER, "ErrorCode").text(), "InvalidUser");
    assert!(user.child(AUTODISCOVER, "UserSettings").is_none());
}

#[test]
fn other_soap_autodiscover_operations_are_faults() {
    let body = format!(
        r#"<s:Envelope xmlns:s="{SOAP}" xmlns:a="{AUTODISCOVER}"><s:Body><a:GetDomainSettingsRequestMessage/></s:Body></s:Envelope>"#
    );
    for body in [body.as_bytes(), b"not xml"] {
        let (status, text) = soap(Deployment::Online, &base(), body);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let root = Element::parse(text.as_bytes()).unwrap();
        let fault = at(&root, SOAP, "Body/Fault");
        assert_eq!(fault.child("", "faultcode").unwrap().text(), "s:Client");
    }
}

fn pox_request(address: &str, schema: &str) -> Element {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>{address}</EMailAddress><AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request></Autodiscover>"#
    );
    let (status, text) = pox(Deployment::Online, &base(), body.as_bytes());
    assert_eq!(status, StatusCode::OK);
    Element::parse(text.as_bytes()).unwrap()
}

#[test]
fn pox_answers_outlook_with_exch_expr_and_web_at_the_clients_address() {
    let root = pox_request("user02@contoso.com", OUTLOOK);
    assert!(root.is(RESPONSE, "Autodiscover"));
    let response = at(&root, OUTLOOK, "Response");
    assert_eq!(
        at(response, OUTLOOK, "User/AutoDiscoverSMTPAddress").text(),
        "user02@contoso.com"
    );
    let account = at(response, OUTLOOK, "Account");
    assert_eq!(at(account, OUTLOOK, "Action").text(), "settings");
    let protocol = |kind: &str| {
        account
            .all(OUTLOOK, "Protocol")
            .find(|p| p.child(OUTLOOK, "Type").is_some_and(|t| t.text() == kind))
            .unwrap_or_else(|| panic!("no {kind} protocol"))
    };
    let ews = "https://mail.example.net:8443/EWS/Exchange.asmx";
    for kind in ["EXCH", "EXPR"] {
        let p = protocol(kind);
        assert_eq!(at(p, OUTLOOK, "EwsUrl").text(), ews);
        assert_eq!(at(p, OUTLOOK, "ASUrl").text(), ews);
        assert!(
            at(p, OUTLOOK, "OABUrl")
                .text()
                .starts_with("https://mail.example.net:8443/OAB/")
        );
        assert!(!at(p, OUTLOOK, "Server").text().is_empty());
    }
    assert_eq!(
        at(protocol("EXPR"), OUTLOOK, "Server").text(),
        "mail.example.net:8443"
    );
    assert_eq!(at(protocol("EXPR"), OUTLOOK, "SSL").text(), "On");
    // 15.20.8069 in Outlook's ServerVersion encoding.
    assert_eq!(
        at(protocol("EXCH"), OUTLOOK, "ServerVersion").text(),
        "73D49F85"
    );
    let web = protocol("WEB");
    assert_eq!(
        at(web, OUTLOOK, "External/OWAUrl").text(),
        "https://mail.example.net:8443/owa/"
    );
    let mapi = account
        .all(OUTLOOK, "Protocol")
        .find(|p| p.attr("Type") == Some("mapiHttp"))
        .unwrap();
    assert!(
        at(mapi, OUTLOOK, "MailStore/ExternalUrl")
            .text()
            .contains("/mapi/emsmdb/?MailboxId=")
    );
}

#[test]
fn pox_errors_carry_exchanges_numbers() {
    let code = |root: &Element| {
        let error = at(root, RESPONSE, "Response/Error");
        at(error, RESPONSE, "ErrorCode").text().to_owned()
    };
    assert_eq!(code(&pox_request("nobody@contoso.com", OUTLOOK)), "500");
    assert_eq!(code(&pox_request("user02@contoso.com", "urn:other")), "601");
    let (_, text) = pox(Deployment::Online, &base(), b"");
    assert_eq!(code(&Element::parse(text.as_bytes()).unwrap()), "600");
}

#[test]
fn pox_answers_activesync_with_the_mobilesync_url() {
    let mobile =
        "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006";
    let body = format!(
        r#"<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"><Request><EMailAddress>user03@contoso.com</EMailAddress><AcceptableResponseSchema>{mobile}</AcceptableResponseSchema></Request></Autodiscover>"#
    );
    let (_, text) = pox(Deployment::OnPremises, &base(), body.as_bytes());
    let root = Element::parse(text.as_bytes()).unwrap();
    let server = at(&root, mobile, "Response/Action/Settings/Server");
    assert_eq!(at(server, mobile, "Type").text(), "MobileSync");
    assert_eq!(
        at(server, mobile, "Url").text(),
        "https://mail.example.net:8443/Microsoft-Server-ActiveSync"
    );
}

#[test]
fn autodiscover_v2_answers_each_protocol_in_both_url_forms() {
    let b = base();
    let path = "/autodiscover/autodiscover.json/v1.0/user02%40contoso.com";
    let cases = [
        (
            path,
            "Protocol=EWS",
            "EWS",
            "https://mail.example.net:8443/EWS/Exchange.asmx",
        ),
        (
            path,
            "Protocol=autodiscoverv1",
            "AutodiscoverV1",
            "https://mail.example.net:8443/autodiscover/autodiscover.xml",
        ),
        (
            "/autodiscover/autodiscover.json",
            "Email=user02%40contoso.com&Protocol=ActiveSync",
            "ActiveSync",
            "https://mail.example.net:8443/Microsoft-Server-ActiveSync",
        ),
    ];
    for (path, query, protocol, url) in cases {
        let (status, json) = v2(&b, path, query);
        assert_eq!(status, StatusCode::OK, "{query}");
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json, serde_json::json!({"Protocol": protocol, "Url": url}));
    }
    let (status, json) = v2(&b, path, "Protocol=Pop3");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["ErrorCode"], "InvalidProtocol");
    assert!(json["ErrorMessage"].as_str().unwrap().contains("'Pop3'"));
    let (status, _) = v2(&b, "/autodiscover/autodiscover.json", "Protocol=EWS");
    assert_eq!(status, StatusCode::BAD_REQUEST, "no address");
}
