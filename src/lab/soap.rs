//! XML for the mock Exchange's SOAP and POX services, on quick-xml: requests are read
//! into a small namespace-resolved tree ([`Element`]), answers are written with
//! quick-xml's writer, and [`ClientBase`] is the address the client used, which every
//! URL in an answer names.

use std::io;

use hyper::HeaderMap;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::policy::Deployment;

/// SOAP 1.1 envelope namespace.
pub const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// EWS messages namespace (MS-OXWSCORE).
pub const MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// EWS types namespace (MS-OXWSCORE).
pub const TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
/// EWS SOAP fault detail namespace (MS-OXWSCORE 2.2.4).
pub const ERRORS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";
/// SOAP Autodiscover namespace (MS-OXWSADISC).
pub const AUTODISCOVER: &str = "http://schemas.microsoft.com/exchange/2010/Autodiscover";
/// WS-Addressing, which SOAP Autodiscover's headers use (MS-OXWSADISC).
pub const ADDRESSING: &str = "http://www.w3.org/2005/08/addressing";
/// XML Schema instance (`xsi:type`, `xsi:nil`).
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The writer every answer is built with.
pub type Writer = quick_xml::Writer<Vec<u8>>;

/// One element of a request: its namespace and local name, attributes by local name,
/// children, and the text directly inside it.
#[derive(Debug, Default)]
pub struct Element {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

/// A request body that is not well-formed XML.
#[derive(Debug, thiserror::Error)]
#[error("malformed XML: {0}")]
pub struct MalformedXml(String);

impl Element {
    /// Reads a whole document into its root element (a UTF-8 BOM is skipped).
    pub fn parse(body: &[u8]) -> Result<Element, MalformedXml> {
        let bad = |e: &dyn std::fmt::Display| MalformedXml(e.to_string());
        let text = std::str::from_utf8(body).map_err(|e| bad(&e))?;
        let mut reader = NsReader::from_str(text.trim_start_matches('\u{feff}'));
        let mut open: Vec<Element> = Vec::new();
        loop {
            let (ns, event) = reader.read_resolved_event().map_err(|e| bad(&e))?;
            let ns = match ns {
                ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
                ResolveResult::Unbound => String::new(),
                ResolveResult::Unknown(p) => {
                    return Err(MalformedXml(format!(
                        "unbound prefix {}",
                        String::from_utf8_lossy(&p)
                    )));
                }
            };
            let finished = match event {
                Event::Start(start) => {
                    open.push(Element::start(ns, &start)?);
                    None
                }
                Event::Empty(start) => Some(Element::start(ns, &start)?),
                Event::End(_) => open.pop(),
                Event::Text(t) => {
                    if let Some(top) = open.last_mut() {
                        top.text.push_str(&t.xml10_content().map_err(|e| bad(&e))?);
                    }
                    None
                }
                Event::CData(t) => {
                    if let Some(top) = open.last_mut() {
                        top.text.push_str(&t.decode().map_err(|e| bad(&e))?);
                    }
                    None
                }
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref().map_err(|e| bad(&e))? {
                        Some(c) => c.to_string(),
                        None => {
                            let name = r.decode().map_err(|e| bad(&e))?;
                            resolve_predefined_entity(&name)
                                .ok_or_else(|| MalformedXml(format!("unknown entity &{name};")))?
                                .to_owned()
                        }
                    };
                    if let Some(top) = open.last_mut() {
                        top.text.push_str(&resolved);
                    }
                    None
                }
                Event::Eof => return Err(MalformedXml("unexpected end of document".into())),
                _ => None,
            };
            if let Some(done) = finished {
                match open.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
        }
    }

    fn start(ns: String, start: &BytesStart) -> Result<Element, MalformedXml> {
        let mut attrs = Vec::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| MalformedXml(e.to_string()))?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| MalformedXml(e.to_string()))?;
            let key = String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned();
            attrs.push((key, value.into_owned()));
        }
        Ok(Element {
            ns,
            name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
            attrs,
            ..Element::default()
        })
    }

    /// Whether this element is `name` in namespace `ns`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// The first child `name` in namespace `ns`.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// Every child `name` in namespace `ns`.
    pub fn all<'a>(&'a self, ns: &'a str, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    /// The value of the attribute with this local name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The element's text, trimmed.
    pub fn text(&self) -> &str {
        self.text.trim()
    }
}

/// The scheme and authority the client addressed: `X-Forwarded-Proto` (the first,
/// i.e. the client's, of a list) and `Host`. Exchange builds the URLs of its answers
/// from the name the client used, so the mock never names its own address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientBase(String);

impl ClientBase {
    /// Reads the request's headers; without `Host`, the deployment's public name.
    pub fn from_headers(headers: &HeaderMap, deployment: Deployment) -> ClientBase {
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let proto = match proto.as_deref() {
            Some("https") => "https",
            _ => "http",
        };
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            });
        match host {
            Some(host) => ClientBase(format!("{proto}://{host}")),
            None => ClientBase(format!("https://{}", public_host(deployment))),
        }
    }

    /// `path` (starting with `/`) under the client's base.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    /// The host (and port) the client used.
    pub fn host(&self) -> &str {
        self.0.split("://").nth(1).unwrap_or_default()
    }
}

/// The name clients of each deployment are told when they did not name one.
pub fn public_host(deployment: Deployment) -> &'static str {
    match deployment {
        Deployment::Online => "outlook.office365.com",
        Deployment::OnPremises => "mail.contoso.com",
    }
}

/// The server build the mock reports: Exchange Online (15.20) or Exchange Server 2019
/// CU14 (15.2.1544.4), with the `Version` attribute each sends in EWS's
/// `ServerVersionInfo`.
#[derive(Clone, Copy, Debug)]
pub struct ServerVersion {
    pub major: u16,
    pub minor: u16,
    pub build: u16,
    pub revision: u16,
    /// EWS's `ServerVersionInfo/@Version` (Exchange Online sends a `V2018_…` value).
    pub ews_version: &'static str,
}

impl ServerVersion {
    /// The version of the scenario's deployment.
    pub const fn of(deployment: Deployment) -> ServerVersion {
        match deployment {
            Deployment::Online => ServerVersion {
                major: 15,
                minor: 20,
                build: 8069,
                revision: 31,
                ews_version: "V2018_01_08",
            },
            Deployment::OnPremises => ServerVersion {
                major: 15,
                minor: 2,
                build: 1544,
                revision: 4,
                ews_version: "V2017_07_11",
            },
        }
    }

    /// Autodiscover's dotted, zero-padded form (`CasVersion`, `ExternalEwsVersion`):
    /// `15.20.8069.031`.
    pub fn dotted(&self) -> String {
        format!(
            "{}.{:02}.{:04}.{:03}",
            self.major, self.minor, self.build, self.revision
        )
    }
}

/// Writes a whole document (with its XML declaration) and returns its text.
pub fn document(write: impl FnOnce(&mut Writer) -> io::Result<()>) -> String {
    let mut w = Writer::new(Vec::new());
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
        .and_then(|_| write(&mut w))
        .expect("writing to a Vec does not fail");
    String::from_utf8(w.into_inner()).expect("the writer was given only UTF-8")
}

/// Writes `<name>text</name>`.
pub fn leaf(w: &mut Writer, name: &str, text: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(text))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_resolve_namespaces_entities_and_attributes() {
        let doc = br#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body><t:Subject Id="a&amp;b">Q&amp;A &#233;t&#xE9;<![CDATA[ <x>]]></t:Subject><Plain/></s:Body></s:Envelope>"#;
        let root = Element::parse(doc).unwrap();
        assert!(root.is(SOAP, "Envelope"));
        let body = root.child(SOAP, "Body").unwrap();
        let subject = body.child(TYPES, "Subject").unwrap();
        assert_eq!(subject.text(), "Q&A été <x>");
        assert_eq!(subject.attr("Id"), Some("a&b"));
        assert!(body.child("", "Plain").is_some());
    }

    #[test]
    fn malformed_documents_are_errors() {
        for doc in [&b"<a><b></a>"[..], b"<a>", b"<p:a/>", b"", b"\xff"] {
            assert!(Element::parse(doc).is_err(), "{doc:?}");
        }
    }

    #[test]
    fn the_client_base_comes_from_host_and_the_first_forwarded_proto() {
        let mut h = HeaderMap::new();
        h.insert("host", "127.0.0.1:18443".parse().unwrap());
        let base = ClientBase::from_headers(&h, Deployment::Online);
        assert_eq!(
            base.url("/EWS/Exchange.asmx"),
            "http://127.0.0.1:18443/EWS/Exchange.asmx"
        );
        h.insert("x-forwarded-proto", "https, http".parse().unwrap());
        let base = ClientBase::from_headers(&h, Deployment::Online);
        assert_eq!(base.url("/x"), "https://127.0.0.1:18443/x");
        assert_eq!(base.host(), "127.0.0.1:18443");
        h.insert("host", "evil\"><x".parse().unwrap());
        let base = ClientBase::from_headers(&h, Deployment::OnPremises);
        assert_eq!(base.url("/x"), "https://mail.contoso.com/x");
    }

    #[test]
    fn versions_print_as_autodiscover_does() {
        assert_eq!(
            ServerVersion::of(Deployment::Online).dotted(),
            "15.20.8069.031"
        );
        assert_eq!(
            ServerVersion::of(Deployment::OnPremises).dotted(),
            "15.02.1544.004"
        );
    }
}
