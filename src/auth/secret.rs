//! A byte string that must never be printed: a password or a bearer token.

use std::fmt;

/// A password or token. `Debug` prints `[redacted]`; equality is constant-time so that
/// comparing secrets leaks nothing through timing.
#[derive(Clone)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: &[u8]) -> Secret {
        Secret(bytes.into())
    }

    /// The secret bytes, for the one place that must use them (token validation).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret's length in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        // Length is not secret; the content is compared without early exit.
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(other.0.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for Secret {}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: overwrite before the allocation is returned.
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}
