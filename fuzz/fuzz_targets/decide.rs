//! The whole pure decision on arbitrary input: target, `Authorization`, `Cookie`, and a
//! connection identity with an arbitrary user name, against the article's pilot policy.
//! Never panics; a user name and its folded form look up alike and share an account key.
#![no_main]

use std::sync::OnceLock;

use exgate::auth::Scheme;
use exgate::policy::cmdlet::{ScriptContext, run_script};
use exgate::policy::{
    ConnectionIdentity, ConnectionSubject, Context, Deployment, Directory, Engine, Mode,
    OtherPaths, PolicyStore, RequestFacts, Settings, UserEntry, account_key, fold,
};
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let user = |upn: &str, sam: &str| UserEntry {
            upn: upn.into(),
            sam: Some(sam.into()),
            aliases: vec![],
        };
        let directory = Directory::new(vec![
            user("user01@contoso.com", "CONTOSO\\user01"),
            user("user02@contoso.com", "CONTOSO\\jsmith"),
        ])
        .unwrap();
        let script = "New-AuthenticationPolicy -Name Pilot -BlockLegacyAuthMapi -BlockLegacyAuthAutodiscover
Set-User user01 -AuthenticationPolicy Pilot
New-AuthenticationPolicy -Name Org -BlockLegacyAuthRpc
Set-OrganizationConfig -DefaultAuthenticationPolicy Org
";
        let ctx = ScriptContext {
            deployment: Deployment::OnPremises,
            directory: &directory,
        };
        let store = run_script(script, &PolicyStore::default(), ctx).unwrap().store;
        let settings = Settings {
            deployment: Deployment::OnPremises,
            mode: Mode::Enforce,
            other_paths: OtherPaths::BlockLegacy,
        };
        Engine::new(settings, directory, store)
    })
}

fuzz_target!(|data: &[u8]| {
    // Four parts separated by 0xff: target, Authorization, Cookie, connection user.
    let mut parts = data.split(|b| *b == 0xff);
    let target = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let authorization = parts.next().unwrap_or_default();
    let cookie = parts.next().unwrap_or_default();
    let user = parts.next().map(|u| String::from_utf8_lossy(u).into_owned());
    if let Some(u) = &user {
        // Folding as Active Directory compares names is idempotent: a name and its
        // folded form are one account, to the lookup and to the lockout key.
        let folded = fold(u);
        let directory = engine().directory();
        assert_eq!(directory.lookup(u), directory.lookup(&folded), "{u:?}");
        assert_eq!(account_key(u), account_key(&folded), "{u:?}");
    }
    let identity = user.map(|u| ConnectionIdentity {
        scheme: Scheme::Ntlm,
        subject: ConnectionSubject::User(u),
    });
    let cookies = [cookie];
    let ctx = Context {
        connection: identity.as_ref(),
        request: RequestFacts {
            method: Some("GET"),
            has_body: data.len() % 2 == 1,
            cookies: &cookies,
        },
        ..Context::default()
    };
    let header = (!authorization.is_empty()).then_some(authorization);
    let _ = engine().evaluate(&target, header, ctx);
});
