//! What a strict HTTP/1.1 server refuses before anything else looks at a request
//! (SPEC §6): framing that two parsers could read two ways, and methods a reverse proxy
//! in front of Exchange has no business relaying. Pure checks over the parsed head; the
//! raw bytes hyper already consumed are checked by [`super::head_guard`].

use hyper::header::{self, HeaderMap};
use hyper::{Method, Uri, Version};

/// Why a request was refused as the client's fault. Each is counted in
/// `exgate_client_errors_total{reason}` and never as an upstream error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientFault {
    /// `CONNECT` or `TRACE` (405).
    MethodNotAllowed,
    /// HTTP/1.1 without `Host` (RFC 9112 §3.2).
    MissingHost,
    /// More than one `Host` (RFC 9112 §3.2).
    DuplicateHost,
    /// An absolute-form target whose authority is not the `Host` (RFC 9112 §3.2.2).
    HostMismatch,
    /// `Content-Length` together with `Transfer-Encoding` (RFC 9112 §6.1: a smuggling
    /// vector, refused rather than resolved).
    ContentLengthWithTransferEncoding,
    /// Two `Content-Length` fields, or one listing several values (RFC 9112 §6.3).
    DuplicateContentLength,
    /// A line of the request head ends in a bare LF (RFC 9112 §2.2).
    BareLf,
    /// The request head is larger than `server.max_header_bytes` (431).
    HeadTooLarge,
    /// The request body is not valid chunked coding, or otherwise unreadable (400).
    BodyFraming,
    /// The request body stalled longer than the protocol's idle timeout (408).
    BodyStalled,
    /// The client closed the connection before sending the whole body.
    BodyAborted,
    /// hyper could not parse the request head at all (an invalid request line or field,
    /// conflicting `Content-Length` values); hyper answers it with 400 itself.
    MalformedHead,
    /// Earlier framing on the connection could not be followed (an unreadable
    /// `Content-Length`, a malformed chunked body before this request).
    UnfollowedFraming,
}

impl ClientFault {
    /// Every fault, for metric pre-registration and exhaustive tests.
    pub const ALL: [ClientFault; 13] = [
        ClientFault::MethodNotAllowed,
        ClientFault::MissingHost,
        ClientFault::DuplicateHost,
        ClientFault::HostMismatch,
        ClientFault::ContentLengthWithTransferEncoding,
        ClientFault::DuplicateContentLength,
        ClientFault::BareLf,
        ClientFault::HeadTooLarge,
        ClientFault::BodyFraming,
        ClientFault::BodyStalled,
        ClientFault::BodyAborted,
        ClientFault::MalformedHead,
        ClientFault::UnfollowedFraming,
    ];

    /// The label value (`reason` in `exgate_client_errors_total` and the audit log).
    pub const fn as_str(self) -> &'static str {
        match self {
            ClientFault::MethodNotAllowed => "method_not_allowed",
            ClientFault::MissingHost => "missing_host",
            ClientFault::DuplicateHost => "duplicate_host",
            ClientFault::HostMismatch => "host_mismatch",
            ClientFault::ContentLengthWithTransferEncoding => {
                "content_length_with_transfer_encoding"
            }
            ClientFault::DuplicateContentLength => "duplicate_content_length",
            ClientFault::BareLf => "bare_lf",
            ClientFault::HeadTooLarge => "head_too_large",
            ClientFault::BodyFraming => "body_framing",
            ClientFault::BodyStalled => "body_stalled",
            ClientFault::BodyAborted => "body_aborted",
            ClientFault::MalformedHead => "malformed_head",
            ClientFault::UnfollowedFraming => "unfollowed_framing",
        }
    }

    /// The status exgate answers with.
    pub const fn status(self) -> u16 {
        match self {
            ClientFault::MethodNotAllowed => 405,
            ClientFault::HeadTooLarge => 431,
            ClientFault::BodyStalled => 408,
            _ => 400,
        }
    }
}

/// Checks a parsed request head (SPEC §6 table): the method, `Host`, and what hyper
/// still shows of `Content-Length` (it drops the field when `Transfer-Encoding` is
/// present; the head guard counts both in the raw bytes).
pub fn check_head(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
) -> Result<(), ClientFault> {
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(ClientFault::MethodNotAllowed);
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(ClientFault::DuplicateHost),
        (Some(h), None) => Some(h),
        (None, _) if version == Version::HTTP_11 => return Err(ClientFault::MissingHost),
        (None, _) => None,
    };
    if let (Some(authority), Some(host)) = (uri.authority(), host) {
        if !authority
            .as_str()
            .as_bytes()
            .eq_ignore_ascii_case(host.as_bytes())
        {
            return Err(ClientFault::HostMismatch);
        }
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (Some(_), Some(_)) => return Err(ClientFault::DuplicateContentLength),
        (Some(v), None) if v.as_bytes().contains(&b',') => {
            return Err(ClientFault::DuplicateContentLength);
        }
        (Some(_), None) if headers.contains_key(header::TRANSFER_ENCODING) => {
            return Err(ClientFault::ContentLengthWithTransferEncoding);
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        method: &str,
        target: &str,
        version: Version,
        fields: &[(&str, &str)],
    ) -> Result<(), ClientFault> {
        let mut headers = HeaderMap::new();
        for (k, v) in fields {
            headers.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        check_head(
            &method.parse().unwrap(),
            &target.parse().unwrap(),
            version,
            &headers,
        )
    }

    const V11: Version = Version::HTTP_11;

    #[test]
    fn what_a_strict_server_refuses() {
        use ClientFault::*;
        let host = ("host", "mail.contoso.com");
        for (method, target, version, fields, fault) in [
            (
                "CONNECT",
                "mail.contoso.com:443",
                V11,
                vec![host],
                MethodNotAllowed,
            ),
            ("TRACE", "/", V11, vec![host], MethodNotAllowed),
            ("GET", "/mapi/", V11, vec![], MissingHost),
            (
                "GET",
                "/mapi/",
                V11,
                vec![host, ("host", "evil")],
                DuplicateHost,
            ),
            ("GET", "/mapi/", V11, vec![host, host], DuplicateHost),
            (
                "GET",
                "http://evil.example/mapi/",
                V11,
                vec![host],
                HostMismatch,
            ),
            (
                "GET",
                "https://mail.contoso.com:444/mapi/",
                V11,
                vec![host],
                HostMismatch,
            ),
            (
                "POST",
                "/ews/exchange.asmx",
                V11,
                vec![
                    host,
                    ("content-length", "5"),
                    ("transfer-encoding", "chunked"),
                ],
                ContentLengthWithTransferEncoding,
            ),
            (
                "POST",
                "/ews/exchange.asmx",
                V11,
                vec![host, ("content-length", "5"), ("content-length", "5")],
                DuplicateContentLength,
            ),
            (
                "POST",
                "/ews/exchange.asmx",
                V11,
                vec![host, ("content-length", "5, 5")],
                DuplicateContentLength,
            ),
        ] {
            assert_eq!(
                check(method, target, version, &fields),
                Err(fault),
                "{method} {target} {fields:?}"
            );
        }
    }

    #[test]
    fn what_it_accepts() {
        let host = ("host", "mail.contoso.com");
        assert_eq!(check("GET", "/mapi/", V11, &[host]), Ok(()));
        assert_eq!(check("GET", "/mapi/", Version::HTTP_10, &[]), Ok(()));
        assert_eq!(
            check("GET", "http://MAIL.contoso.com/mapi/", V11, &[host]),
            Ok(())
        );
        assert_eq!(check("OPTIONS", "*", V11, &[host]), Ok(()));
        assert_eq!(
            check(
                "POST",
                "/ews/",
                V11,
                &[host, ("transfer-encoding", "chunked")]
            ),
            Ok(())
        );
        assert_eq!(
            check("POST", "/ews/", V11, &[host, ("content-length", "12")]),
            Ok(())
        );
    }

    #[test]
    fn every_fault_has_a_label_and_a_client_status() {
        for f in ClientFault::ALL {
            assert!(!f.as_str().is_empty());
            assert!((400..500).contains(&f.status()), "{f:?}");
        }
    }
}
