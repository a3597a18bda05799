//! The policy engine (SPEC §2, §4): PURE. Protocol classification, users, policies, the
//! cmdlet language and `decide()` are plain functions over data; no I/O happens here
//! (a test in `tests/it/purity.rs` keeps it that way).

pub mod cmdlet;
mod context;
mod decision;
mod directory;
mod engine;
pub mod path;
mod protocol;
mod proxyshell;
mod store;

pub use context::{ConnectionIdentity, ConnectionSubject, Context, RequestFacts, TicketRead};
pub use decision::{Action, Decision, Reason};
pub use directory::{Directory, DirectoryError, Lookup, UserEntry, UserId, account_key, fold};
pub use engine::{Engine, Evaluation, Mode, OtherPaths, Settings};
pub use path::{Target, TargetError, answer_checks_password, classify, password_checked};
pub use protocol::{Protocol, Switch, SwitchSet};
pub use proxyshell::autodiscover_v2_request_refused;
pub use store::{AuthenticationPolicy, Deployment, PolicyId, PolicyStore};

#[cfg(test)]
mod attack_tests;
#[cfg(test)]
mod matrix_tests;
#[cfg(test)]
mod tests;
