//! A string that never shows itself: credentials from configs.

use serde::{Serialize, Serializer};
use std::fmt;

/// A secret value (an access key, a secret key, a session token). Debug, Display and
/// serialisation all print `***`; only [`Secret::expose`] gives the value, for the AWS client.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// What a secret prints as.
pub const MASK: &str = "***";

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Call only where it goes to AWS.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("wJalrXUtnFEMI");
        assert_eq!(format!("{s} {s:?} {s:#?}"), "*** *** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "wJalrXUtnFEMI");
    }
}
