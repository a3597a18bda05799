use super::*;

fn protocol(target: &str) -> Protocol {
    classify(target)
        .unwrap_or_else(|e| panic!("{target}: {e}"))
        .protocol
}

#[test]
fn every_virtual_directory_maps_to_its_protocol() {
    let cases = [
        ("/autodiscover/autodiscover.xml", Protocol::Autodiscover),
        ("/Autodiscover/Autodiscover.svc", Protocol::Autodiscover),
        ("/mapi/emsmdb/?MailboxId=x@contoso.com", Protocol::Mapi),
        ("/mapi/nspi/", Protocol::Mapi),
        ("/OAB/abc/oab.xml", Protocol::OfflineAddressBook),
        ("/EWS/Exchange.asmx", Protocol::WebServices),
        ("/rpc/rpcproxy.dll?mbx@contoso.com:6001", Protocol::Rpc),
        ("/RpcWithCert/rpcproxy.dll", Protocol::Rpc),
        (
            "/Microsoft-Server-ActiveSync?Cmd=Sync",
            Protocol::ActiveSync,
        ),
        ("/PowerShell/", Protocol::PowerShell),
        ("/PowerShell-LiveID/", Protocol::PowerShell),
        (
            "/ecp/ReportingWebService/Reporting.svc/MessageTrace",
            Protocol::ReportingWebServices,
        ),
        ("/api/v2.0/me/messages", Protocol::OutlookService),
        ("/owa/", Protocol::Owa),
        ("/ecp/", Protocol::Ecp),
        ("/ecp", Protocol::Ecp),
        ("/", Protocol::Other),
        ("/favicon.ico", Protocol::Other),
        ("/mapix/", Protocol::Other),
        ("/ewsx", Protocol::Other),
        ("*", Protocol::Other),
    ];
    for (target, expected) in cases {
        assert_eq!(protocol(target), expected, "{target}");
    }
}

#[test]
fn classification_ignores_case_repeated_slashes_and_harmless_dot_segments() {
    for target in [
        "/MAPI/emsmdb",
        "//mapi//emsmdb",
        "/mapi/./emsmdb",
        "/mapi/emsmdb/../nspi/",
        "/Mapi/EMSMDB/",
        "/mapi/%65msmdb",
    ] {
        assert_eq!(protocol(target), Protocol::Mapi, "{target}");
    }
}

/// Found by the red team: exgate forwards the path as sent, so where normalization moves
/// a request to another protocol, a server that routes on the raw path would serve a
/// protocol exgate did not decide for. Every such path is refused.
#[test]
fn a_path_whose_raw_reading_names_another_protocol_is_refused() {
    for target in [
        "/mapi/../owa/",
        "/mapi/%2e%2e/owa/",
        "/mapi\\..\\owa/",
        "/mapi%2f..%2fowa/",
        "/mapi/..%5cowa/",
        "/mapi/emsmdb/../../owa/",
        "/mapi/../ews/exchange.asmx",
        "/oab/../owa/",
        "/rpc/../ecp/",
        "/autodiscover/../owa/",
        "/ews/../mapi/emsmdb",
        "/./mapi/./emsmdb",
        "\\mapi\\emsmdb",
        "/%6Dapi/emsmdb",
        "/%4D%41%50%49/",
        "/mapi%2femsmdb",
        "/mapi%5cemsmdb",
        "/x/y/../../mapi",
        "/owa/../mapi/",
        "/ecp/%72eportingwebservice/",
        "/ecp/x/../reportingwebservice/",
    ] {
        assert_eq!(
            classify(target),
            Err(TargetError::RawPathDisagrees),
            "{target}"
        );
    }
}

#[test]
fn absolute_form_targets_are_classified_by_their_path() {
    assert_eq!(
        protocol("https://mail.contoso.com/EWS/Exchange.asmx"),
        Protocol::WebServices
    );
    assert_eq!(protocol("HTTP://mail.contoso.com/mapi/"), Protocol::Mapi);
    assert_eq!(protocol("http://mail.contoso.com"), Protocol::Other);
    assert_eq!(protocol("http://mail.contoso.com?x=1"), Protocol::Other);
}

#[test]
fn normalized_path_is_lowercase_and_collapsed() {
    assert_eq!(
        normalize_path("/EWS//Exchange.asmx").unwrap(),
        "/ews/exchange.asmx"
    );
    assert_eq!(normalize_path("/mapi/emsmdb/").unwrap(), "/mapi/emsmdb/");
    assert_eq!(normalize_path("/a/b/..").unwrap(), "/a");
    assert_eq!(normalize_path("/a/..").unwrap(), "/");
    assert_eq!(normalize_path("").unwrap(), "/");
    assert_eq!(normalize_path("/caf%C3%A9").unwrap(), "/café");
}

// One test per ambiguous-path rule of SPEC §2.

#[test]
fn dot_dot_escaping_the_root_is_rejected() {
    assert_eq!(classify("/../mapi/"), Err(TargetError::EscapesRoot));
    assert_eq!(classify("/ews/../../mapi"), Err(TargetError::EscapesRoot));
    assert_eq!(classify("/%2e%2e/mapi"), Err(TargetError::EscapesRoot));
}

#[test]
fn encoded_nul_is_rejected() {
    assert_eq!(classify("/mapi%00/"), Err(TargetError::ControlByte));
}

#[test]
fn control_bytes_raw_or_encoded_are_rejected() {
    assert_eq!(classify("/mapi\u{1}/"), Err(TargetError::ControlByte));
    assert_eq!(classify("/mapi%0d%0a/"), Err(TargetError::ControlByte));
    assert_eq!(classify("/mapi%7f"), Err(TargetError::ControlByte));
    assert_eq!(classify("/mapi\t/"), Err(TargetError::ControlByte));
}

#[test]
fn percent_u_escapes_are_rejected() {
    assert_eq!(classify("/%u006dapi/"), Err(TargetError::PercentU));
    assert_eq!(classify("/%U006dapi/"), Err(TargetError::PercentU));
}

#[test]
fn double_encoding_is_rejected() {
    assert_eq!(classify("/%256dapi/"), Err(TargetError::DoubleEncoded));
    assert_eq!(
        classify("/ews/%252e%252e/mapi"),
        Err(TargetError::DoubleEncoded)
    );
    assert_eq!(classify("/x%25u006d"), Err(TargetError::DoubleEncoded));
    // A literal percent that does not start another escape is fine.
    assert_eq!(protocol("/ews/100%25"), Protocol::WebServices);
}

#[test]
fn malformed_percent_escapes_are_rejected() {
    assert_eq!(classify("/mapi%"), Err(TargetError::BadPercent));
    assert_eq!(classify("/mapi%4"), Err(TargetError::BadPercent));
    assert_eq!(classify("/mapi%zz"), Err(TargetError::BadPercent));
}

#[test]
fn invalid_utf8_after_decoding_is_rejected() {
    assert_eq!(classify("/mapi/%ff%fe"), Err(TargetError::InvalidUtf8));
    assert_eq!(classify("/mapi/%c3"), Err(TargetError::InvalidUtf8));
}

#[test]
fn segment_ending_in_dot_or_space_is_rejected() {
    assert_eq!(classify("/mapi./"), Err(TargetError::TrailingDotOrSpace));
    assert_eq!(classify("/mapi%20/"), Err(TargetError::TrailingDotOrSpace));
    assert_eq!(
        classify("/ews/exchange.asmx."),
        Err(TargetError::TrailingDotOrSpace)
    );
    assert_eq!(classify("/.../"), Err(TargetError::TrailingDotOrSpace));
}

#[test]
fn non_path_targets_are_rejected() {
    assert_eq!(classify("mapi/"), Err(TargetError::NotAPath));
    assert_eq!(classify("ftp://x/mapi"), Err(TargetError::NotAPath));
    assert_eq!(classify(""), Err(TargetError::NotAPath));
}

#[test]
fn fragments_are_rejected() {
    assert_eq!(classify("/mapi/#x"), Err(TargetError::Fragment));
}

#[test]
fn proxyshell_pattern_is_rejected() {
    for target in [
        "/autodiscover/autodiscover.json?@foo.com/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@foo.com",
        "/autodiscover/autodiscover.json?@evil.corp/powershell/?X-Rps-CAT=x",
        "/Autodiscover/Autodiscover.json?a=b@c/ews",
        "/autodiscover/autodiscover.json?Email=autodiscover/x",
        "/autodiscover/autodiscover.json?Email=user%40contoso.com%2Fmapi",
        "/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@foo.com",
        "/%61utodiscover/autodiscover.json?@x/mapi",
    ] {
        assert_eq!(classify(target), Err(TargetError::ProxyShell), "{target}");
    }
}

#[test]
fn queries_encoded_deeper_than_any_client_encodes_are_refused_in_linear_time() {
    // Found by review and reproduced with the `target` fuzz binary: a query of nested
    // `%25` layers was decoded one layer per round to the end, reading it whole each time;
    // a 64 KiB request line took minutes. Eight decodings are followed; a ninth is refused.
    let encoded = |times: usize, text: &str| {
        let mut query = text.to_owned();
        for _ in 1..times {
            query = query.replace('%', "%25");
        }
        format!("/ews/?x={query}")
    };
    assert_eq!(protocol(&encoded(8, "%41")), Protocol::WebServices);
    assert_eq!(classify(&encoded(9, "%41")), Err(TargetError::ProxyShell));
    assert_eq!(
        classify(&encoded(8, "autodiscover%2ejson")),
        Err(TargetError::ProxyShell)
    );
    let huge = format!("/ews/?x=%{}41", "25".repeat(32_000));
    assert_eq!(classify(&huge), Err(TargetError::ProxyShell));
    // An escape that decodes to nothing decodable stops at once, whatever its length.
    let flat = format!("/ews/?x={}", "%41".repeat(20_000));
    assert_eq!(protocol(&flat), Protocol::WebServices);
}

#[test]
fn legitimate_autodiscover_v2_queries_pass() {
    for target in [
        "/autodiscover/autodiscover.json?Email=user01@contoso.com&Protocol=ActiveSync&RedirectCount=3",
        "/autodiscover/autodiscover.json/v1.0/user01@contoso.com?Protocol=AutodiscoverV1",
        "/autodiscover/autodiscover.json?Email=user01%40contoso.com&Protocol=Rest",
        "/autodiscover/autodiscover.xml",
    ] {
        assert_eq!(protocol(target), Protocol::Autodiscover, "{target}");
    }
}

#[test]
fn basic_auth_to_oauth_conversion_needs_liveid_and_the_query_flag() {
    let t = |s| classify(s).unwrap().basic_auth_to_oauth;
    assert!(t("/powershell-liveid/?BasicAuthToOAuthConversion=true"));
    assert!(t(
        "/PowerShell-LiveID?DelegatedOrg=x&basicauthtooauthconversion=TRUE"
    ));
    assert!(!t("/powershell-liveid/?BasicAuthToOAuthConversion=false"));
    assert!(!t("/powershell-liveid/"));
    assert!(!t("/powershell/?BasicAuthToOAuthConversion=true"));
    assert!(!t("/ews/?BasicAuthToOAuthConversion=true"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn classify_never_panics_on_arbitrary_targets(target in "\\PC{0,200}") {
            let _ = classify(&target);
        }

        #[test]
        fn classify_never_panics_on_percent_heavy_targets(
            target in "/[a-zA-Z%./\\\\?@&=:0-9uU#-]{0,120}",
        ) {
            let _ = classify(&target);
        }

        #[test]
        fn normalization_is_idempotent_once_nothing_is_left_to_decode(
            target in "/[a-zA-Z%./\\\\0-9-]{0,80}",
        ) {
            if let Some(once) = normalize_path(&target).ok().filter(|p| !p.contains('%')) {
                prop_assert_eq!(normalize_path(&once), Ok(once.clone()));
            }
        }

        #[test]
        fn normalized_paths_classify_like_their_originals(
            prefix in prop::sample::select(vec!["/mapi", "/MAPI", "/ews", "/Rpc", "/oab", "/owa", "/x"]),
            rest in "(/[a-z0-9]{1,8}){0,4}/?",
        ) {
            let raw = format!("{prefix}{rest}");
            let normalized = normalize_path(&raw).unwrap();
            prop_assert_eq!(classify(&raw).unwrap(), classify(&normalized).unwrap());
        }
    }
}

#[test]
fn only_an_authenticating_resource_s_answer_says_the_password_was_right() {
    use super::password_checked;
    for (target, method) in [
        ("/EWS/Exchange.asmx", "POST"),
        ("/mapi/emsmdb/?MailboxId=a@contoso.com", "POST"),
        ("/Microsoft-Server-ActiveSync?Cmd=Sync", "POST"),
        ("/rpc/rpcproxy.dll?mail.contoso.com:6001", "RPC_IN_DATA"),
        ("/OAB/0a8f/oab.xml", "GET"),
        ("/powershell", "POST"),
        ("/autodiscover/autodiscover.xml", "POST"),
    ] {
        assert!(password_checked(target, method), "{target} {method}");
    }
    for (target, method) in [
        ("/EWS/healthcheck.htm", "GET"),
        ("/ews/HealthCheck.htm/", "GET"),
        ("/mapi/healthcheck.htm?x=1", "GET"),
        (
            "/autodiscover/autodiscover.json/v1.0/a@contoso.com?Protocol=EWS",
            "GET",
        ),
        ("/owa/", "GET"),
        ("/owa/auth/logon.aspx", "POST"),
        ("/ecp/", "GET"),
        ("/favicon.ico", "GET"),
        ("/EWS/Exchange.asmx", "OPTIONS"),
        ("/Microsoft-Server-ActiveSync", "options"),
        ("/EWS/Exchange.asmx", "HEAD"),
        ("/mapi/../owa/", "GET"),
    ] {
        assert!(!password_checked(target, method), "{target} {method}");
    }
}

#[test]
fn a_virtual_directory_with_a_path_parameter_or_a_stream_name_is_refused() {
    // The attacker's table: each would be another protocol (or the same folder) to a
    // server that strips `;` parameters or resolves NTFS stream names.
    for target in [
        "/mapi;x/emsmdb/",
        "/MAPI;/emsmdb/",
        "/EWS;/Exchange.asmx",
        "/ews;jsessionid=1/exchange.asmx",
        "/mapi%3bx/emsmdb/",
        "/mapi%3Bx/emsmdb/",
        "/ews::$INDEX_ALLOCATION/exchange.asmx",
        "/autodiscover:$i30:$INDEX_ALLOCATION/autodiscover.xml",
        "/ews%3a%3a$INDEX_ALLOCATION/exchange.asmx",
        "/Microsoft-Server-ActiveSync;x",
        "/powershell;x?serializationLevel=Full",
        "/ecp;x/ReportingWebService/",
        "/ecp/ReportingWebService;x/",
        "/ecp/ReportingWebService::$INDEX_ALLOCATION/",
        "http://mail.contoso.com/mapi;x/emsmdb/",
    ] {
        assert_eq!(
            classify(target),
            Err(TargetError::SegmentParameter),
            "{target}"
        );
    }
    // Beyond the segments classification reads, and in queries, both are ordinary.
    assert_eq!(
        protocol("/powershell?serializationLevel=Full;ExchClientVer=15.20"),
        Protocol::PowerShell
    );
    assert_eq!(
        protocol("/rpc/rpcproxy.dll?mail.contoso.com:6001"),
        Protocol::Rpc
    );
    assert_eq!(protocol("/owa/service.svc/s/x;y:z"), Protocol::Owa);
    assert_eq!(protocol("/mapi/emsmdb/x;y"), Protocol::Mapi);
    // A segment after another virtual directory changes no decision.
    assert_eq!(protocol("/mapi/emsmdb;x/"), Protocol::Mapi);
}

#[test]
fn a_virtual_directory_with_a_character_outside_ascii_is_refused() {
    // Red team (issue 16): letters that Unicode upper-casing or best-fit ANSI mapping
    // turns into a protocol's name, raw or percent-encoded, in either segment read.
    for target in [
        "/ewſ/exchange.asmx",
        "/EWſ/Exchange.asmx",
        "/ew%C5%BF/exchange.asmx",
        "/powerſhell/",
        "/Microsoft-Server-ActiveſyNc/",
        "/Micro%C5%BFoft-Server-ActiveSync/",
        "/mapı/emsmdb/",
        "/map%C4%B1/emsmdb/",
        "/MAPİ/emsmdb/",
        "/ｍａｐｉ/emsmdb/",
        "/%EF%BD%8D%EF%BD%81%EF%BD%90%EF%BD%89/",
        "/mapi%C2%A0/",
        "/mapi%E3%80%80/",
        "/mapi%EF%BC%8F/emsmdb",
        "/ecp/ReportingWebſervice/",
        "/ecp/Reporting%C5%BFervice/",
    ] {
        assert_eq!(
            classify(target),
            Err(TargetError::SegmentNotAscii),
            "{target}"
        );
    }
    // Other segments and queries may hold any UTF-8: OWA's explicit logon names a
    // mailbox (`/owa/jürgen@contoso.de/`), attachments and searches have names.
    assert_eq!(protocol("/owa/jürgen@contoso.de/"), Protocol::Owa);
    assert_eq!(protocol("/owa/x/anhänge/ſ"), Protocol::Owa);
    assert_eq!(protocol("/ews/exchange.asmx?q=ſ"), Protocol::WebServices);
}

/// The shortcut for plain paths classifies every target exactly as decoding and
/// normalization do: the attacker's table of near-plain paths, each under both.
#[test]
fn plain_path_shortcut_agrees_with_normalization() {
    let table = [
        "/",
        "/EWS/Exchange.asmx",
        "/mapi/emsmdb/?MailboxId=x@contoso.com",
        "/MAPI/nspi/",
        "/ecp/ReportingWebService/",
        "/ECP/reportingwebservice",
        "/ecp/",
        "/PowerShell-LiveID?BasicAuthToOAuthConversion=true",
        "/powershell-liveid/?basicauthtooauthconversion=TRUE&x=1",
        "/powershell-liveid?BasicAuthToOAuthConversion=true&BasicAuthToOAuthConversion=true",
        "/owa/?x=/autodiscover/autodiscover.json",
        "/owa/?x=%2fautodiscover%2fautodiscover.json",
        "/autodiscover/autodiscover.json?Email=a@b.c",
        "/Autodiscover/Autodiscover.JSON/v1.0/a@b.c",
        "/x/autodiscover.json",
        "/ews/./mapi/",
        "/ews/../mapi/",
        "/ews/..",
        "/ews/.",
        "/ews.",
        "/ews./x",
        "/.ews/",
        "/ews//x",
        "//ews/",
        "/ews~/",
        "/ews/x~y.z",
        "/rpc/rpcproxy.dll?host:6001",
        "/rpcwithcert/",
        "/Microsoft-Server-ActiveSync?Cmd=Sync",
        "/api/v2.0/me",
        "/oab/x/oab.xml",
        "/mapi%2femsmdb/",
        "/mapi;x/",
        "/mapi:x/",
        "/ma pi/",
        "/mapı/",
        "\\mapi\\emsmdb",
        "/mapi\\emsmdb",
        "/a-b_c/",
        "/x/y/z/",
        "/x?",
        "/x?#",
    ];
    for target in table {
        assert_eq!(classify(target), classify_general(target), "{target}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 4000, ..Default::default() })]
    /// Random targets built from the characters that matter to either path.
    #[test]
    fn plain_path_shortcut_agrees_on_random_targets(
        target in "(/|\\\\|[a-zA-Z.~_-]|ews|mapi|ecp|ReportingWebService|powershell-liveid|autodiscover|autodiscover\\.json|%2[eEfF]|;|:|\\?|=|&|BasicAuthToOAuthConversion|true|ı){0,12}"
    ) {
        proptest::prop_assert_eq!(classify(&target), classify_general(&target), "{}", target);
    }
}
