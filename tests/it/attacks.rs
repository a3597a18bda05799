//! The attacker's tables through the real proxy (issue "enforcement that holds"): each
//! kind of bypass, every variant, asserting what reached the upstream — nothing, for
//! everything refused.

use std::time::Duration;

use crate::support::*;

/// On-premises, the article's pilot: user01 blocked for MAPI, Autodiscover, OAB and RPC,
/// allowed for EWS. An audit log, for attribution.
const ONPREM: &str = "[exchange]\ndeployment = \"onpremises\"\n[policy]\nscript = \"policies.ps1\"\n[audit]\npath = \"audit/exgate.jsonl\"\n[[users]]\nupn = \"user01@contoso.com\"\nsam = \"CONTOSO\\\\user01\"\n[[users]]\nupn = \"user02@contoso.com\"\nsam = \"CONTOSO\\\\user02\"\n";

const PILOT: &str = "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc
Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth
";

const BLOCKED_PATHS: [&str; 4] = [
    "/mapi/emsmdb/?MailboxId=0@contoso.com",
    "/OAB/8b9d1c2e/oab.xml",
    "/Autodiscover/Autodiscover.xml",
    "/rpc/rpcproxy.dll?mail.contoso.com:6001",
];

/// Runs an NTLM handshake for `user` to EWS on `c` and checks it went through.
async fn authenticate(c: &mut Client, scheme: &str, user: &str) -> String {
    let t1 = c
        .get(
            "/EWS/Exchange.asmx",
            &[("authorization", &ntlm_type1(scheme))],
        )
        .await;
    assert_eq!(t1.status, 401, "Type 1 gets Exchange's Type 2");
    let t3 = c
        .get(
            "/EWS/Exchange.asmx",
            &[("authorization", &ntlm_type3(scheme, "CONTOSO", user))],
        )
        .await;
    assert_eq!(t3.status, 200, "{user} is allowed EWS");
    t3.header("x-upstream-connection").unwrap().to_owned()
}

/// Kind 1: every later request shape on a connection user01 authenticated, to every
/// protocol their policy blocks, is refused; Exchange receives nothing; the client
/// connection stays open and its next handshake works on a new upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_connection_cannot_carry_its_user_past_the_policy() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, PILOT, &[upstream.url()]).await;
    let later: [(&str, Option<String>); 6] = [
        ("no Authorization", None),
        ("Bearer probe", Some("Bearer".into())),
        (
            "Negotiate continuation",
            Some("Negotiate oQcwBaADCgEA".into()),
        ),
        ("garbage NTLM", Some("NTLM AAAA".into())),
        ("garbage Negotiate", Some("Negotiate !!!".into())),
        (
            "Basic of an allowed user",
            Some(basic("user02@contoso.com", "Winter2026!")),
        ),
    ];
    let mut cells = 0;
    for scheme in ["NTLM", "Negotiate"] {
        for path in BLOCKED_PATHS {
            for (what, header) in &later {
                let mut c = gate.client().await;
                let first = authenticate(&mut c, scheme, "user01").await;
                let before = upstream.requests().len();
                let headers: Vec<(&str, &str)> = header
                    .iter()
                    .map(|h| ("authorization", h.as_str()))
                    .collect();
                let r = c.get(path, &headers).await;
                let cell = format!("{scheme} then {what} to {path}");
                assert_eq!(r.status, 401, "{cell}");
                assert_eq!(r.all("www-authenticate"), [BEARER_CHALLENGE], "{cell}");
                assert_eq!(r.header("connection"), None, "{cell}");
                assert_eq!(
                    upstream.requests().len(),
                    before,
                    "{cell}: reached Exchange"
                );
                // The client connection is still usable; the identity is forgotten, so
                // a bare request is anonymous again, on a new upstream connection.
                let again = c.get("/EWS/Exchange.asmx", &[]).await;
                assert_eq!(again.status, 200, "{cell}");
                assert_ne!(
                    again.header("x-upstream-connection"),
                    Some(first.as_str()),
                    "{cell}: the authenticated upstream connection was closed"
                );
                let seen = upstream.requests();
                assert!(
                    seen[before..].iter().all(|r| !r.target.contains("mapi")
                        && !r.target.to_ascii_lowercase().contains("oab")
                        && !r.target.contains("rpc")
                        && !r.target.contains("Autodiscover")),
                    "{cell}: {seen:?}"
                );
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 2 * 4 * 6);
}

/// The allowed protocol keeps working on the authenticated connection, and the requests
/// are audited and metered as user01's legacy requests with the connection's scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_an_authenticated_connection_are_attributed_to_its_user() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, PILOT, &[upstream.url()]).await;
    let mut c = gate.client().await;
    let conn = authenticate(&mut c, "NTLM", "user01").await;
    for _ in 0..3 {
        let r = c.get("/EWS/Exchange.asmx", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-upstream-connection"), Some(conn.as_str()));
    }
    let r = c.get("/mapi/emsmdb/", &[]).await;
    assert_eq!(r.status, 401);
    let metrics = gate.metrics().await;
    for line in [
        r#"exgate_legacy_auth_attempts_total{action="allowed",protocol="WebServices",scheme="ntlm"} 4"#,
        r#"exgate_legacy_auth_attempts_total{action="blocked",protocol="Mapi",scheme="ntlm"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    // Type 1, Type 3, three bare EWS requests, the bare MAPI request.
    let lines = audit_lines(&gate, 6).await;
    let later: Vec<_> = lines
        .iter()
        .filter(|l| {
            // The directory identity, and the name the NTLM handshake presented.
            l["user"] == "user01@contoso.com"
                && l["presented_user"] == "CONTOSO\\user01"
                && l["scheme"] == "ntlm"
        })
        .map(|l| {
            (
                l["protocol"].as_str().unwrap(),
                l["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        later,
        [
            ("WebServices", "allow"),
            ("WebServices", "allow"),
            ("WebServices", "allow"),
            ("WebServices", "allow"),
            ("Mapi", "block"),
        ],
        "{lines:?}"
    );
    // `exgate report` counts them.
    let audit = gate
        .running
        .config_path()
        .with_file_name("audit/exgate.jsonl");
    let out = exgate(&["report", arg(&audit), "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counted = |protocol: &str| {
        report["legacy"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| {
                u["user"] == "user01@contoso.com"
                    && u["protocol"] == protocol
                    && u["scheme"] == "ntlm"
            })
            .map(|u| {
                (
                    u["count"].as_u64().unwrap(),
                    u["allowed"].as_u64().unwrap(),
                    u["blocked"].as_u64().unwrap(),
                )
            })
    };
    // The Type 3 and three bare requests to EWS; the bare MAPI request.
    assert_eq!(counted("WebServices"), Some((4, 4, 0)), "{report}");
    assert_eq!(counted("Mapi"), Some((1, 0, 1)), "{report}");
}

/// Kerberos hides the user: the organization default decides every later request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kerberos_connection_is_decided_by_the_organization_default() {
    let upstream = Upstream::start().await;
    let script = "New-AuthenticationPolicy -Name NoMapi -BlockLegacyAuthMapi\nSet-OrganizationConfig -DefaultAuthenticationPolicy NoMapi\n";
    let gate = Exgate::start(ONPREM, script, &[upstream.url()]).await;
    let mut c = gate.client().await;
    let r = c
        .get("/EWS/Exchange.asmx", &[("authorization", &kerberos())])
        .await;
    assert_eq!(r.status, 200);
    for path in ["/mapi/emsmdb/", "/mapi/nspi/"] {
        let before = upstream.requests().len();
        let r = c.get(path, &[]).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(upstream.requests().len(), before, "{path}");
        // The client authenticates again on the same connection.
        let r = c
            .get("/EWS/Exchange.asmx", &[("authorization", &kerberos())])
            .await;
        assert_eq!(r.status, 200);
    }
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains(r#"exgate_legacy_auth_attempts_total{action="blocked",protocol="Mapi",scheme="kerberos"} 2"#),
        "{metrics}"
    );
}

/// A Type 3 Exchange refused leaves no identity: later bare requests are anonymous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_handshake_leaves_no_identity() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, PILOT, &[upstream.url()]).await;
    let mut c = gate.client().await;
    // The recording upstream answers a bare `/challenge` with 401, as for a refused leg.
    let r = c
        .get("/EWS/challenge", &[("authorization", &ntlm_type1("NTLM"))])
        .await;
    assert_eq!(r.status, 401);
    let r = c.get("/mapi/emsmdb/", &[]).await;
    assert_eq!(
        r.status, 200,
        "no Type 3 was accepted: anonymous, Exchange's to answer"
    );
}

/// Kind 2: every name form of user01 in Basic to MAPI, which only user01's policy
/// blocks: refused; Exchange receives nothing. Names exgate cannot map fail closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_form_of_a_blocked_user_is_refused() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, PILOT, &[upstream.url()]).await;
    for name in [
        "\\user01",
        ".\\user01",
        "user01",
        "USER01",
        "CONTOSO\\user01",
        "contoso\\USER01",
        "contoso.com\\user01",
        "user01@contoso.com",
        "User01@Contoso.COM",
        "user01@contoso",
        "FABRIKAM\\user01",
        "user01@fabrikam.com",
        "CONTOSO\\user01@contoso.com",
        "user01 ",
        "a\\b\\user01",
        "user01@",
    ] {
        let mut c = gate.client().await;
        for path in BLOCKED_PATHS {
            let r = c
                .get(
                    path,
                    &[("authorization", &basic(name, "Pilot-Passw0rd-01"))],
                )
                .await;
            assert_eq!(r.status, 401, "{name:?} {path}");
        }
        let r = c
            .get(
                "/mapi/emsmdb/",
                &[("authorization", &ntlm_type3("NTLM", "", name))],
            )
            .await;
        assert_eq!(r.status, 401, "NTLM {name:?}");
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    // user02 has no policy: their forms pass.
    let mut c = gate.client().await;
    for name in ["\\user02", ".\\user02", "contoso.com\\user02"] {
        let r = c
            .get("/mapi/emsmdb/", &[("authorization", &basic(name, "x"))])
            .await;
        assert_eq!(r.status, 200, "{name}");
    }
}

/// Kind 2, continued (red team): spellings Active Directory takes for user02 — its
/// UnicodeString comparison ignores case, width, kana type, non-spacing marks and
/// characters without weight (MS-ADTS 3.1.1.2.2.4.13) — reached Exchange under the
/// organization default although user02's own policy blocks them. Each gets user02's
/// policy now: refused, nothing reaches Exchange, and the audit names user02 and the
/// policy. A Cyrillic look-alike is another account, to Active Directory too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spellings_active_directory_folds_get_the_users_own_policy() {
    let upstream = Upstream::start().await;
    let script = "New-AuthenticationPolicy -Name Block -BlockLegacyAuthMapi -BlockLegacyAuthWebServices -BlockLegacyAuthAutodiscover
Set-User user02 -AuthenticationPolicy Block
";
    let gate = Exgate::start(ONPREM, script, &[upstream.url()]).await;
    let spellings = [
        "ｕｓｅｒ０２@contoso.com",
        "usér02@contoso.com",
        "use\u{301}r02@contoso.com",
        "user\u{AD}02@contoso.com",
        "user\u{200B}02@contoso.com",
        "\u{FEFF}ＵＳＥＲ０２@Contoso.com",
        "CONTOSO\\ｕｓｅｒ０２",
    ];
    for name in spellings {
        let mut c = gate.client().await;
        for path in ["/EWS/Exchange.asmx", "/mapi/emsmdb/"] {
            let r = c
                .get(path, &[("authorization", &basic(name, "Winter2026!"))])
                .await;
            assert_eq!(r.status, 401, "Basic {name:?} {path}");
        }
        let (domain, user) = name.split_once('\\').unwrap_or(("", name));
        let r = c
            .get(
                "/EWS/Exchange.asmx",
                &[("authorization", &ntlm_type3("NTLM", domain, user))],
            )
            .await;
        assert_eq!(r.status, 401, "NTLM {name:?}");
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    let lines = audit_lines(&gate, 3 * spellings.len()).await;
    for line in &lines {
        assert_eq!(
            (&line["user"], &line["policy"], &line["decision"]),
            (
                &serde_json::json!("user02@contoso.com"),
                &serde_json::json!("Block"),
                &serde_json::json!("block")
            ),
            "{line}"
        );
    }
    // Look-alikes of another script are strangers: the organization default (none) lets
    // them through to Exchange, which refuses a password for an account it has not.
    let mut c = gate.client().await;
    for name in ["uѕer02@contoso.com", "CONTOSO\\usеr02"] {
        let r = c
            .get(
                "/EWS/Exchange.asmx",
                &[("authorization", &basic(name, "Winter2026!"))],
            )
            .await;
        assert_eq!(r.status, 200, "{name}");
    }
}

/// Red team: bad passwords for an account exgate cannot map to a declared user counted
/// once per spelling (7 spellings × the threshold reached Active Directory). Five
/// spellings of one undeclared account meet one threshold, and so do five spellings of
/// a declared one, including those exgate cannot map with certainty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_passwords_under_many_spellings_meet_one_lockout_threshold() {
    let upstream = Upstream::start().await;
    let toml = format!("{ONPREM}[lockout]\nthreshold = 3\n");
    let gate = Exgate::start(&toml, PILOT, &[upstream.url()]).await;
    let accounts = [
        [
            "carol@contoso.com",
            "CONTOSO\\carol",
            "carol",
            "carol@contoso.com.",
            "carol@contoso.com ",
        ],
        [
            "user02@contoso.com",
            "ｕｓｅｒ０２@contoso.com",
            "CONTOSO\\user\u{AD}02",
            "user02@contoso.com.",
            "FABRIKAM\\user02",
        ],
    ];
    for spellings in accounts {
        let before = upstream.requests().len();
        let mut c = gate.client().await;
        for round in 0..3 {
            for name in spellings {
                let r = c
                    .get(
                        "/EWS/Exchange.asmx",
                        &[("authorization", &basic(name, "wrong-guess"))],
                    )
                    .await;
                assert_eq!(r.status, 401, "round {round}: {name:?}");
            }
        }
        // 15 bad passwords under 5 spellings: 3 reached Exchange, as for one spelling.
        assert_eq!(upstream.requests().len() - before, 3, "{spellings:?}");
    }
    // The AD FS account cmdlets find that one count under any spelling, and reset it.
    let cmdlet = |script: &'static str| async move {
        let mut c = Client::connect(gate.running.admin_addr).await;
        let r = c.send("POST", "/cmdlet", &[], full(script)).await.unwrap();
        assert_eq!(r.status, 200, "{script}");
        String::from_utf8(r.body.to_vec()).unwrap()
    };
    let out = cmdlet("Get-AdfsAccountActivity -Identity 'ＣＯＮＴＯＳＯ\\Ｃａｒｏｌ'").await;
    assert!(out.contains("BadPwdCountUnknown     : 3"), "{out}");
    cmdlet("Reset-AdfsAccountLockout 'carol@contoso.com.' -Location Unknown").await;
    let out = cmdlet("Get-AdfsAccountActivity -Identity carol").await;
    assert!(out.contains("BadPwdCountUnknown     : 0"), "{out}");
    let before = upstream.requests().len();
    let mut c = gate.client().await;
    let r = c
        .get(
            "/EWS/Exchange.asmx",
            &[("authorization", &basic("carol@contoso.com", "wrong-again"))],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        upstream.requests().len(),
        before + 1,
        "reset: reaches Exchange"
    );
}

/// Kind 3: the ProxyShell family with an allowed user's Basic credentials: 400, nothing
/// reaches Exchange. Legitimate Autodiscover v2 requests still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxyshell_family_never_reaches_exchange() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, PILOT, &[upstream.url()]).await;
    let auth = basic("user02@contoso.com", "Winter2026!");
    let form = "application/x-www-form-urlencoded";
    for (method, target, headers, body) in [
        (
            "POST",
            "/autodiscover/admin@localhost//powershell/autodiscover.json?x=a",
            vec![("cookie", "Email=autodiscover/admin@localhost")],
            "",
        ),
        (
            "GET",
            "/autodiscover/autodiscover.json?a..foo.var/powershell/?&Protocol=XYZ",
            vec![("cookie", "Email=autodiscover/autodiscover.json?a..foo.var")],
            "",
        ),
        (
            "POST",
            "/autodiscover/autodiscover.json?a..foo.var/mapi/nspi/",
            vec![("content-type", form)],
            "Email=autodiscover/autodiscover.json?a..foo.var",
        ),
        (
            "GET",
            "/autodiscover/autodiscover.json?@evil.com/owa/&Email=autodiscover/autodiscover.json%3f@evil.com",
            vec![],
            "",
        ),
        (
            "GET",
            "/autodiscover/autodiscover.json",
            vec![("cookie", "X-BackEndCookie=1; email=user@contoso.com")],
            "",
        ),
        (
            "GET",
            "/autodiscover/autodiscover.json/../../mapi/nspi/",
            vec![],
            "",
        ),
    ] {
        let mut headers = headers;
        headers.push(("authorization", &auth));
        let mut c = gate.client().await;
        let r = c
            .send(method, target, &headers, full(body.to_owned()))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{method} {target} {headers:?}");
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    let mut c = gate.client().await;
    for target in [
        "/autodiscover/autodiscover.json?Email=user02@contoso.com&Protocol=EWS&RedirectCount=1",
        "/autodiscover/autodiscover.json/v1.0/user02@contoso.com?Protocol=Rest",
        "/autodiscover/autodiscover.json/v1.0/user02%40contoso.com?Protocol=ActiveSync",
    ] {
        assert_eq!(c.get(target, &[]).await.status, 200, "{target}");
    }
}

/// Kind 4: without issuers, a password sent to the conversion endpoint is legacy Basic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_to_the_conversion_endpoint_is_legacy_basic() {
    let upstream = Upstream::start().await;
    let online = "[exchange]\ndeployment = \"online\"\n[policy]\nscript = \"policies.ps1\"\n[[users]]\nupn = \"user01@contoso.com\"\nsam = \"CONTOSO\\\\user01\"\n";
    let script =
        "New-AuthenticationPolicy -Name BlockPs\nSet-User user01 -AuthenticationPolicy BlockPs\n";
    let gate = Exgate::start(online, script, &[upstream.url()]).await;
    let mut c = gate.client().await;
    for target in [
        "/powershell-liveid?BasicAuthToOAuthConversion=true",
        "/PowerShell-LiveID/?BasicAuthToOAuthConversion=TRUE",
        "/powershell-liveid?BasicAuthToOAuthConversion=false&BasicAuthToOAuthConversion=true",
        "/powershell-liveid?BasicAuthToOAuthConversion=true&BasicAuthToOAuthConversion=true",
        "/powershell-liveid?basicauthtooauthconversion=true&DelegatedOrg=contoso.com",
    ] {
        for password in ["Pilot-Passw0rd-01", "Bearer Pilot-Passw0rd-01", "a.b.c"] {
            let r = c
                .get(
                    target,
                    &[("authorization", &basic("user01@contoso.com", password))],
                )
                .await;
            assert_eq!(r.status, 401, "{target} {password}");
        }
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

/// Kind 5: request framing a strict server refuses, answered before any decision,
/// never forwarded, counted as the client's error and never as the upstream's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_the_clients_fault() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, "", &[upstream.url()]).await;
    let host = "Host: mail.contoso.com\r\n";
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!(
                "POST /ews/exchange.asmx HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\nx\r\n0\r\n\r\n"
            ),
            400,
            "body_framing",
        ),
        (
            format!(
                "POST /ews/exchange.asmx HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n"
            ),
            400,
            "body_framing",
        ),
        (
            "GET /mapi/ HTTP/1.1\r\n\r\n".to_owned(),
            400,
            "missing_host",
        ),
        (
            format!("GET /mapi/ HTTP/1.1\r\n{host}Host: evil.example\r\n\r\n"),
            400,
            "duplicate_host",
        ),
        (
            format!("GET http://evil.example/mapi/ HTTP/1.1\r\n{host}\r\n"),
            400,
            "host_mismatch",
        ),
        (
            format!(
                "POST /ews/ HTTP/1.1\r\n{host}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
            "content_length_with_transfer_encoding",
        ),
        (
            format!(
                "POST /ews/ HTTP/1.1\r\n{host}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
            ),
            400,
            "duplicate_content_length",
        ),
        (
            format!("CONNECT mail.contoso.com:443 HTTP/1.1\r\n{host}\r\n"),
            405,
            "method_not_allowed",
        ),
        (
            format!("TRACE / HTTP/1.1\r\n{host}\r\n"),
            405,
            "method_not_allowed",
        ),
        (
            "GET /mapi/ HTTP/1.1\nHost: mail.contoso.com\n\n".to_owned(),
            400,
            "bare_lf",
        ),
        (
            format!(
                "GET /mapi/ HTTP/1.1\r\n{host}Authorization: Basic eDp5\r\nConnection: keep-alive, Authorization\r\n\r\n"
            ),
            400,
            "connection_names_end_to_end",
        ),
        (
            format!("GET /mapi/ HTTP/1.1\r\n{host}X-A: 1\n\r\n"),
            400,
            "bare_lf",
        ),
        (
            format!(
                "POST /ews/ HTTP/1.1\r\n{host}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
            ),
            400,
            "malformed_head",
        ),
    ];
    for (request, status, reason) in &cases {
        let (got, text) =
            raw_exchange(gate.addr(), request.as_bytes(), Duration::from_secs(2)).await;
        assert_eq!(got, *status, "{request:?}\n{text}");
        let _ = reason;
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    let metrics = gate.metrics().await;
    assert!(upstream_errors(&metrics) == 0, "{metrics}");
    for reason in [
        "connection_names_end_to_end",
        "malformed_head",
        "bare_lf",
        "body_framing",
        "missing_host",
        "duplicate_host",
        "host_mismatch",
        "content_length_with_transfer_encoding",
        "duplicate_content_length",
        "method_not_allowed",
    ] {
        let want = cases.iter().filter(|c| c.2 == reason).count();
        let line = format!("exgate_client_errors_total{{reason=\"{reason}\"}} {want}");
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}

/// A small body that stalls is timed out with 408, never reaches Exchange, and never
/// counts against the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_small_body_gets_408_and_never_reaches_exchange() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start_with("idle_timeout_seconds = 1", ONPREM, "", &[upstream.url()]).await;
    let request = "POST /ews/exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 1000\r\n\r\n0123456789";
    let started = std::time::Instant::now();
    let (status, text) =
        raw_exchange(gate.addr(), request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status, 408, "{text}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    assert_only_client_errors(&gate.metrics().await, "body_stalled", 1);
}

/// `server.max_header_bytes` holds to the byte: a head of exactly the limit is served, one
/// byte more gets 431 and never reaches Exchange; so does a head far above it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_limit_is_exact() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start_with("max_header_bytes = 8192", ONPREM, "", &[upstream.url()]).await;
    let head = |size: usize| {
        let start = "GET /ews/ HTTP/1.1\r\nHost: mail.contoso.com\r\nX-Pad: ";
        let pad = size - start.len() - 4;
        format!("{start}{}\r\n\r\n", "a".repeat(pad))
    };
    assert_eq!(head(8192).len(), 8192);
    let (status, text) =
        raw_exchange(gate.addr(), head(8192).as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(upstream.requests().len(), 1);
    // More than 100 fields: hyper's own 431, still counted as the client's.
    let many: String = (0..101).map(|i| format!("X-{i}: a\r\n")).collect();
    let request = format!("GET /ews/ HTTP/1.1\r\nHost: mail.contoso.com\r\n{many}\r\n");
    let (status, _) = raw_exchange(gate.addr(), request.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(status, 431);
    assert_only_client_errors(&gate.metrics().await, "head_too_large", 1);
    for size in [8193, 20_000, 114_000] {
        let (status, text) =
            raw_exchange(gate.addr(), head(size).as_bytes(), Duration::from_secs(2)).await;
        assert!(status == 431, "{size}: {}", &text[..text.len().min(200)]);
    }
    assert_eq!(upstream.requests().len(), 1);
}

/// Found by the red team: a later authentication leg that Exchange refuses made exgate
/// forget the connection's user while the upstream connection stayed authenticated, so
/// bare requests were forwarded as anonymous and served as user01. Now no new leg ever
/// reaches the upstream connection an earlier leg authenticated: the poisoned leg and
/// everything after it travel on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_leg_cannot_strip_the_identity_off_an_authenticated_connection() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, PILOT, &[upstream.url()]).await;
    let poisons = [
        "NTLM".to_owned(),
        "Negotiate".to_owned(),
        "NTLM !!!!".to_owned(),
        "NTLM TlRMTVNTUAADAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        "Negotiate oQcwBaADCgEA".to_owned(),
        "Negotiate YCgGCSqGSIb3EgECAgEAbgAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        kerberos(),
        ntlm_type1("NTLM"),
        ntlm_type3("NTLM", "CONTOSO", "user02"),
        ntlm_type3("Negotiate", "CONTOSO", "user02"),
    ];
    for login in ["/owa/", "/EWS/Exchange.asmx"] {
        for poison in &poisons {
            let mut c = gate.client().await;
            let t1 = c
                .get(login, &[("authorization", &ntlm_type1("NTLM"))])
                .await;
            assert_eq!(t1.status, 401);
            let t3 = c
                .get(
                    login,
                    &[("authorization", &ntlm_type3("NTLM", "CONTOSO", "user01"))],
                )
                .await;
            assert_eq!(t3.status, 200);
            let authenticated = t3.header("x-upstream-connection").unwrap().to_owned();
            let before = upstream.requests().len();
            let _ = c.get("/owa/", &[("authorization", poison)]).await;
            let r = c.get("/mapi/emsmdb/", &[]).await;
            let cell = format!("login {login}, poison {}", &poison[..poison.len().min(24)]);
            let seen = upstream.requests();
            for req in &seen[before..] {
                assert_ne!(
                    req.connection.to_string(),
                    authenticated,
                    "{cell}: {} {} reached user01's authenticated connection",
                    req.method,
                    req.target
                );
            }
            // Whatever the poison did, MAPI is never served on user01's connection.
            if r.status == 200 {
                assert_ne!(
                    r.header("x-upstream-connection"),
                    Some(authenticated.as_str()),
                    "{cell}"
                );
            }
        }
    }
}

/// Found by the red team: exgate forwards the path as sent, so `/mapi/../owa/` — OWA to
/// exgate, MAPI to a server routing on the raw path — carried user01's blocked MAPI
/// through, with Basic or on an NTLM connection. A path whose raw reading names another
/// protocol than its normalized form is refused, never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_reads_as_another_protocol_raw_never_reaches_exchange() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, PILOT, &[upstream.url()]).await;
    let paths = [
        "/mapi/../owa/",
        "/mapi/%2e%2e/owa/",
        "/mapi%2f..%2fowa/",
        "/mapi/..%5cowa/",
        "/mapi/emsmdb/../../owa/",
        "/mapi/../ews/exchange.asmx",
        "/oab/../owa/",
        "/rpc/../ecp/",
        "/autodiscover/../owa/",
    ];
    let auth = basic("user01@contoso.com", "Pilot-Passw0rd-01");
    for path in paths {
        let mut c = gate.client().await;
        let r = c.get(path, &[("authorization", &auth)]).await;
        assert_eq!(r.status, 400, "Basic {path}");
        let mut c = gate.client().await;
        authenticate(&mut c, "NTLM", "user01").await;
        let before = upstream.requests().len();
        let r = c.get(path, &[]).await;
        assert_eq!(r.status, 400, "NTLM connection {path}");
        assert_eq!(upstream.requests().len(), before, "{path}");
    }
    let raw = "GET /mapi\\..\\owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Basic dXNlcjAxQGNvbnRvc28uY29tOlBpbG90LVBhc3N3MHJkLTAx\r\n\r\n";
    let (status, _) = raw_exchange(gate.addr(), raw.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(status, 400);
    let seen = upstream.requests();
    assert!(
        seen.iter().all(|r| r.target == "/EWS/Exchange.asmx"),
        "only the NTLM sign-ins reached Exchange: {seen:?}"
    );
}

/// Schemes exgate does not know, as a client would send them where nothing governs
/// the request (OWA): IIS 10's `Nego2` and a bare `Kerberos` may authenticate the
/// connection at Exchange (red team, issue 16).
const UNKNOWN_SCHEMES: [&str; 3] = ["Nego2 TlRMTVNTUAABAAAA", "Kerberos YIIB", "X-Custom abc"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_scheme_where_nothing_governs_pins_its_connection_and_decides_what_follows() {
    let upstream = Upstream::start().await;
    let block_all = "New-AuthenticationPolicy BlockAll -BlockLegacyAuthActiveSync -BlockLegacyAuthAutodiscover -BlockLegacyAuthImap -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthPop -BlockLegacyAuthRpc -BlockLegacyAuthWebServices\nSet-OrganizationConfig -DefaultAuthenticationPolicy BlockAll\n";
    let gate = Exgate::start(ONPREM, block_all, &[upstream.url()]).await;
    let mut clients = Vec::new();
    for scheme in UNKNOWN_SCHEMES {
        let mut a = gate.client().await;
        let r = a.get("/owa/", &[("authorization", scheme)]).await;
        assert_eq!(r.status, 200, "{scheme}: OWA is not governed");
        assert_eq!(
            r.header("proxy-support"),
            Some("Session-Based-Authentication"),
            "{scheme}: pinned"
        );
        // An anonymous EWS request rides on that connection: decided as its (unknown)
        // user, under the blocking default.
        let r = a.get("/EWS/Exchange.asmx", &[]).await;
        assert_eq!(r.status, 401, "{scheme}: EWS after it");
        clients.push(a);
    }
    // Parked, the pinned connections stay theirs: another client's requests go on new
    // upstream connections.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut b = gate.client().await;
    assert_eq!(b.get("/owa/b", &[]).await.status, 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 4, "EWS never arrived: {seen:?}");
    let pinned: Vec<usize> = seen[..3].iter().map(|r| r.connection).collect();
    assert!(
        !pinned.contains(&seen[3].connection),
        "another client got a pinned connection: {seen:?}"
    );
    // The EWS refusal closed each pinned connection and forgot it (as for NTLM): the
    // clients' next requests start on new upstream connections.
    for mut a in clients {
        assert_eq!(a.get("/owa/again", &[]).await.status, 200);
    }
    let seen = upstream.requests();
    let connections: std::collections::HashSet<usize> = seen.iter().map(|r| r.connection).collect();
    assert_eq!(connections.len(), 7, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_ntlm_leg_after_the_upstream_connection_closed_goes_on_a_new_one() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, "", &[upstream.url()]).await;
    for scheme in ["NTLM", "Negotiate"] {
        let mut c = gate.client().await;
        assert_eq!(c.get("/owa/closes", &[]).await.status, 200);
        let t1 = c
            .get(
                "/EWS/Exchange.asmx",
                &[("authorization", &ntlm_type1(scheme))],
            )
            .await;
        assert_eq!(
            t1.status, 401,
            "{scheme}: the upstream's challenge, not a 502"
        );
        assert!(t1.header("www-authenticate").unwrap().starts_with(scheme));
    }
    let seen = upstream.requests();
    let connections: Vec<usize> = seen.iter().map(|r| r.connection).collect();
    assert_eq!(connections, [0, 1, 2, 3], "{seen:?}");
    assert_eq!(upstream_errors(&gate.metrics().await), 0);
}
