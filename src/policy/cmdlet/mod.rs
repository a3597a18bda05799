//! Exchange authentication-policy cmdlets (SPEC §4.1), parsed and applied exactly as an
//! administrator types them in Exchange PowerShell. A script applies all or nothing:
//! every command runs against a copy of the store, and any error discards the copy.

mod bind;
mod format;
pub mod lexer;

use std::fmt;

pub use format::format_policy;
pub use lexer::Pos;

use super::directory::{Directory, Lookup};
use super::store::{AuthenticationPolicy, Deployment, PolicyId, PolicyStore};
use bind::{Arg, Bound, Cmdlet, SwitchTarget};

/// What Exchange calls the object store in "couldn't be found on '…'" messages.
const SERVER_NAME: &str = "exgate";
/// `New-AuthenticationPolicy -Name` is limited to 64 characters.
const MAX_NAME_CHARS: usize = 64;

/// An error in a script: where, and Exchange's words for what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

impl std::error::Error for ScriptError {}

/// What a script needs besides the store: the dialect and the users it may name.
#[derive(Clone, Copy, Debug)]
pub struct ScriptContext<'a> {
    pub deployment: Deployment,
    pub directory: &'a Directory,
}

/// The outcome of a script that applied cleanly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The new state; the caller swaps it in.
    pub store: PolicyStore,
    /// What `Get-AuthenticationPolicy` commands printed, in order.
    pub output: Vec<String>,
}

/// Where a bad password came from, as `Reset-AdfsAccountLockout -Location` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountLocation {
    Familiar,
    Unknown,
}

/// An AD FS account cmdlet: it acts on smart-lockout state, not on the policy store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountCommand {
    /// `Get-AdfsAccountActivity -Identity user`.
    Activity { identity: String },
    /// `Reset-AdfsAccountLockout -Identity user -Location Familiar|Unknown`.
    Reset {
        identity: String,
        location: AccountLocation,
    },
}

/// The account cmdlets of `script`: None when it has none (a policy script); every
/// command when all are account cmdlets; errors for a script that mixes both kinds (they
/// act on different state and could not apply all or nothing) or binds badly.
pub fn account_commands(script: &str) -> Option<Result<Vec<AccountCommand>, Vec<ScriptError>>> {
    let commands = match lexer::tokenize(script) {
        Ok(c) => c,
        Err(e) => {
            return Some(Err(vec![ScriptError {
                pos: e.pos,
                message: e.message,
            }]));
        }
    };
    let bound: Vec<Result<Bound, ScriptError>> = commands
        .iter()
        .map(|tokens| bind::bind(tokens, Deployment::Online))
        .collect();
    if !bound
        .iter()
        .any(|b| b.as_ref().is_ok_and(|b| b.cmdlet.is_account()))
    {
        return None;
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for b in bound {
        let cmd = match b {
            Ok(cmd) => cmd,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let fail = |message: String| ScriptError {
            pos: cmd.pos,
            message,
        };
        let result = match cmd.cmdlet {
            Cmdlet::GetAdfsAccountActivity => cmd.text("Identity").map(|identity| {
                AccountCommand::Activity {
                    identity: identity.to_owned(),
                }
            }),
            Cmdlet::ResetAdfsAccountLockout => cmd.text("Identity").and_then(|identity| {
                let location = match cmd.text("Location")? {
                    l if l.eq_ignore_ascii_case("Familiar") => AccountLocation::Familiar,
                    l if l.eq_ignore_ascii_case("Unknown") => AccountLocation::Unknown,
                    l => {
                        return Err(format!(
                            "Cannot bind parameter 'Location'. Cannot convert value \"{l}\" to type \"Location\". The valid values are \"Familiar\" and \"Unknown\"."
                        ));
                    }
                };
                Ok(AccountCommand::Reset {
                    identity: identity.to_owned(),
                    location,
                })
            }),
            _ => Err(MIXED.into()),
        };
        match result {
            Ok(c) => out.push(c),
            Err(m) => errors.push(fail(m)),
        }
    }
    Some(if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    })
}

/// Why a script may not mix the two kinds of cmdlet.
const MIXED: &str = "Get-AdfsAccountActivity and Reset-AdfsAccountLockout act on smart-lockout state, not on authentication policies: send them in a script of their own.";

/// Runs `script` against a copy of `store`. On any error the copy is dropped and every
/// error found is returned, each with its line and column.
pub fn run_script(
    script: &str,
    store: &PolicyStore,
    ctx: ScriptContext<'_>,
) -> Result<Applied, Vec<ScriptError>> {
    let commands = lexer::tokenize(script).map_err(|e| {
        vec![ScriptError {
            pos: e.pos,
            message: e.message,
        }]
    })?;
    let mut working = store.clone();
    let mut output = Vec::new();
    let mut errors = Vec::new();
    for tokens in commands {
        let result = bind::bind(&tokens, ctx.deployment)
            .and_then(|bound| apply(&bound, &mut working, ctx, &mut output));
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(Applied {
            store: working,
            output,
        })
    } else {
        Err(errors)
    }
}

fn apply(
    cmd: &Bound,
    store: &mut PolicyStore,
    ctx: ScriptContext<'_>,
    output: &mut Vec<String>,
) -> Result<(), ScriptError> {
    let fail = |message: String| ScriptError {
        pos: cmd.pos,
        message,
    };
    match cmd.cmdlet {
        Cmdlet::NewPolicy => {
            let name = cmd.text("Name").map_err(fail)?;
            let chars = name.chars().count();
            if name.trim().is_empty() {
                return Err(fail(
                    "Cannot validate argument on parameter 'Name'. The argument is null or empty."
                        .into(),
                ));
            }
            if chars > MAX_NAME_CHARS {
                return Err(fail(format!(
                    "The length of the property is too long. The maximum length is {MAX_NAME_CHARS} and the length of the value provided is {chars}."
                )));
            }
            if let Some(existing) = store.find(name) {
                return Err(fail(format!(
                    "An authentication policy with the name '{}' already exists.",
                    store.policy(existing).name
                )));
            }
            let mut policy = AuthenticationPolicy::new(name);
            set_switches(&mut policy, cmd);
            store.insert(policy);
        }
        Cmdlet::SetPolicy => {
            let id = find_policy(store, cmd.text("Identity").map_err(fail)?).map_err(fail)?;
            set_switches(store.policy_mut(id), cmd);
        }
        Cmdlet::RemovePolicy => {
            let id = find_policy(store, cmd.text("Identity").map_err(fail)?).map_err(fail)?;
            if store.is_assigned(id) {
                return Err(fail(format!(
                    "The authentication policy '{}' is assigned to users or is the organization default. Assign another policy (or $null) before you remove it.",
                    store.policy(id).name
                )));
            }
            store.remove(id);
        }
        Cmdlet::GetPolicy => {
            let text = match cmd.optional_text("Identity").map_err(fail)? {
                Some(name) => {
                    let id = find_policy(store, name).map_err(fail)?;
                    format_policy(store.policy(id), ctx.deployment)
                }
                None => store
                    .policies()
                    .map(|(_, p)| format_policy(p, ctx.deployment))
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            output.push(text);
        }
        Cmdlet::SetUser => {
            let identity = cmd.text("Identity").map_err(fail)?;
            let user = match ctx.directory.lookup(identity) {
                Lookup::Found(id) => id,
                Lookup::Unknown => return Err(fail(not_found(identity))),
                Lookup::Ambiguous => {
                    return Err(fail(format!(
                        "The operation couldn't be performed because '{identity}' matches multiple entries."
                    )));
                }
            };
            let policy = policy_arg(store, cmd, "AuthenticationPolicy").map_err(fail)?;
            store.assign(user, policy);
        }
        Cmdlet::SetOrganizationConfig => {
            let policy = policy_arg(store, cmd, "DefaultAuthenticationPolicy").map_err(fail)?;
            store.set_org_default(policy);
        }
        // A policy script (the configuration's, or one mixing both kinds) cannot hold
        // them; the admin API runs scripts of account cmdlets alone.
        Cmdlet::GetAdfsAccountActivity | Cmdlet::ResetAdfsAccountLockout => {
            return Err(fail(MIXED.into()));
        }
    }
    Ok(())
}

fn set_switches(policy: &mut AuthenticationPolicy, cmd: &Bound) {
    for (target, on) in &cmd.switches {
        match *target {
            SwitchTarget::AllowBasic(s) => policy.allow_basic.set(s, *on),
            SwitchTarget::BlockLegacy(s) => policy.block_legacy.set(s, *on),
            SwitchTarget::BlockModern(s) => policy.block_modern.set(s, *on),
            SwitchTarget::ReportOnly => policy.report_only = *on,
            SwitchTarget::Confirm => {}
        }
    }
}

fn find_policy(store: &PolicyStore, name: &str) -> Result<PolicyId, String> {
    store.find(name).ok_or_else(|| not_found(name))
}

fn policy_arg(store: &PolicyStore, cmd: &Bound, param: &str) -> Result<Option<PolicyId>, String> {
    match cmd.arg(param)? {
        Arg::Null => Ok(None),
        Arg::Text(name) => find_policy(store, name).map(Some),
    }
}

fn not_found(identity: &str) -> String {
    format!(
        "The operation couldn't be performed because object '{identity}' couldn't be found on '{SERVER_NAME}'."
    )
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
