//! Parameter binding: turns a command's tokens into a cmdlet with typed arguments, using
//! PowerShell's rules (case-insensitive names, unambiguous prefixes, switches that take
//! only `-Switch:$value`, one positional parameter) and PowerShell's error wording.

use super::ScriptError;
use super::lexer::{Pos, Token, TokenKind, Value};
use crate::policy::protocol::Switch;
use crate::policy::store::Deployment;

/// The cmdlets exgate understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmdlet {
    NewPolicy,
    SetPolicy,
    RemovePolicy,
    GetPolicy,
    SetUser,
    SetOrganizationConfig,
    /// AD FS's `Get-AdfsAccountActivity`: a user's lockout state (not a policy cmdlet).
    GetAdfsAccountActivity,
    /// AD FS's `Reset-AdfsAccountLockout`: clears a user's count for a location.
    ResetAdfsAccountLockout,
}

impl Cmdlet {
    const NAMES: [(&'static str, Cmdlet); 8] = [
        ("New-AuthenticationPolicy", Cmdlet::NewPolicy),
        ("Set-AuthenticationPolicy", Cmdlet::SetPolicy),
        ("Remove-AuthenticationPolicy", Cmdlet::RemovePolicy),
        ("Get-AuthenticationPolicy", Cmdlet::GetPolicy),
        ("Set-User", Cmdlet::SetUser),
        ("Set-OrganizationConfig", Cmdlet::SetOrganizationConfig),
        ("Get-AdfsAccountActivity", Cmdlet::GetAdfsAccountActivity),
        ("Reset-AdfsAccountLockout", Cmdlet::ResetAdfsAccountLockout),
    ];

    /// Whether it acts on lockout state rather than on the policy store.
    pub fn is_account(self) -> bool {
        matches!(
            self,
            Cmdlet::GetAdfsAccountActivity | Cmdlet::ResetAdfsAccountLockout
        )
    }

    fn from_name(name: &str) -> Option<Cmdlet> {
        Cmdlet::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, c)| *c)
    }

    /// The parameter a bare value binds to.
    fn positional(self) -> Option<&'static str> {
        match self {
            Cmdlet::NewPolicy => Some("Name"),
            Cmdlet::SetOrganizationConfig => None,
            _ => Some("Identity"),
        }
    }
}

/// What a switch parameter turns on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchTarget {
    AllowBasic(Switch),
    BlockLegacy(Switch),
    BlockModern(Switch),
    ReportOnly,
    /// `-Confirm:$false`, accepted so that scripts written for Exchange run unchanged.
    Confirm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Switch(SwitchTarget),
}

struct ParamDef {
    name: String,
    kind: Kind,
}

/// A non-switch argument: a name, or `$null`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    Null,
}

/// A command with its arguments bound.
#[derive(Clone, Debug)]
pub struct Bound {
    pub cmdlet: Cmdlet,
    /// Where the cmdlet name stands: semantic errors point here.
    pub pos: Pos,
    args: Vec<(String, Arg)>,
    pub switches: Vec<(SwitchTarget, bool)>,
}

impl Bound {
    /// A bound argument, or PowerShell's missing-mandatory-parameter error.
    pub fn arg(&self, name: &str) -> Result<&Arg, String> {
        self.args
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
            .ok_or_else(|| {
                format!(
                    "Cannot process command because of one or more missing mandatory parameters: {name}."
                )
            })
    }

    /// A mandatory text argument.
    pub fn text(&self, name: &str) -> Result<&str, String> {
        match self.arg(name)? {
            Arg::Text(t) => Ok(t),
            Arg::Null => Err(null_argument(name)),
        }
    }

    /// An optional text argument.
    pub fn optional_text(&self, name: &str) -> Result<Option<&str>, String> {
        match self.args.iter().find(|(n, _)| n == name) {
            None => Ok(None),
            Some((_, Arg::Text(t))) => Ok(Some(t)),
            Some((_, Arg::Null)) => Err(null_argument(name)),
        }
    }
}

fn null_argument(name: &str) -> String {
    format!("Cannot validate argument on parameter '{name}'. The argument is null or empty.")
}

fn params(cmdlet: Cmdlet, deployment: Deployment) -> Vec<ParamDef> {
    let text = |name: &str| ParamDef {
        name: name.into(),
        kind: Kind::Text,
    };
    let switch = |name: String, target| ParamDef {
        name,
        kind: Kind::Switch(target),
    };
    let mut defs = Vec::new();
    match cmdlet {
        Cmdlet::NewPolicy | Cmdlet::SetPolicy => {
            defs.push(text(if cmdlet == Cmdlet::NewPolicy {
                "Name"
            } else {
                "Identity"
            }));
            defs.extend(dialect_switches(deployment).map(|(n, t)| switch(n, t)));
            defs.push(switch("ReportOnly".into(), SwitchTarget::ReportOnly));
        }
        Cmdlet::RemovePolicy => {
            defs.push(text("Identity"));
            defs.push(switch("Confirm".into(), SwitchTarget::Confirm));
        }
        Cmdlet::GetPolicy => defs.push(text("Identity")),
        Cmdlet::SetUser => {
            defs.push(text("Identity"));
            defs.push(text("AuthenticationPolicy"));
        }
        Cmdlet::SetOrganizationConfig => defs.push(text("DefaultAuthenticationPolicy")),
        Cmdlet::GetAdfsAccountActivity => defs.push(text("Identity")),
        Cmdlet::ResetAdfsAccountLockout => {
            defs.push(text("Identity"));
            defs.push(text("Location"));
            defs.push(switch("Confirm".into(), SwitchTarget::Confirm));
        }
    }
    defs
}

/// The policy switches of one dialect, by parameter name.
fn dialect_switches(deployment: Deployment) -> impl Iterator<Item = (String, SwitchTarget)> {
    Switch::ALL.into_iter().flat_map(move |s| {
        let names: Vec<(String, SwitchTarget)> = match deployment {
            Deployment::Online => vec![(
                format!("AllowBasicAuth{}", s.as_str()),
                SwitchTarget::AllowBasic(s),
            )],
            Deployment::OnPremises if s.exists_on_premises() => vec![
                (
                    format!("BlockLegacyAuth{}", s.as_str()),
                    SwitchTarget::BlockLegacy(s),
                ),
                (
                    format!("BlockModernAuth{}", s.as_str()),
                    SwitchTarget::BlockModern(s),
                ),
            ],
            Deployment::OnPremises => vec![],
        };
        names
    })
}

fn error(pos: Pos, message: String) -> ScriptError {
    ScriptError { pos, message }
}

/// Binds one command's tokens.
pub fn bind(tokens: &[Token], deployment: Deployment) -> Result<Bound, ScriptError> {
    let head = &tokens[0];
    let cmdlet = match &head.kind {
        TokenKind::Value(Value::Word(name)) => Cmdlet::from_name(name).ok_or_else(|| {
            error(head.pos, format!(
                "The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. exgate supports: {}.",
                Cmdlet::NAMES.map(|(n, _)| n).join(", ")
            ))
        })?,
        _ => return Err(error(head.pos, "A command must start with a cmdlet name.".into())),
    };
    let defs = params(cmdlet, deployment);
    let mut bound = Bound {
        cmdlet,
        pos: head.pos,
        args: Vec::new(),
        switches: Vec::new(),
    };
    let mut bound_names: Vec<&str> = Vec::new();
    let mut i = 1;
    while i < tokens.len() {
        let token = &tokens[i];
        i += 1;
        match &token.kind {
            TokenKind::Pipe => return check_pipeline(&tokens[i..], token.pos).map(|()| bound),
            TokenKind::Parameter { name, attached } => {
                let def = resolve(&defs, name, deployment, token.pos)?;
                if bound_names.contains(&def.name.as_str()) {
                    return Err(error(
                        token.pos,
                        format!(
                            "Cannot bind parameter because parameter '{}' is specified more than once.",
                            def.name
                        ),
                    ));
                }
                bound_names.push(&def.name);
                match def.kind {
                    Kind::Switch(target) => {
                        let on = match attached {
                            None => true,
                            Some((v, pos)) => switch_value(&def.name, v, *pos)?,
                        };
                        bound.switches.push((target, on));
                    }
                    Kind::Text => {
                        let (value, pos) = match attached {
                            Some((v, pos)) => (v, *pos),
                            None => match tokens.get(i) {
                                Some(Token {
                                    kind: TokenKind::Value(v),
                                    pos,
                                }) => {
                                    i += 1;
                                    (v, *pos)
                                }
                                _ => {
                                    return Err(error(
                                        token.pos,
                                        format!(
                                            "Missing an argument for parameter '{}'. Specify a parameter of type 'System.String' and try again.",
                                            def.name
                                        ),
                                    ));
                                }
                            },
                        };
                        let arg = text_value(&def.name, value, pos)?;
                        bound.args.push((def.name.clone(), arg));
                    }
                }
            }
            TokenKind::Value(v) => {
                let positional = cmdlet.positional().filter(|p| !bound_names.contains(p));
                let Some(param) = positional else {
                    return Err(error(
                        token.pos,
                        format!(
                            "A positional parameter cannot be found that accepts argument '{}'.",
                            display(v)
                        ),
                    ));
                };
                bound_names.push(param);
                let arg = text_value(param, v, token.pos)?;
                bound.args.push((param.to_owned(), arg));
            }
        }
    }
    Ok(bound)
}

/// Only `| Format-List` (or `| fl`) may follow a cmdlet; it changes nothing here.
fn check_pipeline(rest: &[Token], pipe: Pos) -> Result<(), ScriptError> {
    let mut parts = rest.split(|t| t.kind == TokenKind::Pipe);
    parts.try_for_each(|part| match part {
        [
            Token {
                kind: TokenKind::Value(Value::Word(w)),
                ..
            },
        ] if w.eq_ignore_ascii_case("Format-List") || w.eq_ignore_ascii_case("fl") => Ok(()),
        _ => Err(error(
            part.first().map_or(pipe, |t| t.pos),
            "exgate supports only '| Format-List' after a cmdlet.".into(),
        )),
    })
}

fn resolve<'d>(
    defs: &'d [ParamDef],
    name: &str,
    deployment: Deployment,
    pos: Pos,
) -> Result<&'d ParamDef, ScriptError> {
    if let Some(d) = defs.iter().find(|d| d.name.eq_ignore_ascii_case(name)) {
        return Ok(d);
    }
    let lower = name.to_ascii_lowercase();
    let matches: Vec<&ParamDef> = defs
        .iter()
        .filter(|d| d.name.to_ascii_lowercase().starts_with(&lower))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(error(pos, not_found_message(name, deployment))),
        many => Err(error(
            pos,
            format!(
                "Parameter cannot be processed because the parameter name '{name}' is ambiguous. Possible matches include: {}.",
                many.iter()
                    .map(|d| format!("-{}", d.name))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        )),
    }
}

fn not_found_message(name: &str, deployment: Deployment) -> String {
    let base = format!("A parameter cannot be found that matches parameter name '{name}'.");
    let other = match deployment {
        Deployment::Online => Deployment::OnPremises,
        Deployment::OnPremises => Deployment::Online,
    };
    if dialect_switches(other).any(|(n, _)| n.eq_ignore_ascii_case(name)) {
        let hint = match deployment {
            Deployment::Online => {
                "BlockLegacyAuth* and BlockModernAuth* exist only in Exchange Server on-premises"
            }
            Deployment::OnPremises => "AllowBasicAuth* exists only in Exchange Online",
        };
        format!(
            "{base} ({hint}; exchange.deployment is \"{}\".)",
            deployment.as_str()
        )
    } else {
        base
    }
}

fn switch_value(param: &str, value: &Value, pos: Pos) -> Result<bool, ScriptError> {
    match value {
        Value::Variable(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Value::Variable(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(error(
            pos,
            format!(
                "Cannot process argument transformation on parameter '{param}'. Cannot convert value \"{}\" to type \"System.Management.Automation.SwitchParameter\". Use $true or $false.",
                display(other)
            ),
        )),
    }
}

fn text_value(param: &str, value: &Value, pos: Pos) -> Result<Arg, ScriptError> {
    match value {
        Value::Word(s) | Value::Quoted(s) => Ok(Arg::Text(s.clone())),
        Value::Variable(v) if v.eq_ignore_ascii_case("null") => Ok(Arg::Null),
        Value::Variable(v) if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") => {
            Err(error(
                pos,
                format!(
                    "Cannot bind parameter '{param}'. Cannot convert value \"${v}\" to type \"System.String\"."
                ),
            ))
        }
        Value::Variable(v) => Err(error(
            pos,
            format!(
                "The variable '${v}' cannot be retrieved because it has not been set. exgate scripts take literal values."
            ),
        )),
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::Word(s) | Value::Quoted(s) => s.clone(),
        Value::Variable(name) => format!("${name}"),
    }
}
