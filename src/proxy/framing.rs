//! What a strict HTTP/1.1 server refuses before anything else looks at a request
//! (SPEC §6): framing that two parsers could read two ways, and methods a reverse proxy
//! in front of Exchange has no business relaying. A pure check over the parsed head and
//! what [`super::head_guard`] saw of its raw bytes.

use hyper::header::{self, HeaderName};
use hyper::{Method, Version};

use super::head_guard::HeadVerdict;

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
    /// `Connection` names a field exgate decides on (`Authorization`, `Cookie`, `Host`,
    /// `Content-Length`): as a hop-by-hop option it would be removed after the decision,
    /// so Exchange would see a different request (RFC 9110 §7.6.1 forbids sending it).
    ConnectionNamesEndToEnd,
    /// hyper could not parse the request head at all (an invalid request line or field,
    /// conflicting `Content-Length` values); hyper answers it with 400 itself.
    MalformedHead,
    /// Earlier framing on the connection could not be followed (an unreadable
    /// `Content-Length`, a malformed chunked body before this request).
    UnfollowedFraming,
    /// The client stopped reading its response for longer than the idle timeout; the
    /// connection is closed (no answer can reach it).
    ResponseUnread,
}

impl ClientFault {
    /// Every fault, for metric pre-registration and exhaustive tests.
    pub const ALL: [ClientFault; 15] = [
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
        ClientFault::ConnectionNamesEndToEnd,
        ClientFault::MalformedHead,
        ClientFault::UnfollowedFraming,
        ClientFault::ResponseUnread,
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
            ClientFault::ConnectionNamesEndToEnd => "connection_names_end_to_end",
            ClientFault::MalformedHead => "malformed_head",
            ClientFault::UnfollowedFraming => "unfollowed_framing",
            ClientFault::ResponseUnread => "response_unread",
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

/// Checks a request head (SPEC §6 table): what the head guard saw of its raw bytes
/// (`raw`: exact size, bare LF, how many `Host` and `Content-Length` fields, whether a
/// `Transfer-Encoding` — hyper drops `Content-Length` then), and the parsed method,
/// target's authority (absolute-form only) and version, the first `Host` field's value
/// (compared with an absolute-form target's authority; empty, it is a missing `Host` in
/// HTTP/1.1) and the `Connection` fields' values (read only when the guard saw one).
pub fn check_head<'a>(
    raw: &HeadVerdict,
    max_header_bytes: usize,
    method: &Method,
    authority: Option<&str>,
    version: Version,
    host: Option<&[u8]>,
    connection: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), ClientFault> {
    if raw.lost {
        return Err(ClientFault::UnfollowedFraming);
    }
    if raw.bytes > max_header_bytes {
        return Err(ClientFault::HeadTooLarge);
    }
    if raw.bare_lf {
        return Err(ClientFault::BareLf);
    }
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(ClientFault::MethodNotAllowed);
    }
    match raw.hosts {
        0 if version == Version::HTTP_11 => return Err(ClientFault::MissingHost),
        // An empty `Host` (RFC 9112 §3.2 allows one only for a target URI without an
        // authority, and a request to Exchange names its host) is refused as missing,
        // as it was while the guard did not note empty fields (red team, issue 16).
        1 if version == Version::HTTP_11 && host.is_some_and(<[u8]>::is_empty) => {
            return Err(ClientFault::MissingHost);
        }
        0 | 1 => {}
        _ => return Err(ClientFault::DuplicateHost),
    }
    if let Some(authority) = authority
        && host.is_some_and(|h| !authority.as_bytes().eq_ignore_ascii_case(h))
    {
        return Err(ClientFault::HostMismatch);
    }
    match (raw.content_lengths, raw.transfer_encoding) {
        (0, _) | (1, false) => {}
        (1, true) => return Err(ClientFault::ContentLengthWithTransferEncoding),
        _ => return Err(ClientFault::DuplicateContentLength),
    }
    if raw.connection && names_decided_field(connection) {
        return Err(ClientFault::ConnectionNamesEndToEnd);
    }
    Ok(())
}

/// The fields exgate's decision reads, which no `Connection` option may remove.
const DECIDED_FIELDS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::HOST,
    header::CONTENT_LENGTH,
];

/// Whether the values of the `Connection` fields name one of [`DECIDED_FIELDS`] (RFC 9110
/// §7.6.1: comma-separated, case-insensitive, optional whitespace).
fn names_decided_field<'a>(connection: impl IntoIterator<Item = &'a [u8]>) -> bool {
    connection
        .into_iter()
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|option| {
            DECIDED_FIELDS
                .iter()
                .any(|f| option.eq_ignore_ascii_case(f.as_str().as_bytes()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Uri;

    const V11: Version = Version::HTTP_11;
    const LIMIT: usize = 65_536;

    #[test]
    fn the_metric_knows_every_fault_label() {
        assert_eq!(
            ClientFault::ALL.map(ClientFault::as_str),
            crate::metrics::CLIENT_ERROR_REASONS
        );
    }

    /// A head as the guard reports it, one `Host` unless said otherwise.
    fn raw() -> HeadVerdict {
        HeadVerdict {
            bytes: 100,
            hosts: 1,
            ..HeadVerdict::default()
        }
    }

    fn check(
        raw: HeadVerdict,
        method: &str,
        target: &str,
        version: Version,
    ) -> Result<(), ClientFault> {
        check_with(raw, method, target, version, &[])
    }

    fn check_with(
        raw: HeadVerdict,
        method: &str,
        target: &str,
        version: Version,
        connection: &[&str],
    ) -> Result<(), ClientFault> {
        let uri: Uri = target.parse().unwrap();
        check_head(
            &raw,
            LIMIT,
            &method.parse().unwrap(),
            uri.authority().map(|a| a.as_str()),
            version,
            Some(b"mail.contoso.com"),
            connection.iter().map(|c| c.as_bytes()),
        )
    }

    #[test]
    fn what_a_strict_server_refuses() {
        use ClientFault::*;
        let with = |f: fn(&mut HeadVerdict)| {
            let mut v = raw();
            f(&mut v);
            v
        };
        for (raw, method, target, fault) in [
            (raw(), "CONNECT", "mail.contoso.com:443", MethodNotAllowed),
            (raw(), "TRACE", "/", MethodNotAllowed),
            (with(|v| v.hosts = 0), "GET", "/mapi/", MissingHost),
            (with(|v| v.hosts = 2), "GET", "/mapi/", DuplicateHost),
            (raw(), "GET", "http://evil.example/mapi/", HostMismatch),
            (
                raw(),
                "GET",
                "https://mail.contoso.com:444/mapi/",
                HostMismatch,
            ),
            (
                with(|v| {
                    v.content_lengths = 1;
                    v.transfer_encoding = true
                }),
                "POST",
                "/ews/",
                ContentLengthWithTransferEncoding,
            ),
            (
                with(|v| v.content_lengths = 2),
                "POST",
                "/ews/",
                DuplicateContentLength,
            ),
            (with(|v| v.bare_lf = true), "GET", "/", BareLf),
            (with(|v| v.bytes = LIMIT + 1), "GET", "/", HeadTooLarge),
            (with(|v| v.lost = true), "GET", "/", UnfollowedFraming),
        ] {
            assert_eq!(
                check(raw, method, target, V11),
                Err(fault),
                "{method} {target} {raw:?}"
            );
        }
    }

    #[test]
    fn an_empty_host_is_a_missing_one_in_http_1_1() {
        let empty = |version| {
            let get = Method::GET;
            check_head(&raw(), LIMIT, &get, None, version, Some(b""), [])
        };
        assert_eq!(empty(V11), Err(ClientFault::MissingHost));
        assert_eq!(empty(Version::HTTP_10), Ok(()));
    }

    /// Found by the red team: `Connection: Authorization` made exgate remove the
    /// `Authorization` it had decided on, after deciding.
    #[test]
    fn connection_may_not_name_a_field_the_decision_reads() {
        let with_connection = HeadVerdict {
            connection: true,
            ..raw()
        };
        for options in [
            &["Authorization"][..],
            &["close,AUTHORIZATION"],
            &["\tAuthorization "],
            &["x, , Authorization"],
            &["keep-alive", "authorization"],
            &["Cookie"],
            &["Host"],
            &["content-length"],
        ] {
            assert_eq!(
                check_with(with_connection, "GET", "/mapi/", V11, options),
                Err(ClientFault::ConnectionNamesEndToEnd),
                "{options:?}"
            );
        }
        for options in [
            &["keep-alive"][..],
            &["close"],
            &["Upgrade, Keep-Alive"],
            &["X-Authorization"],
        ] {
            assert_eq!(
                check_with(with_connection, "GET", "/mapi/", V11, options),
                Ok(()),
                "{options:?}"
            );
        }
    }

    #[test]
    fn what_it_accepts() {
        let with = |f: fn(&mut HeadVerdict)| {
            let mut v = raw();
            f(&mut v);
            v
        };
        assert_eq!(check(raw(), "GET", "/mapi/", V11), Ok(()));
        assert_eq!(
            check(with(|v| v.hosts = 0), "GET", "/mapi/", Version::HTTP_10),
            Ok(())
        );
        assert_eq!(
            check(raw(), "GET", "http://MAIL.contoso.com/mapi/", V11),
            Ok(())
        );
        assert_eq!(check(raw(), "OPTIONS", "*", V11), Ok(()));
        assert_eq!(
            check(with(|v| v.transfer_encoding = true), "POST", "/ews/", V11),
            Ok(())
        );
        assert_eq!(
            check(with(|v| v.content_lengths = 1), "POST", "/ews/", V11),
            Ok(())
        );
        assert_eq!(check(with(|v| v.bytes = LIMIT), "GET", "/", V11), Ok(()));
    }

    #[test]
    fn every_fault_has_a_label_and_a_client_status() {
        for f in ClientFault::ALL {
            assert!(!f.as_str().is_empty());
            assert!((400..500).contains(&f.status()), "{f:?}");
        }
    }
}
