//! Links from a trace id to where people read the trace and its logs
//! (issue 20 §2): URL templates with placeholders, checked once when the
//! settings are read and filled in for each trace id a page or a JSON
//! answer shows.
//!
//! A template is a URL with any of these placeholders:
//!
//! | placeholder | value |
//! |---|---|
//! | `{trace_id}` | the trace id, 32 lowercase hex digits |
//! | `{service}` | the `service.name` of the service that shows the link |
//! | `{from}` | the start of what the trace covers, Unix ms (with a margin) |
//! | `{to}` | its end, Unix ms (with a margin) |
//!
//! Every value is percent-encoded as it goes in (everything but
//! `A-Z a-z 0-9 - . _ ~`), so a placeholder may stand in a query value or
//! inside URL-encoded JSON, such as Grafana Explore's `panes`. A literal
//! `{` or `}` in a template is written `%7B` / `%7D`, as a URL has them
//! anyway; any other `{…}` is an error naming it, so a misspelt
//! placeholder stops the service at start rather than making dead links.
//!
//! ```
//! use sextant_kit::links::{LinkTemplate, LinkVars};
//!
//! let t: LinkTemplate = "http://tempo.example/trace/{trace_id}?from={from}".parse().unwrap();
//! let vars = LinkVars { trace_id: "4bf92f3577b34da6a3ce929d0e0e4736", service: "sextant", from_ms: 1, to_ms: 2 };
//! assert_eq!(t.render(&vars), "http://tempo.example/trace/4bf92f3577b34da6a3ce929d0e0e4736?from=1");
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &["trace_id", "service", "from", "to"];

/// What fills a template's placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkVars<'a> {
    /// 32 hex digits.
    pub trace_id: &'a str,
    /// `service.name` of the service showing the link.
    pub service: &'a str,
    /// Unix ms.
    pub from_ms: i64,
    /// Unix ms.
    pub to_ms: i64,
}

impl LinkVars<'_> {
    /// How far before its start and after its end a trace's window
    /// reaches: clocks differ between services, and logs about a trace
    /// may be written a little before or after its spans.
    pub const MARGIN_MS: i64 = 5 * 60 * 1000;
}

/// One piece of a parsed template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    TraceId,
    Service,
    From,
    To,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

/// A URL template, parsed (see the module docs). Its serde form is the
/// template's text, so a settings struct can hold it and a bad template
/// is an error of the settings file or variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTemplate {
    text: String,
    parts: Vec<Part>,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown placeholder {{{0}}} in the link template (known: {{trace_id}}, {{service}}, {{from}}, {{to}}; write a literal brace as %7B or %7D)"
    )]
    UnknownPlaceholder(String),
    #[error("unbalanced `{0}` in the link template (write a literal brace as %7B or %7D)")]
    Unbalanced(char),
    #[error("the link template is not an http(s) URL: {0:?}")]
    NotHttp(String),
}

impl LinkTemplate {
    /// Parses `text`; see the module docs for what it may hold.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.to_owned()));
                    break;
                }
                Some(i) if rest[i..].starts_with('}') => {
                    return Err(TemplateError::Unbalanced('}'));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_owned()));
                    }
                    let after = &rest[i + 1..];
                    let end = after
                        .find(['{', '}'])
                        .filter(|&j| after[j..].starts_with('}'))
                        .ok_or(TemplateError::Unbalanced('{'))?;
                    let name = &after[..end];
                    parts.push(Part::Value(match name {
                        "trace_id" => Placeholder::TraceId,
                        "service" => Placeholder::Service,
                        "from" => Placeholder::From,
                        "to" => Placeholder::To,
                        other => return Err(TemplateError::UnknownPlaceholder(other.to_owned())),
                    }));
                    rest = &after[end + 1..];
                }
            }
        }
        let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            return Err(TemplateError::NotHttp(text.to_owned()));
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The link for `vars`, each value percent-encoded.
    pub fn render(&self, vars: &LinkVars<'_>) -> String {
        let mut out = String::with_capacity(self.text.len() + 64);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(Placeholder::TraceId) => encode_into(&mut out, vars.trace_id),
                Part::Value(Placeholder::Service) => encode_into(&mut out, vars.service),
                Part::Value(Placeholder::From) => out.push_str(&vars.from_ms.to_string()),
                Part::Value(Placeholder::To) => out.push_str(&vars.to_ms.to_string()),
            }
        }
        out
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// `value` percent-encoded as [`LinkTemplate::render`] encodes a
/// placeholder's value (for building a template's JSON part).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    encode_into(&mut out, value);
    out
}

impl FromStr for LinkTemplate {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for LinkTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for LinkTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for LinkTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What a service makes its trace and log links from: the two templates
/// (either may be absent: no such link) and its own `service.name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceLinks {
    /// `trace_url_template`.
    pub trace: Option<LinkTemplate>,
    /// `logs_url_template`.
    pub logs: Option<LinkTemplate>,
    /// `{service}`.
    pub service: String,
}

/// One trace's links, as a page or a JSON answer shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Links {
    pub trace_url: Option<String>,
    pub logs_url: Option<String>,
}

impl TraceLinks {
    /// Reads the two settings: an empty (or blank) template means no such
    /// link; a bad one is an error naming its setting (`trace_key` or
    /// `logs_key`).
    pub fn from_settings(
        (trace_key, trace): (&str, &str),
        (logs_key, logs): (&str, &str),
        service: &str,
    ) -> Result<Self, String> {
        let parse = |key: &str, text: &str| {
            let text = text.trim();
            (!text.is_empty())
                .then(|| LinkTemplate::parse(text).map_err(|e| format!("{key}: {e}")))
                .transpose()
        };
        Ok(Self {
            trace: parse(trace_key, trace)?,
            logs: parse(logs_key, logs)?,
            service: service.to_owned(),
        })
    }

    /// The links of the trace a `traceparent` names, over `start_ms` to
    /// `end_ms` (Unix ms; the end of what still runs is now), widened by
    /// [`LinkVars::MARGIN_MS`] each side. No links without a valid trace id.
    pub fn of(&self, traceparent: Option<&str>, start_ms: i64, end_ms: i64) -> Links {
        let Some(trace_id) = traceparent.and_then(trace_id_of) else {
            return Links::default();
        };
        let vars = LinkVars {
            trace_id,
            service: &self.service,
            from_ms: start_ms.saturating_sub(LinkVars::MARGIN_MS),
            to_ms: end_ms.max(start_ms).saturating_add(LinkVars::MARGIN_MS),
        };
        Links {
            trace_url: self.trace.as_ref().map(|t| t.render(&vars)),
            logs_url: self.logs.as_ref().map(|t| t.render(&vars)),
        }
    }
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`):
/// 32 lowercase hex digits, not all zero. `None` for anything else.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut fields = traceparent.trim().split('-');
    let (_version, trace_id) = (fields.next()?, fields.next()?);
    let hex = trace_id.len() == 32
        && trace_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && trace_id.bytes().any(|b| b != b'0')).then_some(trace_id)
}

/// Grafana Explore URLs for the datasources Sextant ships
/// (deploy/grafana/provisioning/datasources/sextant.yaml: Tempo `tempo`,
/// Loki `loki`), in Grafana's documented form `GRAFANA/explore?panes=
/// <URL-encoded JSON>&schemaVersion=1&orgId=1`, with `{trace_id}`,
/// `{service}`, `{from}` and `{to}` left in for [`LinkTemplate::render`].
pub mod grafana {
    /// The Grafana of deploy/compose.
    pub const BASE: &str = "http://127.0.0.1:3000";

    /// The trace in Tempo (a TraceQL query of the trace id).
    pub fn tempo_trace(base: &str) -> String {
        explore(
            base,
            "tempo",
            r#"{"refId":"A","datasource":{"type":"tempo","uid":"tempo"},"queryType":"traceql","query":"{trace_id}"}"#,
        )
    }

    /// The service's log lines of the trace in Loki (OTLP logs: the
    /// `service_name` label, the `trace_id` structured metadata).
    pub fn loki_logs(base: &str) -> String {
        explore(
            base,
            "loki",
            r#"{"refId":"A","datasource":{"type":"loki","uid":"loki"},"queryType":"range","expr":"{service_name=\"{service}\"} | trace_id=\"{trace_id}\""}"#,
        )
    }

    /// One Explore pane on `datasource` with `query`, over `{from}`–`{to}`.
    fn explore(base: &str, datasource: &str, query: &str) -> String {
        let panes = format!(
            r#"{{"sextant":{{"datasource":"{datasource}","queries":[{query}],"range":{{"from":"{{from}}","to":"{{to}}"}}}}}}"#
        );
        format!(
            "{}/explore?panes={}&schemaVersion=1&orgId=1",
            base.trim_end_matches('/'),
            encode_keeping_placeholders(&panes)
        )
    }

    /// Percent-encodes `json` except the placeholders, which stay for the
    /// template.
    fn encode_keeping_placeholders(json: &str) -> String {
        let mut out = String::new();
        let mut rest = json;
        loop {
            let next = super::PLACEHOLDERS
                .iter()
                .filter_map(|p| rest.find(&format!("{{{p}}}")).map(|i| (i, *p)))
                .min();
            match next {
                Some((i, p)) => {
                    out.push_str(&super::percent_encode(&rest[..i]));
                    out.push('{');
                    out.push_str(p);
                    out.push('}');
                    rest = &rest[i + p.len() + 2..];
                }
                None => {
                    out.push_str(&super::percent_encode(rest));
                    return out;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn vars() -> LinkVars<'static> {
        LinkVars {
            trace_id: TRACE,
            service: "sextant orchestrator",
            from_ms: 1_700_000_000_000,
            to_ms: 1_700_000_600_000,
        }
    }

    #[test]
    fn placeholders_are_filled_and_encoded() {
        let t = LinkTemplate::parse(
            "https://t.example/x?trace={trace_id}&svc={service}&from={from}&to={to}&lit=%7Bx%7D",
        )
        .unwrap();
        assert_eq!(
            t.render(&vars()),
            format!(
                "https://t.example/x?trace={TRACE}&svc=sextant%20orchestrator&from=1700000000000&to=1700000600000&lit=%7Bx%7D"
            )
        );
        // A template without placeholders is a fixed link.
        let fixed = LinkTemplate::parse("http://a/b").unwrap();
        assert_eq!(fixed.render(&vars()), "http://a/b");
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let e = LinkTemplate::parse("http://a/{trace}").unwrap_err();
        assert_eq!(e, TemplateError::UnknownPlaceholder("trace".into()));
        assert!(e.to_string().contains("{trace}"), "{e}");
        assert_eq!(
            LinkTemplate::parse("http://a/{trace_id").unwrap_err(),
            TemplateError::Unbalanced('{')
        );
        assert_eq!(
            LinkTemplate::parse("http://a/}").unwrap_err(),
            TemplateError::Unbalanced('}')
        );
        assert!(matches!(
            LinkTemplate::parse("ftp://a/{trace_id}"),
            Err(TemplateError::NotHttp(_))
        ));
        // Through serde, as a settings file reads it.
        let e = serde_json::from_str::<LinkTemplate>(r#""http://a/{nope}""#).unwrap_err();
        assert!(e.to_string().contains("{nope}"), "{e}");
    }

    #[test]
    fn trace_ids_come_from_traceparents() {
        assert_eq!(
            trace_id_of(&format!("00-{TRACE}-00f067aa0ba902b7-01")),
            Some(TRACE)
        );
        assert_eq!(trace_id_of("00-0000000000000000000000000000000-x-01"), None);
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            trace_id_of("00-4BF92F3577B34DA6A3CE929D0E0E4736-1-01"),
            None
        );
        assert_eq!(trace_id_of(""), None);
    }

    #[test]
    fn trace_links_widen_the_window_and_skip_unknown_traces() {
        let links = TraceLinks::from_settings(
            ("trace_url_template", "http://t/{trace_id}?f={from}&t={to}"),
            ("logs_url_template", ""),
            "svc",
        )
        .unwrap();
        let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
        let got = links.of(Some(&tp), 1_000_000, 2_000_000);
        assert_eq!(
            got.trace_url.as_deref(),
            Some(format!("http://t/{TRACE}?f=700000&t=2300000").as_str())
        );
        assert_eq!(got.logs_url, None);
        assert_eq!(links.of(None, 0, 0), Links::default());
        assert_eq!(links.of(Some("garbage"), 0, 0), Links::default());
        let e = TraceLinks::from_settings(("trace_url_template", "http://t/{x}"), ("l", ""), "s")
            .unwrap_err();
        assert!(
            e.starts_with("trace_url_template: unknown placeholder {x}"),
            "{e}"
        );
    }

    /// The shipped defaults: Grafana's Explore URL with the pane JSON
    /// URL-encoded, the datasource uids of deploy/grafana, and the values
    /// in place.
    #[test]
    fn grafana_defaults_are_explore_urls() {
        let tempo = LinkTemplate::parse(&grafana::tempo_trace(grafana::BASE)).unwrap();
        let link = tempo.render(&vars());
        let url = url::Url::parse(&link).unwrap();
        assert_eq!(url.path(), "/explore");
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["schemaVersion"], "1");
        assert_eq!(query["orgId"], "1");
        let panes: serde_json::Value = serde_json::from_str(&query["panes"]).unwrap();
        let pane = &panes["sextant"];
        assert_eq!(pane["datasource"], "tempo");
        assert_eq!(pane["queries"][0]["datasource"]["uid"], "tempo");
        assert_eq!(pane["queries"][0]["query"], TRACE);
        assert_eq!(pane["range"]["from"], "1700000000000");
        assert_eq!(pane["range"]["to"], "1700000600000");

        let loki = LinkTemplate::parse(&grafana::loki_logs(grafana::BASE)).unwrap();
        let url = url::Url::parse(&loki.render(&vars())).unwrap();
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        let panes: serde_json::Value = serde_json::from_str(&query["panes"]).unwrap();
        assert_eq!(panes["sextant"]["datasource"], "loki");
        assert_eq!(
            panes["sextant"]["queries"][0]["expr"],
            format!(r#"{{service_name="sextant orchestrator"}} | trace_id="{TRACE}""#)
        );
    }
}
