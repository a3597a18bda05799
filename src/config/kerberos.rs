//! `[kerberos]` (SPEC §3 "Kerberos", §11): the keytab of Exchange's HTTP service
//! principal, read and parsed here so that `validate` refuses what `serve` would.

use std::path::Path;
use std::sync::Arc;

use super::raw::RawConfig;
use super::{ConfigError, error};
use crate::kerberos::{DEFAULT_CACHE_MAX_ENTRIES, KerberosConfig, Keytab};

/// Reads `[kerberos]`: None when `keytab` is not set. Errors name the key and the file,
/// never a key's bytes.
pub fn kerberos(
    raw: &RawConfig,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<KerberosConfig> {
    let k = &raw.kerberos;
    let path = match k.keytab.as_deref() {
        None => {
            if k.cache_max_entries.is_some() {
                errors.push(error(
                    "kerberos.cache_max_entries",
                    "set without kerberos.keytab",
                ));
            }
            return None;
        }
        Some("") => {
            errors.push(error("kerberos.keytab", "must not be empty"));
            return None;
        }
        Some(p) => base.join(p),
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            errors.push(error(
                "kerberos.keytab",
                format!("cannot read {}: {e}", path.display()),
            ));
            return None;
        }
    };
    match Keytab::parse(&bytes) {
        Ok(keytab) => Some(KerberosConfig {
            keytab_path: path,
            keytab: Arc::new(keytab),
            cache_max_entries: k.cache_max_entries.unwrap_or(DEFAULT_CACHE_MAX_ENTRIES),
        }),
        Err(e) => {
            errors.push(error("kerberos.keytab", format!("{}: {e}", path.display())));
            None
        }
    }
}
