//! One way to read a service's settings, for the hub, the orchestrator and
//! the agent alike: defaults, then a TOML file, then environment
//! variables, then command-line flags, each layer overriding the one
//! before it (the order Vector and most twelve-factor services use).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sextant_kit::config::Layers;
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Settings {
//!     listen: String,
//!     retries: u32,
//! }
//!
//! /// Only the flags given on the command line: `None` is left out.
//! #[derive(Serialize)]
//! struct Flags {
//!     #[serde(skip_serializing_if = "Option::is_none")]
//!     retries: Option<u32>,
//! }
//!
//! let settings: Settings = Layers::new(Settings::default())
//!     .env("EXAMPLE_DOC_", &["listen", "retries"])
//!     .flags(&Flags { retries: Some(3) })
//!     .load()
//!     .unwrap();
//! assert_eq!(settings.retries, 3);
//! ```
//!
//! Environment variables are read only for the keys a service names, so a
//! stray `SEXTANT_…` meant for another service is never an error; `__`
//! nests (`SEXTANT_RATE_LIMITS__API__BURST` is `rate_limits.api.burst`).
//! A file key the settings do not know is an error when the settings
//! `deny_unknown_fields`, and every error names the key and the layer it
//! came from.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Settings that could not be read: which key, from which layer, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(Box<figment::Error>);

impl ConfigError {
    /// The underlying error, for tests that check the key it names.
    pub fn figment(&self) -> &figment::Error {
        &self.0
    }
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        Self(Box::new(error))
    }
}

/// The layers of one service's settings, merged in the order they are
/// added: call [`Layers::file`], [`Layers::env`] and [`Layers::flags`] in
/// that order.
#[derive(Debug, Clone)]
#[must_use]
pub struct Layers {
    figment: Figment,
}

impl Layers {
    /// Starts from `defaults`.
    pub fn new(defaults: impl Serialize) -> Self {
        Self {
            figment: Figment::from(Serialized::defaults(defaults)),
        }
    }

    /// Merges a TOML file when one is given; a missing or unreadable file
    /// is an error, not a silent default.
    pub fn file(mut self, path: Option<&Path>) -> Self {
        if let Some(path) = path {
            self.figment = self.figment.merge(Toml::file_exact(path));
        }
        self
    }

    /// Merges the environment variables `prefix` + key for each of `keys`
    /// (dotted for nested settings), matched without regard to case.
    pub fn env(mut self, prefix: &str, keys: &'static [&'static str]) -> Self {
        self.figment = self
            .figment
            .merge(Env::prefixed(prefix).split("__").only(keys));
        self
    }

    /// Merges what the command line gave: `flags` serializes only the
    /// flags that were set (skip `None` fields), so an absent flag leaves
    /// the file and the environment in force.
    pub fn flags(mut self, flags: &impl Serialize) -> Self {
        self.figment = self.figment.merge(Serialized::globals(flags));
        self
    }

    /// The merged settings.
    pub fn load<T: DeserializeOwned>(self) -> Result<T, ConfigError> {
        Ok(self.figment.extract()?)
    }
}

/// For `#[serde(skip_serializing_if = "sextant_kit::config::is_false")]`
/// on a switch flag: a switch not given leaves the file's value in force.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
pub fn is_false(b: &bool) -> bool {
    !b
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Settings {
        listen: String,
        retries: u32,
        nested: Nested,
        labels: BTreeMap<String, String>,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Nested {
        burst: u32,
    }

    #[derive(Default, Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        retries: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
    }

    const KEYS: &[&str] = &["listen", "retries", "nested.burst"];

    fn defaults() -> Settings {
        Settings {
            listen: "127.0.0.1:1".into(),
            retries: 1,
            ..Settings::default()
        }
    }

    #[test]
    fn each_layer_overrides_the_one_before() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "s.toml",
                "listen = \"file:2\"\nretries = 2\n[nested]\nburst = 2\n[labels]\nteam = \"a\"",
            )?;
            jail.set_env("KITTEST_RETRIES", "3");
            jail.set_env("KITTEST_NESTED__BURST", "3");
            jail.set_env("KITTEST_LABELS", "{other=\"b\"}"); // not in KEYS: ignored
            let flags = Flags {
                retries: Some(4),
                listen: None,
            };
            let s: Settings = Layers::new(defaults())
                .file(Some(Path::new("s.toml")))
                .env("KITTEST_", KEYS)
                .flags(&flags)
                .load()
                .map_err(|e| e.to_string())?;
            assert_eq!(s.listen, "file:2", "no flag or variable: the file's");
            assert_eq!(s.nested.burst, 3, "the variable over the file");
            assert_eq!(s.retries, 4, "the flag over the variable");
            assert_eq!(s.labels, BTreeMap::from([("team".into(), "a".into())]));
            Ok(())
        });
    }

    #[test]
    fn no_file_and_no_flags_keep_the_defaults() {
        figment::Jail::expect_with(|_| {
            let s: Settings = Layers::new(defaults())
                .file(None)
                .env("KITTEST_", KEYS)
                .flags(&Flags::default())
                .load()
                .map_err(|e| e.to_string())?;
            assert_eq!(s, defaults());
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key_and_the_layer() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("s.toml", "retries = \"many\"")?;
            let err = Layers::new(defaults())
                .file(Some(Path::new("s.toml")))
                .load::<Settings>()
                .unwrap_err()
                .to_string();
            assert!(err.contains("retries"), "{err}");
            assert!(err.contains("s.toml"), "{err}");

            jail.create_file("u.toml", "retires = 2")?;
            let err = Layers::new(defaults())
                .file(Some(Path::new("u.toml")))
                .load::<Settings>()
                .unwrap_err()
                .to_string();
            assert!(err.contains("retires"), "an unknown key is named: {err}");

            jail.set_env("KITTEST_RETRIES", "-1");
            let err = Layers::new(defaults())
                .env("KITTEST_", KEYS)
                .load::<Settings>()
                .unwrap_err()
                .to_string();
            assert!(err.contains("RETRIES") && err.contains("KITTEST_"), "{err}");

            let err = Layers::new(defaults())
                .file(Some(Path::new("missing.toml")))
                .load::<Settings>()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("missing.toml"),
                "a missing file is an error: {err}"
            );
            Ok(())
        });
    }
}
