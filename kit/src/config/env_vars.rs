//! Environment variables by name. A service lists the variables it reads
//! and the setting each one sets, so standard names
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `DOCKER_HOST`) and `SEXTANT_…` ones
//! alike arrive at the environment layer (over the file, under the flags),
//! and `--help` names each flag's variable from the same list
//! ([`env_help`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// How a variable's text becomes its setting's value.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// The text as it is: names, URLs, paths, socket addresses, durations
    /// (`30s`) and secrets. `12345` stays text, so a type error never
    /// echoes a token.
    Text,
    /// Comma-separated items, trimmed, empty ones left out.
    List,
    /// A number or `true`/`false`, as figment reads a value.
    Parsed,
    /// The text turned into the setting's text by a function; `None`
    /// leaves the setting alone.
    Mapped(fn(&str) -> Option<String>),
    /// Names the settings file itself ([`file_path`]): not a setting.
    File,
}

/// One variable: its name, the setting it sets (dotted when nested) and
/// how its text is read.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    /// The variable's name, matched exactly.
    pub name: &'static str,
    /// The setting, as the file spells it (`agent_tls.cert_file`).
    pub key: &'static str,
    /// How its text is read.
    pub kind: Kind,
    /// The flag's clap id when it is not `key` (for [`env_help`]).
    flag: Option<&'static str>,
}

impl EnvVar {
    const fn new(name: &'static str, key: &'static str, kind: Kind) -> Self {
        Self {
            name,
            key,
            kind,
            flag: None,
        }
    }

    /// A variable read as text ([`Kind::Text`]).
    pub const fn text(name: &'static str, key: &'static str) -> Self {
        Self::new(name, key, Kind::Text)
    }

    /// A comma-separated list ([`Kind::List`]).
    pub const fn list(name: &'static str, key: &'static str) -> Self {
        Self::new(name, key, Kind::List)
    }

    /// A number or a boolean ([`Kind::Parsed`]).
    pub const fn parsed(name: &'static str, key: &'static str) -> Self {
        Self::new(name, key, Kind::Parsed)
    }

    /// A variable whose text `map` turns into the setting's ([`Kind::Mapped`]).
    pub const fn mapped(
        name: &'static str,
        key: &'static str,
        map: fn(&str) -> Option<String>,
    ) -> Self {
        Self::new(name, key, Kind::Mapped(map))
    }

    /// The variable that names the settings file, for the `--config` flag.
    pub const fn file(name: &'static str) -> Self {
        Self::new(name, "config", Kind::File)
    }

    /// The flag's clap id, when it differs from the key.
    pub const fn flag(mut self, id: &'static str) -> Self {
        self.flag = Some(id);
        self
    }

    /// The clap id of the flag this variable stands in for.
    pub fn flag_id(&self) -> &'static str {
        self.flag.unwrap_or(self.key)
    }
}

/// Reads a variable of the process: what services pass to
/// [`Layers::env_vars`](super::Layers::env_vars).
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// A fixed environment, for tests: the process's is neither read nor
/// changed, so tests stay independent when run in parallel.
pub fn fixed_env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
    move |name| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| OsString::from(v))
    }
}

/// The settings file: the flag's, else the one the [`Kind::File`]
/// variable of `vars` names (an empty variable is unset).
pub fn file_path(
    flag: Option<&Path>,
    vars: &[EnvVar],
    env: impl Fn(&str) -> Option<OsString>,
) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(|| {
        vars.iter()
            .filter(|v| matches!(v.kind, Kind::File))
            .find_map(|v| env(v.name).filter(|value| !value.is_empty()))
            .map(PathBuf::from)
    })
}

/// `[env: NAME]` after the help of each flag a variable of `vars` stands
/// in for, as clap's `env` printed it:
/// `#[command(mut_args = env_help(VARS))]` on the flags' struct.
pub fn env_help(vars: &'static [EnvVar]) -> impl FnMut(clap::Arg) -> clap::Arg {
    move |arg| {
        let names: Vec<&str> = vars
            .iter()
            .filter(|v| v.flag_id() == arg.get_id().as_str())
            .map(|v| v.name)
            .collect();
        if names.is_empty() {
            return arg;
        }
        let suffix = format!("[env: {}]", names.join(", "));
        let with = |help: Option<&clap::builder::StyledStr>| match help {
            Some(help) => format!("{help} {suffix}"),
            None => suffix.clone(),
        };
        let help = with(arg.get_help());
        let long = arg.get_long_help().map(|h| with(Some(h)));
        let arg = arg.help(help);
        match long {
            Some(long) => arg.long_help(long),
            None => arg,
        }
    }
}

/// One variable as it was read.
#[derive(Clone)]
struct Read {
    name: &'static str,
    key: &'static str,
    /// The value; `None` when the text is not valid UTF-8.
    value: Option<Value>,
}

/// The provider of [`Layers::env_vars`](super::Layers::env_vars): the
/// variables read once, when it is made. Its `Debug` shows names, never
/// values.
pub(super) struct EnvVars {
    read: Vec<Read>,
}

impl EnvVars {
    pub(super) fn read(vars: &[EnvVar], env: impl Fn(&str) -> Option<OsString>) -> Self {
        let read = vars
            .iter()
            .filter(|v| !matches!(v.kind, Kind::File))
            .filter_map(|v| {
                // An empty variable is unset, as the OpenTelemetry
                // specification has it for its own.
                let text = env(v.name).filter(|value| !value.is_empty())?;
                let value = match text.into_string() {
                    Ok(text) => Some(value(v.kind, &text)?),
                    Err(_) => None,
                };
                Some(Read {
                    name: v.name,
                    key: v.key,
                    value,
                })
            })
            .collect();
        Self { read }
    }
}

/// The value of a variable's text; `None` for a mapping that gives none.
fn value(kind: Kind, text: &str) -> Option<Value> {
    Some(match kind {
        Kind::Text | Kind::File => Value::from(text.to_owned()),
        Kind::List => Value::from(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::from(item.to_owned()))
                .collect::<Vec<_>>(),
        ),
        Kind::Parsed => text.parse().unwrap_or_else(|never| match never {}),
        Kind::Mapped(map) => Value::from(map(text)?),
    })
}

impl std::fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.read.iter().map(|r| r.name))
            .finish()
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        // An error names the variable that set the key, not the key.
        let names: Arc<Vec<(&'static str, &'static str)>> =
            Arc::new(self.read.iter().map(|r| (r.key, r.name)).collect());
        Metadata::named("environment variable").interpolater(move |_: &Profile, path: &[&str]| {
            let key = path.join(".");
            names
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map_or(key, |(_, name)| (*name).to_owned())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for read in &self.read {
            let value = read.value.clone().ok_or_else(|| {
                Error::from(format!(
                    "environment variable {}: not valid UTF-8",
                    read.name
                ))
            })?;
            insert(&mut dict, read.key, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Sets the dotted `key` in `dict`, keeping the other keys of the tables
/// on its way.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}
