//! Kerberos through the real binary, with a real MIT KDC and real clients (SPEC §3
//! "Kerberos"): tickets from `kinit`, AP-REQs from `curl --negotiate` (MIT's GSS-API,
//! inside SPNEGO), service keys exported with `kadmin.local ktadd -norandkey`. Without
//! `[kerberos] keytab` Kerberos hides the user and the organization default decides; with
//! it, exgate reads the client principal from the ticket and decides as for NTLM, and a
//! ticket it cannot decrypt fails closed.
//!
//! They need Debian's krb5-kdc, krb5-admin-server and krb5-user, which `.ci/run`
//! installs; so they are `#[ignore]`d here and run by `.ci/run`
//! (`cargo test --test it -- --ignored`).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::kdc::{Kdc, KeytabEntry, REALM, Ticket};
use crate::support::*;

/// On-premises, with the two users of the realm.
const USERS_TOML: &str = "[exchange]\ndeployment = \"onpremises\"\n[policy]\nscript = \"policies.ps1\"\n[[users]]\nupn = \"user01@contoso.com\"\nsam = \"CONTOSO\\\\user01\"\n[[users]]\nupn = \"user02@contoso.com\"\nsam = \"CONTOSO\\\\user02\"\n";

/// user01's policy blocks MAPI and not EWS; user02 has none; no organization default. So
/// the strictest applicable policy for MAPI blocks it, and none blocks EWS.
const PILOT: &str = "New-AuthenticationPolicy -Name BlockMapi -BlockLegacyAuthMapi
Set-User user01 -AuthenticationPolicy BlockMapi
";

/// The pilot, plus a policy of user02 that blocks nothing and an organization default
/// that blocks MAPI: a hidden user gets the default, an identified user02 their own.
const PILOT_AND_DEFAULT: &str = "New-AuthenticationPolicy -Name BlockMapi -BlockLegacyAuthMapi
Set-User user01 -AuthenticationPolicy BlockMapi
New-AuthenticationPolicy -Name AllowAll
Set-User user02 -AuthenticationPolicy AllowAll
New-AuthenticationPolicy -Name OrgNoMapi -BlockLegacyAuthMapi
Set-OrganizationConfig -DefaultAuthenticationPolicy OrgNoMapi
";

const MAPI: &str = "/mapi/emsmdb/";
const EWS: &str = "/EWS/Exchange.asmx";

/// The Exchange service's host: curl asks for a ticket for `HTTP/exch.contoso.test`.
const EXCH: &str = "exch.contoso.test";

const AES256: &str = "aes256-cts-hmac-sha1-96";
const AES128: &str = "aes128-cts-hmac-sha1-96";
const RC4: &str = "arcfour-hmac";

/// `exgate serve` (the real binary) in front of `upstream`, with `[kerberos] keytab`
/// when one is given.
fn serve(upstream: &Upstream, script: &str, keytab: Option<&Path>) -> Spawned {
    let mut toml = USERS_TOML.to_owned();
    if let Some(keytab) = keytab {
        toml.push_str(&format!("[kerberos]\nkeytab = \"{}\"\n", arg(keytab)));
    }
    let dir = write_files(&[
        ("exgate.toml", &config_text(&toml, &[upstream.url()], "")),
        ("policies.ps1", script),
    ]);
    Spawned::start(&dir, "warn")
}

/// The `Authorization` header curl sent, from its `-v` trace.
fn sent_authorization(trace: &str) -> Option<&str> {
    trace
        .lines()
        .find_map(|l| l.strip_prefix("> Authorization: "))
        .map(str::trim)
}

/// curl with `ccache`'s tickets for `HTTP/<host>` to `path` through exgate: exgate answers
/// 401 and nothing reaches Exchange.
fn assert_refused(
    kdc: &Kdc,
    gate: &Spawned,
    upstream: &Upstream,
    ccache: &Path,
    host: &str,
    path: &str,
) {
    let before = upstream.requests();
    let run = kdc.curl_negotiate(ccache, host, gate.proxy, path);
    let what = format!("{} to {path} with a ticket for HTTP/{host}", name(ccache));
    let sent = sent_authorization(&run.trace).unwrap_or_default();
    assert!(
        sent.starts_with("Negotiate YII"),
        "{what}: curl sent no SPNEGO token: {}",
        run.trace
    );
    assert_eq!(run.status, 401, "{what}: {}", run.trace);
    let after = upstream.requests();
    assert_eq!(
        after.len(),
        before.len(),
        "{what} reached Exchange: {:?}",
        &after[before.len()..]
    );
}

/// curl with `ccache`'s tickets for `HTTP/<host>` to `path` through exgate: Exchange
/// receives exactly that request, with the AP-REQ curl sent, and answers 200.
fn assert_forwarded(
    kdc: &Kdc,
    gate: &Spawned,
    upstream: &Upstream,
    ccache: &Path,
    host: &str,
    path: &str,
) {
    let before = upstream.requests().len();
    let run = kdc.curl_negotiate(ccache, host, gate.proxy, path);
    let what = format!("{} to {path} with a ticket for HTTP/{host}", name(ccache));
    assert_eq!(run.status, 200, "{what}: {}", run.trace);
    let sent = sent_authorization(&run.trace)
        .unwrap_or_else(|| panic!("{what}: curl sent no Authorization: {}", run.trace));
    assert!(sent.starts_with("Negotiate YII"), "{what}: {sent}");
    let after = upstream.requests();
    let new = &after[before..];
    assert_eq!(new.len(), 1, "{what}: {new:?}");
    assert_eq!(new[0].target, path, "{what}");
    assert_eq!(
        new[0]
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap()),
        Some(sent),
        "{what}: Exchange did not receive curl's AP-REQ"
    );
}

/// `user01` of a `user01-N.ccache` path, for messages.
fn name(ccache: &Path) -> String {
    let file = ccache.file_name().unwrap().to_string_lossy();
    file.split('-').next().unwrap().to_owned()
}

/// The ticket curl used for `HTTP/<host>` (left in `ccache`) is in `etype`, key version
/// `kvno`: the test exercises the enctype it names.
fn assert_ticket(kdc: &Kdc, ccache: &Path, host: &str, etype: &str, kvno: u32) {
    assert_eq!(
        kdc.ticket(ccache, host),
        Ticket {
            etype: etype.to_owned(),
            kvno
        },
        "{}'s ticket for HTTP/{host}",
        name(ccache)
    );
}

fn keytab_entry(host: &str, etype: &str, kvno: u32) -> KeytabEntry {
    KeytabEntry {
        kvno,
        principal: format!("HTTP/{host}@{REALM}"),
        etype: etype.to_owned(),
    }
}

/// Without a keytab, the old behaviour: Kerberos hides the user. user01's AP-REQ reaches
/// MAPI although user01's policy blocks it (no organization default); with a default that
/// blocks MAPI, user02's AP-REQ is refused although user02's own policy blocks nothing,
/// and EWS, which the default leaves alone, is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT krb5-kdc (installed by .ci/run)"]
async fn without_a_keytab_kerberos_hides_the_user_and_the_organization_default_decides() {
    let kdc = Kdc::start();
    kdc.add_service(EXCH, AES256);
    let user01 = kdc.kinit("user01");
    let user02 = kdc.kinit("user02");

    let upstream = Upstream::start().await;
    let gate = serve(&upstream, PILOT, None);
    assert_forwarded(&kdc, &gate, &upstream, &user01, EXCH, MAPI);
    assert_ticket(&kdc, &user01, EXCH, AES256, 1);
    gate.stop();

    let upstream = Upstream::start().await;
    let gate = serve(&upstream, PILOT_AND_DEFAULT, None);
    assert_refused(&kdc, &gate, &upstream, &user02, EXCH, MAPI);
    assert_forwarded(&kdc, &gate, &upstream, &user02, EXCH, EWS);
    assert_ticket(&kdc, &user02, EXCH, AES256, 1);
    gate.stop();
}

/// With the service's keytab, exgate reads who the ticket is for: user01's AP-REQ to
/// MAPI is refused and never forwarded, user02's is forwarded, and user01's to EWS (which
/// user01's policy does not block) is forwarded. Under the policies with an organization
/// default that blocks MAPI, user02 gets their own policy, which lets MAPI through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT krb5-kdc (installed by .ci/run)"]
async fn with_a_keytab_the_ticket_names_the_user_and_their_policy_decides() {
    let kdc = Kdc::start();
    kdc.add_service(EXCH, AES256);
    let keytab = kdc.export_keytab("exgate.keytab", &[EXCH]);
    assert_eq!(kdc.keytab_entries(&keytab), [keytab_entry(EXCH, AES256, 1)]);
    let user01 = kdc.kinit("user01");
    let user02 = kdc.kinit("user02");

    let upstream = Upstream::start().await;
    let gate = serve(&upstream, PILOT, Some(&keytab));
    assert_refused(&kdc, &gate, &upstream, &user01, EXCH, MAPI);
    assert_forwarded(&kdc, &gate, &upstream, &user02, EXCH, MAPI);
    assert_forwarded(&kdc, &gate, &upstream, &user01, EXCH, EWS);
    assert_ticket(&kdc, &user01, EXCH, AES256, 1);
    assert_ticket(&kdc, &user02, EXCH, AES256, 1);
    gate.stop();

    let upstream = Upstream::start().await;
    let gate = serve(&upstream, PILOT_AND_DEFAULT, Some(&keytab));
    assert_forwarded(&kdc, &gate, &upstream, &user02, EXCH, MAPI);
    assert_refused(&kdc, &gate, &upstream, &user01, EXCH, MAPI);
    gate.stop();
}

/// Each enctype of SPEC §3 decrypts: three services with a key of one enctype each
/// (AES256, AES128, RC4-HMAC), their keys in one keytab. For each, user01's AP-REQ to MAPI
/// is refused and user02's forwarded (an undecrypted ticket would refuse user02 too:
/// fail closed), and the ticket curl used is in that enctype.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT krb5-kdc (installed by .ci/run)"]
async fn aes256_aes128_and_rc4_service_keys_each_name_the_user() {
    let kdc = Kdc::start();
    let services = [
        ("aes256.contoso.test", AES256),
        ("aes128.contoso.test", AES128),
        ("rc4.contoso.test", RC4),
    ];
    for (host, etype) in services {
        kdc.add_service(host, etype);
    }
    let hosts: Vec<&str> = services.iter().map(|(h, _)| *h).collect();
    let keytab = kdc.export_keytab("exgate.keytab", &hosts);
    let entries: Vec<KeytabEntry> = services
        .iter()
        .map(|(h, e)| keytab_entry(h, e, 1))
        .collect();
    assert_eq!(kdc.keytab_entries(&keytab), entries);
    let user01 = kdc.kinit("user01");
    let user02 = kdc.kinit("user02");

    let upstream = Upstream::start().await;
    let gate = serve(&upstream, PILOT, Some(&keytab));
    for (host, etype) in services {
        assert_refused(&kdc, &gate, &upstream, &user01, host, MAPI);
        assert_forwarded(&kdc, &gate, &upstream, &user02, host, MAPI);
        assert_ticket(&kdc, &user01, host, etype, 1);
        assert_ticket(&kdc, &user02, host, etype, 1);
    }
    gate.stop();
}

/// A ticket exgate cannot decrypt is an unidentified legacy credential, decided by the
/// strictest applicable policy (user01's, which blocks MAPI): user02's AP-REQ to MAPI is
/// refused when the ticket is for a service whose key is not in the keytab
/// (`HTTP/other…`) or under a newer key version than the keytab's (`HTTP/exch…` re-keyed
/// after the export). EWS, which no policy blocks, is still forwarded, and a ticket for a
/// service of the same keytab whose key did not change still names user02 (forwarded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT krb5-kdc (installed by .ci/run)"]
async fn a_ticket_exgate_cannot_decrypt_fails_closed() {
    const CURRENT: &str = "current.contoso.test";
    const OTHER: &str = "other.contoso.test";
    let kdc = Kdc::start();
    for host in [EXCH, CURRENT, OTHER] {
        kdc.add_service(host, AES256);
    }
    let keytab = kdc.export_keytab("exgate.keytab", &[EXCH, CURRENT]);
    kdc.rekey_service(EXCH, AES256);
    assert_eq!(
        kdc.keytab_entries(&keytab),
        [
            keytab_entry(EXCH, AES256, 1),
            keytab_entry(CURRENT, AES256, 1)
        ]
    );
    let user02 = kdc.kinit("user02");

    let upstream = Upstream::start().await;
    let gate = serve(&upstream, PILOT, Some(&keytab));
    assert_forwarded(&kdc, &gate, &upstream, &user02, CURRENT, MAPI);
    assert_ticket(&kdc, &user02, CURRENT, AES256, 1);
    // The old key version.
    assert_refused(&kdc, &gate, &upstream, &user02, EXCH, MAPI);
    assert_ticket(&kdc, &user02, EXCH, AES256, 2);
    assert_forwarded(&kdc, &gate, &upstream, &user02, EXCH, EWS);
    // Another service.
    assert_refused(&kdc, &gate, &upstream, &user02, OTHER, MAPI);
    assert_ticket(&kdc, &user02, OTHER, AES256, 1);
    assert_forwarded(&kdc, &gate, &upstream, &user02, OTHER, EWS);
    gate.stop();
}

/// The `Authorization` header `curl --negotiate` sends with `ccache`'s ticket for
/// `HTTP/<host>`, captured by a recorder of its own (the AP-REQ is then replayed on one
/// connection, which curl cannot do bare: without `Persistent-Auth: true` from the server
/// it sends a new AP-REQ with each request).
async fn curl_authorization(kdc: &Kdc, ccache: &Path, host: &str) -> String {
    let capture = Upstream::start().await;
    let run = kdc.curl_negotiate(ccache, host, capture.addr, EWS);
    assert_eq!(run.status, 200, "{}", run.trace);
    let seen = capture.requests();
    let header = seen[0].headers.get("authorization");
    let header = header.unwrap_or_else(|| panic!("no Authorization: {}", run.trace));
    header.to_str().unwrap().to_owned()
}

/// Connection identity (SPEC §3): once Exchange accepted user01's AP-REQ to EWS, a later
/// request on the same connection without any `Authorization` is user01's: to MAPI it is
/// refused and never forwarded. The same sequence as user02 is served, the bare request
/// on the upstream connection the AP-REQ authenticated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT krb5-kdc (installed by .ci/run)"]
async fn a_bare_request_on_a_kerberos_connection_is_decided_as_its_user() {
    let kdc = Kdc::start();
    kdc.add_service(EXCH, AES256);
    let keytab = kdc.export_keytab("exgate.keytab", &[EXCH]);
    let upstream = Upstream::start().await;
    let gate = serve(&upstream, PILOT, Some(&keytab));
    for (user, mapi) in [("user01", 401), ("user02", 200)] {
        let ccache = kdc.kinit(user);
        let ap_req = curl_authorization(&kdc, &ccache, EXCH).await;
        assert_ticket(&kdc, &ccache, EXCH, AES256, 1);
        let mut c = Client::connect(gate.proxy).await;
        let before = upstream.requests().len();
        let first = c.get(EWS, &[("authorization", &ap_req)]).await;
        assert_eq!(first.status, 200, "{user}'s AP-REQ to EWS");
        let seen = upstream.requests();
        assert_eq!(seen.len(), before + 1, "{user}: {seen:?}");
        assert_eq!(
            seen[before]
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap()),
            Some(ap_req.as_str()),
            "{user}"
        );
        let bare = c.get(MAPI, &[]).await;
        assert_eq!(bare.status, mapi, "{user}'s bare request to MAPI");
        let seen = upstream.requests();
        if mapi == 401 {
            assert_eq!(seen.len(), before + 1, "{user}: {seen:?}");
            continue;
        }
        assert_eq!(seen.len(), before + 2, "{user}: {seen:?}");
        let bare = &seen[before + 1];
        assert_eq!(bare.target, MAPI, "{user}");
        assert!(bare.headers.get("authorization").is_none(), "{user}");
        assert_eq!(
            bare.connection, seen[before].connection,
            "{user}: the bare request left the connection the AP-REQ authenticated"
        );
    }
    gate.stop();
}

/// One DER element of `bytes`: its tag, its content, and what follows it.
fn der(bytes: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (bytes[0], bytes[1] as usize);
    let (len, start) = match first {
        0..0x80 => (first, 2),
        _ => {
            let n = first & 0x7f;
            let len = bytes[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| acc << 8 | *b as usize);
            (len, 2 + n)
        }
    };
    (tag, &bytes[start..start + len], &bytes[start + len..])
}

/// The Kerberos GSS token (RFC 4121 §4.1: `0x60`, the krb5 OID, `01 00`, the AP-REQ)
/// inside curl's SPNEGO NegTokenInit (RFC 4178 §4.2.1: its `mechToken`, `[2]`).
fn krb5_inside_spnego(spnego: &[u8]) -> Vec<u8> {
    const KRB5_AP_REQ: [u8; 13] = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01, 0x00,
    ];
    let (tag, gss, _) = der(spnego);
    assert_eq!(tag, 0x60);
    let (tag, _spnego_oid, rest) = der(gss);
    assert_eq!(tag, 0x06);
    let (tag, init, _) = der(rest);
    assert_eq!(tag, 0xa0);
    let (tag, mut fields, _) = der(init);
    assert_eq!(tag, 0x30);
    while !fields.is_empty() {
        let (tag, content, rest) = der(fields);
        if tag == 0xa2 {
            let (tag, mech_token, _) = der(content);
            assert_eq!(tag, 0x04);
            let (tag, inner, _) = der(mech_token);
            assert_eq!(tag, 0x60);
            assert!(inner.starts_with(&KRB5_AP_REQ), "{inner:02x?}");
            return mech_token.to_vec();
        }
        fields = rest;
    }
    panic!("no mechToken in {spnego:02x?}");
}

/// A raw Kerberos GSS token under `Negotiate` (no SPNEGO around it, as some clients send)
/// names the user too: user01's to MAPI is refused, user02's forwarded unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT krb5-kdc (installed by .ci/run)"]
async fn a_raw_kerberos_token_without_spnego_names_the_user_too() {
    let kdc = Kdc::start();
    kdc.add_service(EXCH, AES256);
    let keytab = kdc.export_keytab("exgate.keytab", &[EXCH]);
    let upstream = Upstream::start().await;
    let gate = serve(&upstream, PILOT, Some(&keytab));
    for (user, mapi) in [("user01", 401), ("user02", 200)] {
        let ccache = kdc.kinit(user);
        let spnego = curl_authorization(&kdc, &ccache, EXCH).await;
        let spnego = STANDARD
            .decode(spnego.strip_prefix("Negotiate ").unwrap())
            .unwrap();
        let raw = format!("Negotiate {}", STANDARD.encode(krb5_inside_spnego(&spnego)));
        let before = upstream.requests().len();
        let mut c = Client::connect(gate.proxy).await;
        let r = c.get(MAPI, &[("authorization", &raw)]).await;
        assert_eq!(r.status, mapi, "{user}'s raw Kerberos token to MAPI");
        let seen = upstream.requests();
        let new = &seen[before..];
        if mapi == 401 {
            assert!(new.is_empty(), "{user}: {new:?}");
            continue;
        }
        assert_eq!(new.len(), 1, "{user}: {new:?}");
        assert_eq!(
            new[0]
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap()),
            Some(raw.as_str()),
            "{user}"
        );
    }
    gate.stop();
}

/// Operating it: the first AP-REQ of a ticket is decrypted and the same ticket on the next
/// connection comes from the cache (`exgate_kerberos_tickets_total`); the audit log and
/// `exgate report` name the ticket's user by their directory identity (the principal is
/// the line's `presented_user`); after the service is re-keyed, its new
/// tickets fail closed (`no_key`) until the keytab is re-exported and exgate reloaded
/// (SIGHUP), and then name their user again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT krb5-kdc (installed by .ci/run)"]
async fn the_cache_the_audit_log_and_a_reload_after_a_new_key_version() {
    let kdc = Kdc::start();
    kdc.add_service(EXCH, AES256);
    let keytab = kdc.export_keytab("exgate.keytab", &[EXCH]);
    let user01 = kdc.kinit("user01");
    let user02 = kdc.kinit("user02");

    let upstream = Upstream::start().await;
    let mut toml = USERS_TOML.to_owned();
    toml.push_str(&format!(
        "[kerberos]\nkeytab = \"{}\"\n[audit]\npath = \"audit.jsonl\"\n",
        arg(&keytab)
    ));
    let dir = write_files(&[
        ("exgate.toml", &config_text(&toml, &[upstream.url()], "")),
        ("policies.ps1", PILOT),
    ]);
    let gate = Spawned::start(&dir, "warn");
    let count = |metrics: &str, outcome: &str| -> u64 {
        let prefix = format!("exgate_kerberos_tickets_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert_forwarded(&kdc, &gate, &upstream, &user02, EXCH, MAPI);
    assert_forwarded(&kdc, &gate, &upstream, &user02, EXCH, EWS);
    assert_refused(&kdc, &gate, &upstream, &user01, EXCH, MAPI);
    let metrics = gate.metrics().await;
    // Two tickets (user02's, user01's) decrypted once each; user02's second use cached.
    assert_eq!(count(&metrics, "decrypted"), 2, "{metrics}");
    assert_eq!(count(&metrics, "cached"), 1, "{metrics}");
    assert_eq!(count(&metrics, "no_key"), 0, "{metrics}");

    // The service gets a new key: new tickets are of key version 2, which exgate lacks.
    kdc.rekey_service(EXCH, AES256);
    let fresh = kdc.kinit("user02");
    assert_refused(&kdc, &gate, &upstream, &fresh, EXCH, MAPI);
    assert_ticket(&kdc, &fresh, EXCH, AES256, 2);
    assert_eq!(count(&gate.metrics().await, "no_key"), 1);
    // Re-exported (ktadd adds the new version next to the old) and reloaded.
    kdc.export_keytab("exgate.keytab", &[EXCH]);
    gate.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gate
        .metrics()
        .await
        .contains("exgate_config_reloads_total{result=\"success\"} 1")
    {
        assert!(std::time::Instant::now() < deadline, "no reload");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_forwarded(&kdc, &gate, &upstream, &fresh, EXCH, MAPI);
    let log = gate.stop();

    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let blocked = lines
        .iter()
        .find(|l| l["decision"] == "block" && l["scheme"] == "kerberos" && l["user"].is_string())
        .unwrap_or_else(|| panic!("no blocked Kerberos line naming a user: {audit}"));
    // The directory identity, and the ticket's principal as presented.
    assert_eq!(blocked["user"], "user01@contoso.com", "{blocked}");
    assert_eq!(blocked["presented_user"], "user01@CONTOSO.COM", "{blocked}");
    assert_eq!(blocked["protocol"], "Mapi", "{blocked}");
    let out = exgate(&["report", arg(&dir.join("audit.jsonl")), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(
        report.contains("\"user\": \"user01@contoso.com\""),
        "{report}"
    );
    assert!(
        report.contains("\"user\": \"user02@contoso.com\""),
        "{report}"
    );
    // Nothing of a ticket or key in exgate's own output.
    assert!(!log.contains("YII"), "{log}");
}

/// The red team's bypass (issue 13), with real tickets: user01's own AP-REQ followed, in
/// the same NegTokenInit, by a second `mechToken` (an NTLM Type 1, an empty SEQUENCE, or
/// user02's AP-REQ). MIT's GSS-API reads the first token and authenticates user01; exgate
/// read the last and let the leg through as a handshake start or as user02. Every
/// variant is now refused and never reaches Exchange, while user01's plain token to EWS
/// and user02's to MAPI still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT krb5-kdc (installed by .ci/run)"]
async fn a_second_mech_token_behind_a_blocked_users_ticket_is_refused() {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }
    let kdc = Kdc::start();
    kdc.add_service(EXCH, AES256);
    let keytab = kdc.export_keytab("exgate.keytab", &[EXCH]);
    let upstream = Upstream::start().await;
    // An organization default that allows MAPI: what a pilot looks like.
    let gate = serve(
        &upstream,
        &format!(
            "{PILOT}New-AuthenticationPolicy -Name Open\nSet-OrganizationConfig -DefaultAuthenticationPolicy Open\n"
        ),
        Some(&keytab),
    );
    let token_of = |header: &str| {
        let spnego = STANDARD
            .decode(header.strip_prefix("Negotiate ").unwrap())
            .unwrap();
        krb5_inside_spnego(&spnego)
    };
    let user01 = curl_authorization(&kdc, &kdc.kinit("user01"), EXCH).await;
    let user02 = curl_authorization(&kdc, &kdc.kinit("user02"), EXCH).await;
    let (t01, t02) = (token_of(&user01), token_of(&user02));
    let type1 = b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
    let mech_types = tlv(
        0xa0,
        &tlv(
            0x30,
            &tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02],
            ),
        ),
    );
    let token_field = |t: &[u8]| tlv(0xa2, &tlv(0x04, t));
    let spnego = |fields: Vec<u8>| {
        let init = tlv(0xa0, &tlv(0x30, &fields));
        let oid = tlv(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02]);
        format!(
            "Negotiate {}",
            STANDARD.encode(tlv(0x60, &[oid, init].concat()))
        )
    };
    for (name, second) in [
        ("an NTLM Type 1", token_field(&type1)),
        ("an empty SEQUENCE", tlv(0xa2, &tlv(0x30, &[]))),
        ("user02's AP-REQ", token_field(&t02)),
    ] {
        let header = spnego([mech_types.clone(), token_field(&t01), second].concat());
        let before = upstream.requests().len();
        let mut c = Client::connect(gate.proxy).await;
        let r = c.get(MAPI, &[("authorization", &header)]).await;
        assert_eq!(r.status, 401, "user01's ticket, then {name}");
        assert_eq!(
            upstream.requests().len(),
            before,
            "user01's ticket, then {name}: reached Exchange"
        );
    }
    // The plain tokens still decide as their users.
    let mut c = Client::connect(gate.proxy).await;
    assert_eq!(
        c.get(
            EWS,
            &[(
                "authorization",
                &spnego([mech_types.clone(), token_field(&t01)].concat())
            )]
        )
        .await
        .status,
        200
    );
    let mut c = Client::connect(gate.proxy).await;
    assert_eq!(c.get(MAPI, &[("authorization", &user02)]).await.status, 200);
    gate.stop();
}
