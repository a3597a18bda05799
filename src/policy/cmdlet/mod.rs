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
