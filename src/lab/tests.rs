//! The lab's policy, the README's rollout and the shipped scripts (`config/policies.ps1`,
//! `config/scenarios/onprem.ps1`) decided by the engine, and what the banner expects:
//! pure, no lab runs.

use super::banner::{basic_try, bearer_try};
use super::{LabInfo, Scenario, USERS};
use crate::policy::cmdlet::{ScriptContext, run_script};
use crate::policy::{
    Action, Context, Deployment, Directory, Engine, Mode, OtherPaths, PolicyStore, Settings,
    UserEntry,
};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lab's users as exgate's lab configuration declares them.
fn directory() -> Directory {
    Directory::new(
        USERS
            .iter()
            .map(|u| UserEntry {
                upn: u.upn.to_owned(),
                sam: Some(u.sam.to_owned()),
                aliases: Vec::new(),
            })
            .collect(),
    )
    .unwrap()
}

/// An engine over the lab's users after running `scripts` in order.
fn engine(deployment: Deployment, scripts: &[&str]) -> Engine {
    let directory = directory();
    let mut store = PolicyStore::default();
    for script in scripts {
        let ctx = ScriptContext {
            deployment,
            directory: &directory,
        };
        store = run_script(script, &store, ctx)
            .unwrap_or_else(|e| panic!("{script}: {e:?}"))
            .store;
    }
    let settings = Settings {
        deployment,
        mode: Mode::Enforce,
        other_paths: OtherPaths::BlockLegacy,
    };
    Engine::new(settings, directory, store)
}

/// One path per protocol a policy switch governs in both dialects.
const PATHS: [&str; 6] = [
    "/mapi/emsmdb/",
    "/EWS/Exchange.asmx",
    "/autodiscover/autodiscover.xml",
    "/OAB/lab/oab.xml",
    "/rpc/rpcproxy.dll",
    "/Microsoft-Server-ActiveSync",
];

/// What `name`'s Basic gets on each protocol: the action and the deciding policy's name.
fn basic_decisions(engine: &Engine, name: &str) -> Vec<(Action, Option<String>)> {
    use base64::Engine as _;
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{name}:secret"))
    );
    PATHS
        .iter()
        .map(|path| {
            let d = engine
                .evaluate(path, [header.as_bytes()], Context::default())
                .decision;
            let policy = d.policy.map(|id| engine.store().policy(id).name.clone());
            (d.action, policy)
        })
        .collect()
}

/// Every lab user's and an undeclared user's decisions, for comparing policies.
fn everyone(engine: &Engine) -> Vec<Vec<(Action, Option<String>)>> {
    USERS
        .iter()
        .map(|u| u.upn)
        .chain(["someone.else@contoso.com"])
        .map(|name| basic_decisions(engine, name))
        .collect()
}

/// The README's rollout: each step's cmdlets for `deployment`, from the `exgate cmdlet
/// '…'` lines of the section (a line with `-BlockLegacyAuth` is Exchange Server's; one
/// with `-AllowBasicAuth`, or a bare `New-AuthenticationPolicy`, is Exchange Online's).
fn readme_steps(deployment: Deployment) -> [String; 3] {
    let readme = repo_file("README.md");
    let section = "### Rolling out, the way Microsoft recommends";
    let start = readme.find(section).expect("the rollout section") + section.len();
    let rest = &readme[start..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    let mut steps: [String; 3] = Default::default();
    let mut step = 0;
    for line in rest[..end].lines().map(str::trim) {
        let Some(cmdlet) = line
            .strip_prefix("exgate cmdlet '")
            .and_then(|l| l.strip_suffix('\''))
        else {
            continue;
        };
        if cmdlet.contains("-Name BlockLegacyOutlookAuth") {
            step = step.max(1);
        }
        if cmdlet.contains("-ReportOnly:$false") {
            step = 2;
        }
        let online_only = cmdlet.contains("-AllowBasicAuth")
            || (cmdlet.starts_with("New-AuthenticationPolicy")
                && !cmdlet.contains("-BlockLegacyAuth"));
        let wanted = match deployment {
            Deployment::Online => !cmdlet.contains("-BlockLegacyAuth"),
            Deployment::OnPremises => !online_only,
        };
        if wanted {
            steps[step].push_str(cmdlet);
            steps[step].push('\n');
        }
    }
    assert!(steps.iter().all(|s| !s.is_empty()), "{steps:?}");
    steps
}

fn basic_of(engine: &Engine, upn: &str) -> (Action, Option<String>) {
    basic_decisions(engine, upn)[0].clone()
}

fn policy(name: &str) -> Option<String> {
    Some(name.to_owned())
}

/// Rollout step 1 is a real report-only phase everywhere it is written down: the shipped
/// scripts, the lab's script followed by the README's step 1, and the README's steps 1
/// and 2 decide alike for every user and protocol, before and after step 3 — and in all
/// of them, before step 3, nobody outside the pilot is blocked.
#[test]
fn the_readme_rollout_the_lab_and_the_shipped_scripts_agree() {
    for (scenario, shipped) in [
        (Scenario::OnlineCa, "config/policies.ps1"),
        (Scenario::OnpremCa, "config/scenarios/onprem.ps1"),
    ] {
        let deployment = scenario.deployment();
        let [step1, step2, step3] = readme_steps(deployment);
        let shipped = repo_file(shipped);
        let lab = [scenario.policy_script(), step1.as_str()];
        let readme = [step1.as_str(), step2.as_str()];
        let shipped = [shipped.as_str()];
        let expected = everyone(&engine(deployment, &readme));
        for (what, scripts) in [("lab", &lab[..]), ("shipped", &shipped[..])] {
            assert_eq!(
                everyone(&engine(deployment, scripts)),
                expected,
                "{scenario} {what} at step 2"
            );
            let with_step3: Vec<&str> = scripts.iter().copied().chain([step3.as_str()]).collect();
            let readme3 = [step1.as_str(), step2.as_str(), step3.as_str()];
            assert_eq!(
                everyone(&engine(deployment, &with_step3)),
                everyone(&engine(deployment, &readme3)),
                "{scenario} {what} at step 3"
            );
        }

        let engine2 = engine(deployment, &shipped);
        // Report only: user02, user03 and anyone undeclared are forwarded and reported.
        for upn in ["user02@contoso.com", "user03@contoso.com", "x@contoso.com"] {
            for (action, by) in basic_decisions(&engine2, upn).into_iter().take(5) {
                assert_eq!(
                    (action, by),
                    (Action::ReportOnly, policy("OrgBlockLegacy")),
                    "{scenario} {upn}"
                );
            }
        }
        // The pilot is enforced.
        assert_eq!(
            basic_of(&engine2, "user01@contoso.com"),
            (Action::Block, policy("BlockLegacyOutlookAuth"))
        );
        // Step 3 enforces for everyone.
        let engine3 = engine(deployment, &[shipped[0], step3.as_str()]);
        assert_eq!(
            basic_of(&engine3, "user02@contoso.com"),
            (Action::Block, policy("OrgBlockLegacy"))
        );
    }
}

/// The banner's Basic and token expectations follow the policy the lab serves, replayed
/// cmdlets included.
#[test]
fn the_banner_expects_what_the_current_policy_decides() {
    let online = Scenario::OnlineCa.policy_script();
    let (user01, user02) = (&USERS[0], &USERS[1]);
    // A fresh lab.
    let fresh = engine(Deployment::Online, &[online]);
    let (status, what) = basic_try(&fresh, user01);
    assert_eq!(status, 401);
    assert!(
        what.contains("blocked by exgate under BlockLegacyOutlookAuth"),
        "{what}"
    );
    let (status, what) = basic_try(&fresh, user02);
    assert_eq!(status, 200);
    assert!(what.contains("no policy applies"), "{what}");
    assert_eq!(bearer_try(&fresh, user01, true).0, 200);
    assert_eq!(bearer_try(&fresh, user01, false).0, 401);

    // Replayed: user02 joined the pilot, user01 left it.
    let replayed = engine(
        Deployment::Online,
        &[
            online,
            "Set-User user02 -AuthenticationPolicy BlockLegacyOutlookAuth\nSet-User user01 -AuthenticationPolicy $null\n",
        ],
    );
    assert_eq!(basic_try(&replayed, user02).0, 401);
    assert_eq!(basic_try(&replayed, user01).0, 200);

    // Replayed: report only for everyone.
    let reporting = engine(
        Deployment::Online,
        &[
            online,
            "New-AuthenticationPolicy -Name OrgBlockLegacy -ReportOnly\nSet-OrganizationConfig -DefaultAuthenticationPolicy OrgBlockLegacy\n",
        ],
    );
    let (status, what) = basic_try(&reporting, user02);
    assert_eq!(status, 200);
    assert!(what.contains("report_only under OrgBlockLegacy"), "{what}");

    // On-premises BlockModernAuthMapi refuses even a token with MFA (403).
    let modern_blocked = engine(
        Deployment::OnPremises,
        &[
            Scenario::OnpremCa.policy_script(),
            "Set-AuthenticationPolicy BlockLegacyOutlookAuth -BlockModernAuthMapi\n",
        ],
    );
    let (status, what) = bearer_try(&modern_blocked, user01, true);
    assert_eq!(status, 403);
    assert!(
        what.contains("BlockLegacyOutlookAuth blocks modern"),
        "{what}"
    );
    assert_eq!(bearer_try(&modern_blocked, user01, false).0, 403);
    assert_eq!(bearer_try(&modern_blocked, user02, true).0, 200);
}

/// Secrets are written for their owner only, also over a file an older lab left 0644.
#[cfg(unix)]
#[test]
fn private_files_are_0600_even_over_an_older_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("exgate-lab-private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    super::create_private_dir(&dir.join("lab")).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "a parent the lab creates");
    assert_eq!(mode(&dir.join("lab")), 0o700);
    let file = dir.join("lab/lab.json");
    std::fs::write(&file, "old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    super::write_private(&file, b"new").unwrap();
    assert_eq!(mode(&file), 0o600);
    assert_eq!(std::fs::read(&file).unwrap(), b"new");
    let fresh = dir.join("lab/exgate.toml");
    super::write_private(&fresh, b"x").unwrap();
    assert_eq!(mode(&fresh), 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The console's rollout switch: from the lab's start and from every stage, each stage's
/// cmdlets reach that stage (and the next click sends nothing), and decide as the README
/// says — report only: nobody blocked; pilot: user01 blocked, the others reported;
/// organization: everyone blocked. Every cmdlet that moves forward is one the README's
/// rollout section prints.
#[test]
fn the_console_rollout_reaches_each_stage_with_the_readme_cmdlets() {
    use super::console::rollout::{RolloutState, Stage, cmdlets};
    let readme = repo_file("README.md");
    for scenario in [Scenario::OnlineCa, Scenario::OnpremCa] {
        let deployment = scenario.deployment();
        let start = scenario.policy_script().to_owned();
        let mut starts = vec![start.clone()];
        for stage in Stage::ALL {
            let e = engine(deployment, &[&start]);
            let at_stage = format!(
                "{start}{}\n",
                cmdlets(deployment, &RolloutState::of(&e), stage).join("\n")
            );
            // The same stage with a policy loosened afterwards (red team: the stage was
            // read from names and ReportOnly alone).
            for policy in ["OrgBlockLegacy", "BlockLegacyOutlookAuth"] {
                let loosen = match deployment {
                    Deployment::Online => "-AllowBasicAuthMapi:$true",
                    Deployment::OnPremises => "-BlockLegacyAuthMapi:$false",
                };
                if at_stage.contains(&format!("-Name {policy}")) {
                    starts.push(format!(
                        "{at_stage}Set-AuthenticationPolicy {policy} {loosen}\n"
                    ));
                }
            }
            // The pilot's policy made report-only, or re-created with its name in lower
            // case (red team, round 2: the first kept the stage "organization" with
            // user01 forwarded; the second made the pilot button send the same cmdlet
            // for ever).
            starts.push(format!(
                "{at_stage}Set-AuthenticationPolicy BlockLegacyOutlookAuth -ReportOnly\n"
            ));
            let switches = match deployment {
                Deployment::Online => "",
                Deployment::OnPremises => {
                    " -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc"
                }
            };
            starts.push(format!(
                "{at_stage}Set-User user01 -AuthenticationPolicy $null\nRemove-AuthenticationPolicy BlockLegacyOutlookAuth -Confirm:$false\nNew-AuthenticationPolicy -Name blocklegacyoutlookauth{switches}\nSet-User user01 -AuthenticationPolicy blocklegacyoutlookauth\n"
            ));
            starts.push(at_stage);
        }
        for from in &starts {
            for stage in Stage::ALL {
                let before = engine(deployment, &[from]);
                let sent = cmdlets(deployment, &RolloutState::of(&before), stage);
                let script = format!("{}\n", sent.join("\n"));
                let after = engine(deployment, &[from, &script]);
                let state = RolloutState::of(&after);
                assert_eq!(state.stage(), Some(stage), "{scenario} {from:?} + {sent:?}");
                assert!(
                    cmdlets(deployment, &state, stage).is_empty(),
                    "{scenario} {stage:?}"
                );
                let (user01, user02) = (
                    basic_of(&after, "user01@contoso.com").0,
                    basic_of(&after, "user02@contoso.com").0,
                );
                let expected = match stage {
                    Stage::ReportOnly => (Action::ReportOnly, Action::ReportOnly),
                    Stage::Pilot => (Action::Block, Action::ReportOnly),
                    Stage::Organization => (Action::Block, Action::Block),
                };
                assert_eq!(
                    (user01, user02),
                    expected,
                    "{scenario} {stage:?} from {from:?}"
                );
                for line in &sent {
                    // Going back a stage, or closing what someone loosened.
                    let backwards = line.ends_with("-ReportOnly:$true")
                        || line.ends_with("$null")
                        || (line.starts_with("Set-AuthenticationPolicy")
                            && (line.ends_with("Mapi:$false")
                                || line.ends_with("-BlockLegacyAuthMapi")
                                || line.ends_with("BlockLegacyOutlookAuth -ReportOnly:$false")));
                    assert!(
                        backwards || readme.contains(&format!("exgate cmdlet '{line}'")),
                        "{line} is not in the README's rollout"
                    );
                }
            }
        }
        // The lab starts at no stage: the pilot without an organization default.
        assert_eq!(
            RolloutState::of(&engine(deployment, &[&start])).stage(),
            None
        );
    }
}

#[test]
fn a_folder_without_a_lab_says_how_to_start_the_scenario_s_lab_there() {
    let dir = std::env::temp_dir().join(format!("exgate-no-lab-{}", std::process::id()));
    let err = LabInfo::read(&dir, Scenario::OnlineAdfs).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!(
            "(start one with `exgate lab --scenario online-adfs --dir {}`)",
            dir.display()
        )),
        "{text}"
    );
}
