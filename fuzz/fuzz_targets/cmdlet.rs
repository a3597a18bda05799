//! The cmdlet language (lexer, parameter binding, apply, `Get-AuthenticationPolicy`
//! formatting) via `policy::cmdlet::run_script` on arbitrary script text, in both dialects,
//! against an empty store and one holding the article's pilot policies, and the AD FS
//! account cmdlets (`account_commands`) on the same text. Never panics, and a script's
//! outcome depends only on the script and the store; a script the account parser takes
//! is never one `run_script` applies.
#![no_main]

use std::sync::OnceLock;

use exgate::policy::cmdlet::{ScriptContext, account_commands, format_policy, run_script};
use exgate::policy::{Deployment, Directory, PolicyStore, UserEntry};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    directory: Directory,
    pilot: PolicyStore,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let user = |upn: &str, sam: &str, aliases: &[&str]| UserEntry {
            upn: upn.into(),
            sam: Some(sam.into()),
            aliases: aliases.iter().map(|a| (*a).into()).collect(),
        };
        let directory = Directory::new(vec![
            user("user01@contoso.com", "CONTOSO\\user01", &[]),
            user(
                "user02@contoso.com",
                "CONTOSO\\jsmith",
                &["john.smith@contoso.com"],
            ),
        ])
        .unwrap();
        let ctx = ScriptContext {
            deployment: Deployment::OnPremises,
            directory: &directory,
        };
        let script =
            "New-AuthenticationPolicy -Name Pilot -BlockLegacyAuthMapi -BlockLegacyAuthAutodiscover
Set-User user01 -AuthenticationPolicy Pilot
New-AuthenticationPolicy -Name Org -BlockLegacyAuthRpc
Set-OrganizationConfig -DefaultAuthenticationPolicy Org
";
        let pilot = run_script(script, &PolicyStore::default(), ctx)
            .unwrap()
            .store;
        Fixture { directory, pilot }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let script = String::from_utf8_lossy(data);
    for deployment in [Deployment::OnPremises, Deployment::Online] {
        let ctx = ScriptContext {
            deployment,
            directory: &f.directory,
        };
        let empty = PolicyStore::default();
        for store in [&empty, &f.pilot] {
            let result = run_script(&script, store, ctx);
            match &result {
                Ok(applied) => {
                    for (_, policy) in applied.store.policies() {
                        let _ = format_policy(policy, deployment);
                    }
                }
                Err(errors) => {
                    assert!(!errors.is_empty());
                    for e in errors {
                        let _ = e.to_string();
                    }
                }
            }
        }
    }
    let ctx = ScriptContext {
        deployment: Deployment::OnPremises,
        directory: &f.directory,
    };
    assert_eq!(
        run_script(&script, &f.pilot, ctx),
        run_script(&script, &f.pilot, ctx)
    );
    if let Some(Ok(commands)) = account_commands(&script) {
        assert!(!commands.is_empty());
        assert!(run_script(&script, &f.pilot, ctx).is_err());
    }
});
