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

/// A service whose variables are named one by one, as the agent's and the
/// orchestrator's are.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Service {
    listen: Option<std::net::SocketAddr>,
    retries: u32,
    rate: f64,
    enabled: bool,
    lease: String,
    registries: Vec<String>,
    token: Option<crate::Secret>,
    tls: Tls,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Tls {
    cert_file: Option<std::path::PathBuf>,
}

fn bearer(headers: &str) -> Option<String> {
    headers
        .strip_prefix("authorization=Bearer ")
        .map(str::to_owned)
}

const VARS: &[EnvVar] = &[
    EnvVar::file("KT_CONFIG"),
    EnvVar::text("KT_LISTEN_ADDR", "listen"),
    EnvVar::parsed("KT_RETRIES", "retries"),
    EnvVar::parsed("KT_RATE", "rate"),
    EnvVar::parsed("KT_ENABLED", "enabled"),
    EnvVar::text("KT_LEASE", "lease"),
    EnvVar::list("KT_REGISTRIES", "registries").flag("registry"),
    EnvVar::mapped("KT_HEADERS", "token", bearer).flag("headers"),
    EnvVar::text("KT_TOKEN", "token"),
    EnvVar::text("OTHER_CERT_FILE", "tls.cert_file").flag("cert"),
];

fn service(env: &[(&str, &str)]) -> Result<Service, ConfigError> {
    Layers::new(Service::default())
        .env_vars(VARS, fixed_env(env))
        .load()
}

#[test]
fn each_named_variable_sets_its_key_read_as_its_kind() {
    let s = service(&[
        ("KT_LISTEN_ADDR", "0.0.0.0:9081"),
        ("KT_RETRIES", "7"),
        ("KT_RATE", "2"),
        ("KT_ENABLED", "true"),
        ("KT_LEASE", "30"),
        ("KT_REGISTRIES", "a:5000, b:5000,"),
        ("KT_TOKEN", "12345"),
        ("OTHER_CERT_FILE", "/etc/cert.pem"),
    ])
    .expect("valid");
    assert_eq!(
        s.listen,
        Some(std::net::SocketAddr::from(([0, 0, 0, 0], 9081)))
    );
    assert_eq!(s.retries, 7, "a number");
    assert!((s.rate - 2.0).abs() < f64::EPSILON, "a whole number as f64");
    assert!(s.enabled, "a boolean");
    assert_eq!(
        s.lease, "30",
        "text stays text, even when it looks like a number"
    );
    assert_eq!(s.registries, ["a:5000", "b:5000"], "a comma-separated list");
    assert_eq!(s.token.as_ref().map(crate::Secret::expose), Some("12345"));
    assert_eq!(
        s.tls.cert_file,
        Some("/etc/cert.pem".into()),
        "a nested key"
    );

    let s = service(&[("KT_HEADERS", "authorization=Bearer from-headers")]).expect("valid");
    assert_eq!(
        s.token.as_ref().map(crate::Secret::expose),
        Some("from-headers")
    );
    let s = service(&[("KT_HEADERS", "authorization=Bearer h"), ("KT_TOKEN", "t")]).expect("valid");
    assert_eq!(
        s.token.as_ref().map(crate::Secret::expose),
        Some("t"),
        "the later in the list"
    );
    let s = service(&[("KT_HEADERS", "x-tenant=a")]).expect("valid");
    assert!(
        s.token.is_none(),
        "a mapping that gives nothing sets nothing"
    );

    let s = service(&[("KT_RETRIES", ""), ("KT_CONFIG", "/x.toml")]).expect("valid");
    assert_eq!(s.retries, 0, "an empty variable is unset");
}

#[test]
fn named_variables_sit_between_the_file_and_the_flags() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("s.toml", "retries = 2\nlease = \"1m\"\nrate = 0.5\n")?;
        #[derive(Serialize)]
        struct Flags {
            retries: u32,
        }
        let env = [("KT_RETRIES", "3"), ("KT_LEASE", "30s")];
        let s: Service = Layers::new(Service::default())
            .file(Some(Path::new("s.toml")))
            .env_vars(VARS, fixed_env(&env))
            .flags(&Flags { retries: 4 })
            .load()
            .map_err(|e| e.to_string())?;
        assert_eq!(s.retries, 4, "the flag over the variable");
        assert_eq!(s.lease, "30s", "the variable over the file");
        assert!(
            (s.rate - 0.5).abs() < f64::EPSILON,
            "the file over the default"
        );
        Ok(())
    });
}

#[test]
fn a_bad_variable_is_named_and_a_secret_never_shown() {
    let token = "s3cret-token-0123456789";
    let err = service(&[("KT_RETRIES", "many"), ("KT_TOKEN", token)]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("KT_RETRIES") && text.contains("environment variable"),
        "{text}"
    );
    assert!(
        !text.contains(token) && !format!("{err:?}").contains(token),
        "{err:?}"
    );
    for (name, value) in [
        ("KT_ENABLED", "maybe"),
        ("KT_LISTEN_ADDR", "localhost"),
        ("KT_RATE", "fast"),
    ] {
        let err = service(&[(name, value)]).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt as _;
        let not_utf8 = |name: &str| (name == "KT_LEASE").then(|| OsString::from_vec(vec![0xff]));
        let err = Layers::new(Service::default())
            .env_vars(VARS, not_utf8)
            .load::<Service>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("KT_LEASE") && err.contains("UTF-8"), "{err}");
    }
    let layers = Layers::new(Service::default()).env_vars(VARS, fixed_env(&[("KT_TOKEN", token)]));
    assert!(!format!("{layers:?}").contains(token), "{layers:?}");
}

#[test]
fn the_file_comes_from_the_flag_else_its_variable() {
    let env = [("KT_CONFIG", "/from/env.toml")];
    assert_eq!(
        file_path(Some(Path::new("/flag.toml")), VARS, fixed_env(&env)),
        Some("/flag.toml".into())
    );
    assert_eq!(
        file_path(None, VARS, fixed_env(&env)),
        Some("/from/env.toml".into())
    );
    assert_eq!(file_path(None, VARS, fixed_env(&[("KT_CONFIG", "")])), None);
}

#[test]
fn help_names_each_flags_variable() {
    let command = clap::Command::new("svc")
        .arg(
            clap::Arg::new("listen")
                .long("listen")
                .help("Where to listen"),
        )
        .arg(clap::Arg::new("registry").long("registry"))
        .arg(
            clap::Arg::new("cert")
                .long("cert")
                .help("Certificate")
                .long_help("Certificate\n\nA PEM file."),
        )
        .arg(clap::Arg::new("other").long("other").help("Nothing"))
        .mut_args(env_help(VARS));
    let help = command.clone().render_help().to_string();
    assert!(
        help.contains("Where to listen [env: KT_LISTEN_ADDR]"),
        "{help}"
    );
    assert!(help.contains("[env: KT_REGISTRIES]"), "{help}");
    assert!(help.contains("Nothing\n"), "{help}");
    let long = command.clone().render_long_help().to_string();
    assert!(
        long.contains("A PEM file. [env: OTHER_CERT_FILE]"),
        "{long}"
    );
}
