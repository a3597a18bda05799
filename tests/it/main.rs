//! exgate's integration tests: one binary, a module per area (keeps CI builds few).

mod agreement;
mod attacks;
mod audit_report;
mod availability;
mod binary;
#[cfg(feature = "lab")]
mod browser;
#[cfg(feature = "lab")]
mod clients;
#[cfg(feature = "lab")]
mod console;
mod direct;
mod fleet;
#[cfg(feature = "lab")]
mod idp;
mod kdc;
mod kerberos;
mod kubernetes;
#[cfg(feature = "lab")]
mod lab;
#[cfg(feature = "lab")]
mod lab_kerberos;
#[cfg(feature = "lab")]
mod load;
mod monitoring;
mod operate;
mod park;
mod prometheus;
mod proxy;
mod purity;
mod quick;
mod report_html;
mod support;
mod tls;
#[cfg(feature = "lab")]
mod tokens;
mod validate;
