//! exgate: a reverse proxy that enforces Exchange authentication policies at the edge.
//!
//! The request flow (SPEC §1):
//! 1. normalize and classify the path → [`policy::Protocol`] ([`policy::classify`])
//! 2. parse `Authorization` → [`auth::Credentials`] ([`auth::parse_authorization`])
//! 3. resolve the effective policy: user policy, else organization default, else none
//! 4. decide → [`policy::Decision`] ([`policy::Engine::decide`])
//! 5. answer it here, or forward it (pinned for NTLM/Negotiate)
//! 6. record metrics and the audit log
//!
//! Steps 1–4 are pure and live in [`policy`] and [`auth`]; [`config`] turns files into
//! an engine; the CLI lives in `main.rs` and [`cli`].

#![forbid(unsafe_code)]

// The command line's output: `print!` and `eprint!` panic when the reader has gone away
// (`exgate validate | head`, `2>&1 | true`), which would turn a documented exit code into
// 101. These drop the text instead, so the exit code stays the command's own.

/// `print!` that never panics: a closed standard output drops the text.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `println!` that never panics.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `eprint!` that never panics.
macro_rules! err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($t)*);
    }};
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

pub mod audit;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod kerberos;
#[cfg(feature = "lab")]
pub mod lab;
#[cfg(feature = "lab")]
pub mod load;
pub mod metrics;
pub mod policy;
pub mod protect;
pub mod proxy;
pub mod report;
#[cfg(test)]
mod test_support;
pub mod token;
