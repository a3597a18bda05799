//! exgate's integration tests: one binary, a module per area (keeps CI builds few).

mod purity;
mod support;
mod validate;
