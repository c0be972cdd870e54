use std::path::PathBuf;
use std::time::Duration;

use sextant_kit::config::fixed_env;

use super::args::bearer_from_headers;
use super::*;

/// No environment variables at all, whatever the process has.
fn no_env(_: &str) -> Option<std::ffi::OsString> {
    None
}

fn args() -> AgentArgs {
    AgentArgs {
        host_name: Some("h1".into()),
        environment: Some("dev".into()),
        otlp_endpoints: vec!["http://127.0.0.1:4317".into()],
        ..AgentArgs::default()
    }
}

#[test]
fn defaults_and_units() {
    let c = args().resolve_in(no_env).expect("valid");
    assert_eq!(c.heartbeat, Duration::from_secs(30));
    assert_eq!(c.protocol, Protocol::Grpc);
    assert!(c.gzip);
    assert_eq!(c.outbox_max_bytes, 256 << 20);
    assert_eq!(
        duration("x", "500ms").ok(),
        Some(Duration::from_millis(500))
    );
    assert_eq!(duration("x", "2m").ok(), Some(Duration::from_secs(120)));
    assert!(duration("x", "0s").is_err());
    assert!(duration("x", "soon").is_err());
    assert_eq!(bytes("x", "64MiB").ok(), Some(64 << 20));
    assert!(bytes("x", "64MB").is_err());
}

#[test]
fn flags_win_over_the_file_and_bad_values_are_named() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "environment = \"stage\"\nheartbeat = \"10s\"\notlp_protocol = \"http/protobuf\"\n[labels]\nrack = \"r7\"\n",
    )
    .expect("write");
    let mut a = args();
    a.config = Some(path.clone());
    a.labels = vec!["zone=a".into()];
    let c = a.resolve_in(no_env).expect("valid");
    assert_eq!(c.environment, "dev", "the flag wins");
    assert_eq!(
        c.heartbeat,
        Duration::from_secs(10),
        "the file fills the gap"
    );
    assert_eq!(c.protocol, Protocol::HttpProtobuf);
    assert_eq!(
        c.labels,
        [
            ("rack".to_owned(), "r7".to_owned()),
            ("zone".to_owned(), "a".to_owned())
        ]
    );

    let mut bad = args();
    bad.otlp_protocol = Some("http/json".into());
    let e = bad.resolve_in(no_env).expect_err("refused").to_string();
    assert!(
        e.contains("--otlp-protocol") && e.contains("http/json"),
        "{e}"
    );
    let mut none = args();
    none.otlp_endpoints.clear();
    assert!(none.resolve_in(no_env).is_err());
    std::fs::write(&path, "heartbeat = 30\n").expect("write");
    let mut typo = args();
    typo.config = Some(path);
    let e = typo.resolve_in(no_env).expect_err("refused").to_string();
    assert!(e.contains("agent.toml"), "{e}");
}

#[test]
fn the_orchestrator_tls_files_come_from_flags_environment_and_file() {
    use clap::{Args, FromArgMatches};

    let command = AgentArgs::augment_args(clap::Command::new("agent"));
    let matches = command
        .try_get_matches_from([
            "agent",
            "--environment=dev",
            "--host-name=h1",
            "--otlp-endpoint=http://hub:4317",
            "--orchestrator=https://orch:8082",
            "--orchestrator-ca-file=/etc/sextant/ca.pem",
            "--orchestrator-client-cert=/etc/sextant/agent.pem",
            "--orchestrator-client-key=/etc/sextant/agent-key.pem",
        ])
        .expect("parsed");
    let c = AgentArgs::from_arg_matches(&matches)
        .expect("args")
        .resolve_in(no_env)
        .expect("valid");
    assert_eq!(
        c.orchestrator_tls,
        sextant_exporters::sender::TlsConfig {
            ca_file: Some("/etc/sextant/ca.pem".into()),
            client_cert: Some("/etc/sextant/agent.pem".into()),
            client_key: Some("/etc/sextant/agent-key.pem".into()),
        }
    );
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "orchestrator_ca_file = \"/file/ca.pem\"\n").expect("write");
    let mut from_file = args();
    from_file.config = Some(path);
    let c = from_file.resolve_in(no_env).expect("valid");
    assert_eq!(c.orchestrator_tls.ca_file, Some("/file/ca.pem".into()));
    let mut half = args();
    half.orchestrator_client_key = Some("/k.pem".into());
    let e = half.resolve_in(no_env).expect_err("refused").to_string();
    assert!(e.contains("--orchestrator-client-cert"), "{e}");
}

#[test]
fn tls_files_come_from_flags_the_standard_variables_and_the_file() {
    use clap::{Args, FromArgMatches};

    let command = AgentArgs::augment_args(clap::Command::new("agent"));
    let env = |id: &str| {
        ENV.iter()
            .find(|v| v.flag_id() == id)
            .map(|v| v.name.to_owned())
    };
    assert_eq!(
        env("otlp_ca_file").as_deref(),
        Some("OTEL_EXPORTER_OTLP_CERTIFICATE")
    );
    assert_eq!(
        env("otlp_client_cert").as_deref(),
        Some("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
    );
    assert_eq!(
        env("otlp_client_key").as_deref(),
        Some("OTEL_EXPORTER_OTLP_CLIENT_KEY")
    );

    let matches = command
        .clone()
        .try_get_matches_from([
            "agent",
            "--environment=dev",
            "--host-name=h1",
            "--otlp-endpoint=https://hub:4317",
            "--otlp-ca-file=/etc/sextant/ca.pem",
            "--otlp-client-cert=/etc/sextant/agent.pem",
            "--otlp-client-key=/etc/sextant/agent-key.pem",
        ])
        .expect("parsed");
    let flags = AgentArgs::from_arg_matches(&matches).expect("args");
    let c = flags.resolve_in(no_env).expect("valid");
    assert_eq!(c.ca_file, Some(PathBuf::from("/etc/sextant/ca.pem")));
    assert_eq!(
        c.client_cert,
        Some((
            PathBuf::from("/etc/sextant/agent.pem"),
            PathBuf::from("/etc/sextant/agent-key.pem")
        ))
    );
    assert_eq!(args().resolve_in(no_env).expect("valid").ca_file, None);

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "otlp_ca_file = \"/file/ca.pem\"\notlp_client_cert = \"/file/c.pem\"\notlp_client_key = \"/file/k.pem\"\n",
    )
    .expect("write");
    let mut from_file = args();
    from_file.config = Some(path.clone());
    let c = from_file.resolve_in(no_env).expect("valid");
    assert_eq!(c.ca_file, Some(PathBuf::from("/file/ca.pem")));
    assert_eq!(
        c.client_cert,
        Some((PathBuf::from("/file/c.pem"), PathBuf::from("/file/k.pem")))
    );
    from_file.otlp_ca_file = Some("/flag/ca.pem".into());
    let c = from_file.resolve_in(no_env).expect("valid");
    assert_eq!(
        c.ca_file,
        Some(PathBuf::from("/flag/ca.pem")),
        "the flag wins"
    );

    let mut half = args();
    half.otlp_client_cert = Some("/c.pem".into());
    let e = half.resolve_in(no_env).expect_err("refused").to_string();
    assert!(
        e.contains("--otlp-client-cert") && e.contains("--otlp-client-key"),
        "{e}"
    );
    let mut half = args();
    half.otlp_client_key = Some("/k.pem".into());
    let e = half.resolve_in(no_env).expect_err("refused").to_string();
    assert!(e.starts_with("--otlp-client-key"), "{e}");
}

/// `sextant agent run ARGV` as the CLI parses it, resolved with `env` as
/// the environment: the process's is neither read nor changed, so tests
/// stay independent when run in parallel.
fn resolve_with_env<'a>(
    argv: impl IntoIterator<Item = &'a str>,
    env: &[(&str, &str)],
) -> Result<AgentConfig, ConfigError> {
    use clap::{Args, FromArgMatches};

    let command = AgentArgs::augment_args(clap::Command::new("agent"));
    let matches = command
        .try_get_matches_from(std::iter::once("agent").chain(argv))
        .expect("parsed");
    AgentArgs::from_arg_matches(&matches)
        .expect("args")
        .resolve_in(fixed_env(env))
}

#[test]
fn the_environment_variables_configure_the_agent() {
    let env = [
        ("SEXTANT_HOST_NAME", "edge-7"),
        ("SEXTANT_ENVIRONMENT", "stage"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://hub-a:4318, http://hub-b:4318",
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("SEXTANT_DATA_DIR", "/var/lib/sextant-agent"),
        ("SEXTANT_HEARTBEAT", "5s"),
        ("DOCKER_HOST", "unix:///run/user/1000/docker.sock"),
    ];
    let c = resolve_with_env([], &env).expect("valid");
    assert_eq!(c.host_name, "edge-7");
    assert_eq!(c.environment, "stage");
    assert_eq!(c.otlp_endpoints, ["http://hub-a:4318", "http://hub-b:4318"]);
    assert_eq!(c.protocol, Protocol::HttpProtobuf);
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/sextant-agent"));
    assert_eq!(c.heartbeat, Duration::from_secs(5));
    assert_eq!(
        c.docker_host.as_deref(),
        Some("unix:///run/user/1000/docker.sock")
    );
    // Without the variables: the defaults, and the required ones missing.
    let bare = [
        "--host-name=h",
        "--environment=dev",
        "--otlp-endpoint=http://hub:4317",
    ];
    let c = resolve_with_env(bare, &[]).unwrap();
    assert_eq!(c.protocol, Protocol::Grpc);
    assert_eq!(c.data_dir, PathBuf::from("sextant-agent-data"));
    assert_eq!(c.heartbeat, Duration::from_secs(30));
    assert_eq!(c.docker_host, None);
    let e = resolve_with_env([], &env[..1]).unwrap_err();
    assert!(e.to_string().contains("SEXTANT_ENVIRONMENT"), "{e}");
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "host_name = \"h1\"\nenvironment = \"dev\"\notlp_endpoints = [\"http://hub:4317\"]\nheartbeat = \"10s\"\n",
    )
    .expect("write");
    let config = format!("--config={}", path.display());
    let heartbeat = |argv: &[&str], env: &[(&str, &str)]| {
        resolve_with_env(argv.iter().copied(), env)
            .expect("valid")
            .heartbeat
    };
    let variable = [("SEXTANT_HEARTBEAT", "5s")];
    assert_eq!(
        heartbeat(&[&config, "--heartbeat=2s"], &variable),
        Duration::from_secs(2),
        "the flag wins"
    );
    assert_eq!(
        heartbeat(&[&config], &variable),
        Duration::from_secs(5),
        "then the variable"
    );
    assert_eq!(
        heartbeat(&[&config], &[]),
        Duration::from_secs(10),
        "then the file"
    );
    let file_only = format!("--config={}", dir.path().join("empty.toml").display());
    std::fs::write(dir.path().join("empty.toml"), "").expect("write");
    let bare = [
        "--host-name=h",
        "--environment=dev",
        "--otlp-endpoint=http://hub:4317",
    ];
    assert_eq!(
        heartbeat(&[&file_only, bare[0], bare[1], bare[2]], &[]),
        Duration::from_secs(30),
        "then the default"
    );
}

#[test]
fn a_bad_variable_is_refused_by_the_setting_it_sets() {
    let base = [
        ("SEXTANT_HOST_NAME", "h1"),
        ("SEXTANT_ENVIRONMENT", "dev"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://hub:4317"),
    ];
    let refused = |variable: &'static str, value: &'static str| {
        let mut env = base.to_vec();
        env.push((variable, value));
        resolve_with_env([], &env).expect_err("refused").to_string()
    };
    let e = refused("SEXTANT_HEARTBEAT", "soon");
    assert!(
        e.starts_with("--heartbeat: ") && e.contains("\"soon\""),
        "{e}"
    );
    let e = refused("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
    assert!(
        e.starts_with("--otlp-protocol: ") && e.contains("http/json"),
        "{e}"
    );
    // A value of the wrong type is refused with the variable's name.
    let e = refused("SEXTANT_AGENT_LISTEN", "localhost");
    assert!(
        e.contains("SEXTANT_AGENT_LISTEN") && e.contains("environment variable"),
        "{e}"
    );
    let e = refused("SEXTANT_DRY_RUN", "1");
    assert!(e.contains("SEXTANT_DRY_RUN"), "{e}");
}

#[test]
fn the_token_comes_from_otlp_headers() {
    assert_eq!(
        bearer_from_headers("x-tenant=a,Authorization=Bearer%20s3cret").as_deref(),
        Some("s3cret")
    );
    assert_eq!(bearer_from_headers("x=y"), None);
}

/// The token: `--otlp-token` (or its variable), else the bearer token of
/// `--otlp-headers`, else the file's.
#[test]
fn the_token_comes_from_the_flag_then_the_headers_then_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "otlp_token = \"from-file\"\n").expect("write");
    let mut a = args();
    a.config = Some(path);
    let token = |a: &AgentArgs| {
        a.resolve_in(no_env)
            .expect("valid")
            .token
            .map(|t| t.expose().to_owned())
    };
    assert_eq!(token(&a).as_deref(), Some("from-file"));
    a.otlp_headers = Some("x-tenant=a,authorization=Bearer%20from-headers".into());
    assert_eq!(token(&a).as_deref(), Some("from-headers"));
    a.otlp_token = Some("from-flag".into());
    assert_eq!(token(&a).as_deref(), Some("from-flag"));
}

/// A list given on the command line replaces the file's list; labels are
/// merged key by key, the flag's value winning.
#[test]
fn a_list_flag_replaces_the_files_and_labels_merge_by_key() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "otlp_endpoints = [\"http://file:4317\"]\nwatch_labels = [\"team=a\"]\n\
         [labels]\nrack = \"r7\"\nzone = \"file\"\n",
    )
    .expect("write");
    let mut a = args();
    a.config = Some(path);
    a.otlp_endpoints.clear();
    let c = a.resolve_in(no_env).expect("valid");
    assert_eq!(
        c.otlp_endpoints,
        ["http://file:4317"],
        "no flag: the file's"
    );
    assert_eq!(c.watch_labels, ["team=a"]);
    a.otlp_endpoints = vec!["http://flag:4317".into()];
    a.watch_labels = vec!["team=b".into()];
    a.labels = vec!["zone=flag".into()];
    let c = a.resolve_in(no_env).expect("valid");
    assert_eq!(c.otlp_endpoints, ["http://flag:4317"]);
    assert_eq!(c.watch_labels, ["team=b"]);
    assert_eq!(
        c.labels,
        [
            ("rack".to_owned(), "r7".to_owned()),
            ("zone".to_owned(), "flag".to_owned())
        ]
    );
    a.labels = vec!["=x".into()];
    let e = a.resolve_in(no_env).expect_err("refused").to_string();
    assert!(e.starts_with("--label: "), "{e}");
}

/// Each kind of variable gives the setting it gave when clap read it: a
/// switch, sizes and durations as text, an address, and secrets that no
/// error shows.
#[test]
fn each_kind_of_variable_keeps_its_meaning() {
    let base = [
        ("SEXTANT_HOST_NAME", "h1"),
        ("SEXTANT_ENVIRONMENT", "dev"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://hub:4317"),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        resolve_with_env([], &env)
    };
    assert!(with(&[("SEXTANT_DRY_RUN", "true")]).unwrap().dry_run);
    assert!(!with(&[("SEXTANT_DRY_RUN", "false")]).unwrap().dry_run);
    let c = with(&[
        ("SEXTANT_OUTBOX_MAX_BYTES", "1048576"),
        ("SEXTANT_RESYNC", "90"),
        ("SEXTANT_AGENT_LISTEN", "0.0.0.0:9999"),
        ("SEXTANT_ORCHESTRATOR", "http://o1:8082,http://o2:8082"),
        ("SEXTANT_REGISTRATION_TOKEN", "0123"),
    ])
    .unwrap();
    assert_eq!(c.outbox_max_bytes, 1_048_576, "a number of bytes");
    assert_eq!(c.resync, Duration::from_secs(90), "plain seconds");
    assert_eq!(c.listen, "0.0.0.0:9999".parse().unwrap());
    assert_eq!(c.orchestrator, ["http://o1:8082", "http://o2:8082"]);
    assert_eq!(
        c.registration_token.as_ref().map(Secret::expose),
        Some("0123"),
        "text"
    );
    assert!(
        !format!("{c:?}").contains("0123"),
        "no secret in Debug: {c:?}"
    );

    let headers = (
        "OTEL_EXPORTER_OTLP_HEADERS",
        "authorization=Bearer%20h-token",
    );
    assert_eq!(
        with(&[headers]).unwrap().token.as_ref().map(Secret::expose),
        Some("h-token")
    );
    let c = with(&[headers, ("SEXTANT_OTLP_TOKEN", "12345")]).unwrap();
    assert_eq!(
        c.token.as_ref().map(Secret::expose),
        Some("12345"),
        "the token's own variable"
    );
    let secret = "s3cret-0123456789abcdef";
    let e = with(&[
        ("SEXTANT_OTLP_TOKEN", secret),
        ("SEXTANT_REGISTRATION_TOKEN", secret),
        ("SEXTANT_AGENT_LISTEN", "nowhere"),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("SEXTANT_AGENT_LISTEN"), "{e}");
    assert!(!format!("{e} {e:?}").contains(secret), "{e:?}");
}

#[test]
fn the_file_comes_from_the_flag_else_its_variable() {
    let dir = tempfile::tempdir().expect("dir");
    let from_env = dir.path().join("env.toml");
    let from_flag = dir.path().join("flag.toml");
    let settings =
        "host_name = \"h1\"\nenvironment = \"dev\"\notlp_endpoints = [\"http://hub:4317\"]\n";
    std::fs::write(&from_env, format!("{settings}heartbeat = \"7s\"\n")).expect("write");
    std::fs::write(&from_flag, format!("{settings}heartbeat = \"9s\"\n")).expect("write");
    let env = [("SEXTANT_AGENT_CONFIG", from_env.to_str().expect("utf-8"))];
    let c = resolve_with_env([], &env).expect("valid");
    assert_eq!(c.heartbeat, Duration::from_secs(7));
    let flag = format!("--config={}", from_flag.display());
    let c = resolve_with_env([flag.as_str()], &env).expect("valid");
    assert_eq!(c.heartbeat, Duration::from_secs(9), "the flag's file");
}

#[test]
fn help_names_every_variable() {
    use clap::Args;

    let help = AgentArgs::augment_args(clap::Command::new("agent"))
        .render_long_help()
        .to_string();
    for var in ENV {
        assert!(
            help.contains(&format!("[env: {}]", var.name)),
            "{} missing from:\n{help}",
            var.name
        );
    }
}
