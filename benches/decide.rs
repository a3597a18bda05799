//! classify + parse + decide on realistic requests: the per-request cost of the policy
//! engine, without any I/O.
//!
//! Run: `cargo bench --bench decide`
//! Last results: see the README's "Benchmarks" table.

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use criterion::{Criterion, criterion_group, criterion_main};
use exgate::auth::Scheme;
use exgate::auth::negotiate::{build_spnego_ap_req, build_spnego_kerberos};
use exgate::auth::ntlm::{AuthenticateParts, build_authenticate, build_negotiate};
use exgate::kerberos::TicketReader;
use exgate::kerberos::build::{TicketSpec, ap_req};
use exgate::kerberos::keytab::{self, Keytab, Principal, etype};
use exgate::policy::cmdlet::{ScriptContext, run_script};
use exgate::policy::{
    ConnectionIdentity, ConnectionSubject, Context, Deployment, Directory, Engine, Mode,
    OtherPaths, PolicyStore, Settings, TicketRead, UserEntry,
};

/// 10,000 users, a pilot group of 500 with the article's policy, and an org default.
fn engine(deployment: Deployment) -> Engine {
    let users: Vec<UserEntry> = (0..10_000)
        .map(|i| UserEntry {
            upn: format!("user{i:05}@contoso.com"),
            sam: Some(format!("CONTOSO\\user{i:05}")),
            aliases: vec![format!("u{i}@mail.contoso.com")],
        })
        .collect();
    let directory = Directory::new(users).unwrap();
    let mut script = match deployment {
        Deployment::Online => "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -AllowBasicAuthRpc:$false -AllowBasicAuthMapi:$false -AllowBasicAuthAutodiscover:$false\n-AllowBasicAuthWebServices:$false -AllowBasicAuthOfflineAddressBook:$false\nNew-AuthenticationPolicy -Name Legacy -AllowBasicAuthMapi -AllowBasicAuthRpc\n",
        Deployment::OnPremises => "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc\nNew-AuthenticationPolicy -Name Legacy\n",
    }
    .to_string();
    for i in 0..500 {
        script.push_str(&format!(
            "Set-User user{i:05} -AuthenticationPolicy BlockLegacyOutlookAuth\n"
        ));
    }
    script.push_str("Set-OrganizationConfig -DefaultAuthenticationPolicy Legacy\n");
    let ctx = ScriptContext {
        deployment,
        directory: &directory,
    };
    let store = run_script(&script, &PolicyStore::default(), ctx)
        .unwrap()
        .store;
    let settings = Settings {
        deployment,
        mode: Mode::Enforce,
        other_paths: OtherPaths::BlockLegacy,
    };
    Engine::new(settings, directory, store)
}

/// A JWT-shaped bearer header of about 2 KB (an Entra token with groups); the engine
/// does not verify it, so only its size matters here.
fn bearer_2k() -> Vec<u8> {
    let header = URL_SAFE_NO_PAD
        .encode(r#"{"typ":"JWT","alg":"RS256","kid":"nOo3ZDrODXEK1jKWhXslHR_KXEg"}"#);
    let groups: Vec<String> = (0..30)
        .map(|i| format!("\"{i:08x}-1111-2222-3333-444455556666\""))
        .collect();
    let claims = format!(
        r#"{{"aud":"https://outlook.office365.com","iss":"https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/","iat":1764000000,"nbf":1764000000,"exp":1764004500,"amr":["pwd","mfa"],"upn":"user00042@contoso.com","tid":"72f988bf-86f1-41af-91ab-2d7cd011db47","groups":[{}]}}"#,
        groups.join(",")
    );
    let payload = URL_SAFE_NO_PAD.encode(claims);
    let signature = URL_SAFE_NO_PAD.encode([0x5au8; 256]);
    format!("Bearer {header}.{payload}.{signature}").into_bytes()
}

fn basic(user: &str) -> Vec<u8> {
    format!("Basic {}", STANDARD.encode(format!("{user}:Summer2026!"))).into_bytes()
}

fn ntlm_type3(user: &str) -> Vec<u8> {
    // An NTLMv2 response of ~300 bytes, as Windows sends with target info.
    let msg = build_authenticate(&AuthenticateParts {
        domain: "CONTOSO",
        user,
        workstation: "DESKTOP-7Q2K9LM",
        unicode: true,
        lm_response: &[0; 24],
        nt_response: &[0xa5; 316],
        session_key: &[0x3c; 16],
    });
    format!("NTLM {}", STANDARD.encode(msg)).into_bytes()
}

fn bench(c: &mut Criterion) {
    let online = engine(Deployment::Online);
    let onprem = engine(Deployment::OnPremises);
    let ctx = Context::default();
    let cases: Vec<(&str, &Engine, &str, Vec<u8>)> = vec![
        (
            "basic_blocked_mapi_online",
            &online,
            "/mapi/emsmdb/?MailboxId=6d2f3c1a-91e4-4b52-8f0a-5e7c9b1d2a44@contoso.com",
            basic("user00042@contoso.com"),
        ),
        (
            "basic_allowed_ews_online",
            &online,
            "/EWS/Exchange.asmx",
            basic("CONTOSO\\user07777"),
        ),
        (
            "ntlm_type3_blocked_rpc_onprem",
            &onprem,
            "/rpc/rpcproxy.dll?6d2f3c1a-91e4-4b52-8f0a-5e7c9b1d2a44@contoso.com:6001",
            ntlm_type3("user00042"),
        ),
        (
            "ntlm_type1_rpc_onprem",
            &onprem,
            "/rpc/rpcproxy.dll?6d2f3c1a-91e4-4b52-8f0a-5e7c9b1d2a44@contoso.com:6001",
            format!("NTLM {}", STANDARD.encode(build_negotiate())).into_bytes(),
        ),
        (
            "kerberos_mapi_onprem",
            &onprem,
            "/mapi/nspi/?MailboxId=6d2f3c1a-91e4-4b52-8f0a-5e7c9b1d2a44@contoso.com",
            format!("Negotiate {}", STANDARD.encode(build_spnego_kerberos(1500))).into_bytes(),
        ),
        (
            "bearer_2k_ews_online",
            &online,
            "/EWS/Exchange.asmx",
            bearer_2k(),
        ),
    ];
    let mut group = c.benchmark_group("decide");
    for (name, engine, target, header) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let eval =
                    engine.evaluate(black_box(target), Some(black_box(header.as_slice())), ctx);
                black_box(eval.decision)
            })
        });
    }
    // A later request on a connection NTLM authenticated: no Authorization header, the
    // connection's user decides (SPEC §3). Compare with `ntlm_type3_blocked_rpc_onprem`.
    let identity = ConnectionIdentity {
        scheme: Scheme::Ntlm,
        subject: ConnectionSubject::User("CONTOSO\\user00042".into()),
    };
    let on_connection = Context {
        connection: Some(&identity),
        ..Context::default()
    };
    for (name, target) in [
        (
            "ntlm_connection_blocked_mapi_onprem",
            "/mapi/emsmdb/?MailboxId=6d2f3c1a-91e4-4b52-8f0a-5e7c9b1d2a44@contoso.com",
        ),
        ("ntlm_connection_allowed_ews_onprem", "/EWS/Exchange.asmx"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let eval = onprem.evaluate(black_box(target), None::<&[u8]>, on_connection);
                black_box(eval.decision)
            })
        });
    }
    kerberos(&mut group, &onprem);
    group.finish();
}

/// With `[kerberos] keytab`: the whole decision of a Kerberos request, as the proxy takes
/// it (evaluate, read the ticket, decide again as its client), for a Windows-sized ticket
/// (AES256, 1.2 KB of PAC-like authorization data, 1.6 KB AP-REQ) of a pilot user, to
/// MAPI: first sight (decrypted) and again (cached). Compare with
/// `ntlm_type3_blocked_rpc_onprem`.
fn kerberos(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    onprem: &Engine,
) {
    let service = Principal {
        components: vec!["HTTP".into(), "mail.contoso.com".into()],
        realm: "CONTOSO.COM".into(),
    };
    let client = Principal {
        components: vec!["user00042".into()],
        realm: "CONTOSO.COM".into(),
    };
    let key = [0x42u8; 32];
    let keytab = Keytab::parse(&keytab::build(&[
        (&service, 7, etype::AES256_CTS_HMAC_SHA1_96, &key),
        (&service, 7, etype::AES128_CTS_HMAC_SHA1_96, &[0x43; 16]),
        (&service, 7, etype::RC4_HMAC, &[0x44; 16]),
    ]))
    .unwrap();
    let keytab = std::sync::Arc::new(keytab);
    let spec = TicketSpec {
        client: &client,
        service: &service,
        kvno: 7,
        etype: etype::AES256_CTS_HMAC_SHA1_96,
        key: &key,
        endtime: 1_800_036_000,
        authorization_bytes: 1_200,
    };
    let header = format!(
        "Negotiate {}",
        STANDARD.encode(build_spnego_ap_req(&ap_req(&spec)))
    )
    .into_bytes();
    let target = "/mapi/emsmdb/?MailboxId=6d2f3c1a-91e4-4b52-8f0a-5e7c9b1d2a44@contoso.com";
    let first = TicketReader::new(keytab.clone(), 0);
    let cached = TicketReader::new(keytab, 1_000);
    for (name, reader) in [
        ("kerberos_keytab_first_blocked_mapi_onprem", &first),
        ("kerberos_keytab_cached_blocked_mapi_onprem", &cached),
    ] {
        let ctx = Context {
            ticket: TicketRead::Unread,
            ..Context::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut eval =
                    onprem.evaluate(black_box(target), Some(black_box(&header[..])), ctx);
                let ap_req = eval.credentials.ap_req().expect("an AP-REQ");
                let (client, _) = reader.read(ap_req.der(), 1_800_000_000).expect("opens");
                let ctx = Context {
                    ticket: TicketRead::Client(&client.principal),
                    ..ctx
                };
                let target = eval.target.expect("classified");
                eval.decision = onprem.decide(&target, &eval.credentials, ctx);
                assert!(!eval.decision.action.forwards());
                black_box(eval.decision)
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
