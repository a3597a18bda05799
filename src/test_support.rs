//! Builders shared by the unit tests: engines from scripts, and the `Authorization`
//! headers real clients send.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::auth::negotiate::{build_spnego_init, build_spnego_kerberos, build_spnego_response};
use crate::auth::ntlm::{AuthenticateParts, build_authenticate, build_negotiate};
use crate::policy::cmdlet::{ScriptContext, run_script};
use crate::policy::*;

pub fn users() -> Vec<UserEntry> {
    let user = |upn: &str, sam: &str| UserEntry {
        upn: upn.into(),
        sam: Some(sam.into()),
        aliases: vec![],
    };
    vec![
        user("user01@contoso.com", "CONTOSO\\user01"),
        user("user02@contoso.com", "CONTOSO\\user02"),
        user("user03@contoso.com", "CONTOSO\\user03"),
    ]
}

pub fn settings(deployment: Deployment) -> Settings {
    Settings {
        deployment,
        mode: Mode::Enforce,
        other_paths: OtherPaths::BlockLegacy,
    }
}

/// An engine with the test users and `script` applied.
pub fn engine_with(settings: Settings, script: &str) -> Engine {
    let directory = Directory::new(users()).unwrap();
    let ctx = ScriptContext {
        deployment: settings.deployment,
        directory: &directory,
    };
    let store = run_script(script, &PolicyStore::default(), ctx)
        .unwrap_or_else(|e| panic!("script failed: {e:?}"))
        .store;
    Engine::new(settings, directory, store)
}

pub fn engine(deployment: Deployment, script: &str) -> Engine {
    engine_with(settings(deployment), script)
}

pub fn basic(user: &str) -> Vec<u8> {
    format!("Basic {}", STANDARD.encode(format!("{user}:P@ssw0rd!"))).into_bytes()
}

pub fn type3(domain: &str, user: &str) -> Vec<u8> {
    build_authenticate(&AuthenticateParts {
        domain,
        user,
        workstation: "WS01",
        unicode: true,
        lm_response: &[0; 24],
        nt_response: &[0x5a; 300],
        session_key: &[0x33; 16],
    })
}

pub fn ntlm_type1() -> Vec<u8> {
    format!("NTLM {}", STANDARD.encode(build_negotiate())).into_bytes()
}

pub fn ntlm_type3(domain: &str, user: &str) -> Vec<u8> {
    format!("NTLM {}", STANDARD.encode(type3(domain, user))).into_bytes()
}

pub fn negotiate_type1() -> Vec<u8> {
    format!(
        "Negotiate {}",
        STANDARD.encode(build_spnego_init(&build_negotiate()))
    )
    .into_bytes()
}

pub fn negotiate_type3(domain: &str, user: &str) -> Vec<u8> {
    format!(
        "Negotiate {}",
        STANDARD.encode(build_spnego_response(&type3(domain, user)))
    )
    .into_bytes()
}

pub fn kerberos() -> Vec<u8> {
    format!("Negotiate {}", STANDARD.encode(build_spnego_kerberos(1400))).into_bytes()
}

/// Decides `target` with one `Authorization` header (or none).
pub fn decide(engine: &Engine, target: &str, header: Option<&[u8]>) -> Decision {
    engine.evaluate(target, header, Context::default()).decision
}
