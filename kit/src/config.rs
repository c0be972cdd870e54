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
//! stray `SEXTANT_…` meant for another service is never an error. Either
//! as a prefix and keys ([`Layers::env`]; `__` nests:
//! `SEXTANT_RATE_LIMITS__API__BURST` is `rate_limits.api.burst`), or as a
//! list of variables by name, each with the key it sets and how its text is
//! read ([`Layers::env_vars`], for names such as `DOCKER_HOST` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` that no prefix covers); [`env_help`] puts
//! the same names into `--help`.
//! A file key the settings do not know is an error when the settings
//! `deny_unknown_fields`, and every error names the key and the layer it
//! came from.

mod env_vars;
#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests;

use std::ffi::OsString;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use env_vars::{EnvVar, Kind, env_help, file_path, fixed_env, process_env};

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
/// added: call [`Layers::file`], [`Layers::env`] or [`Layers::env_vars`],
/// and [`Layers::flags`] in that order.
#[derive(Clone)]
#[must_use]
pub struct Layers {
    figment: Figment,
}

/// The layers' names only: their values may hold secrets.
impl std::fmt::Debug for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.figment.metadata().map(|m| &m.name))
            .finish()
    }
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

    /// Merges the variables of `vars` that `env` has (a service passes
    /// [`process_env`], a test [`fixed_env`]), each under its key and read
    /// as its [`Kind`] says; an empty variable is unset. Errors name the
    /// variable.
    pub fn env_vars(mut self, vars: &[EnvVar], env: impl Fn(&str) -> Option<OsString>) -> Self {
        self.figment = self.figment.merge(env_vars::EnvVars::read(vars, env));
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
