use super::*;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use sextant_model::AttributeSource;
use sextant_model::UnixNanos;

/// The default window: five minutes ahead of now.
fn window() -> TimeWindow {
    TimeWindow::now(std::time::Duration::from_secs(300))
}

fn logs_json(json: &str) -> ExportLogsServiceRequest {
    serde_json::from_str(json).expect("valid OTLP JSON")
}

fn kv(key: &str, value: &str) -> String {
    format!(r#"{{"key":"{key}","value":{{"stringValue":"{value}"}}}}"#)
}

fn observed_attrs(status: &str) -> String {
    [
        kv("sextant.application", "shop"),
        kv("sextant.workload", "checkout"),
        kv("deployment.environment.name", "stage"),
        kv("sextant.target", "eu"),
        kv("sextant.revision", "sha256:aa"),
        kv("deployment.status", status),
    ]
    .join(",")
}

#[test]
fn event_name_field_or_attribute_and_record_wins_over_resource() {
    let json = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{host},{env}]}},"scopeLogs":[{{"logRecords":[
            {{"eventName":"sextant.deployment.observed","timeUnixNano":"1000","attributes":[{a}]}},
            {{"observedTimeUnixNano":"2000","body":{{"stringValue":"crash loop"}},"attributes":[{b},{name}]}},
            {{"body":{{"stringValue":"an ordinary log line"}}}}
        ]}}]}}]}}"#,
        host = kv("host.name", "h1"),
        env = kv("deployment.environment.name", "prod"),
        a = observed_attrs("succeeded"),
        b = observed_attrs("failed"),
        name = kv("event.name", "sextant.deployment.observed"),
    );
    let out = logs(&logs_json(&json), window());
    assert_eq!(out.ignored, 1);
    assert_eq!(out.rejected_total(), 0);
    assert_eq!(out.events.len(), 2);
    let DeploymentEvent::Observed(first) = &out.events[0] else {
        panic!("observed")
    };
    assert_eq!(first.host, "h1");
    assert_eq!(
        first.placement.environment, "stage",
        "record attribute wins"
    );
    assert_eq!(first.observed_at, UnixNanos(1000));
    let DeploymentEvent::Observed(second) = &out.events[1] else {
        panic!("observed")
    };
    assert_eq!(
        second.observed_at,
        UnixNanos(2000),
        "observed time when time is 0"
    );
    assert_eq!(second.message.as_deref(), Some("crash loop"));
}

#[test]
fn a_bad_event_is_rejected_alone_with_its_location() {
    let json = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{host}]}},"scopeLogs":[{{"logRecords":[
            {{"eventName":"sextant.deployment.observed","attributes":[{ok}]}},
            {{"eventName":"sextant.deployment.observed","attributes":[{bad}]}},
            {{"eventName":"sextant.deployment.desired","attributes":[{ok}]}}
        ]}}]}}]}}"#,
        host = kv("host.name", "h1"),
        ok = observed_attrs("succeeded"),
        bad = observed_attrs("done"),
    );
    let out = logs(&logs_json(&json), window());
    assert_eq!(out.events.len(), 1);
    assert_eq!(
        out.rejected,
        vec![("invalid_attribute", 1), ("missing_attribute", 1)]
    );
    assert_eq!(
        out.error_message(),
        "2 deployment events rejected; first: resourceLogs[0].scopeLogs[0].logRecords[1]: \
         sextant.deployment.observed attribute `deployment.status` has invalid value \"done\" \
         (expected succeeded, failed or in_progress)"
    );
}

#[test]
fn non_string_attribute_is_rejected() {
    let json = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[
            {{"eventName":"sextant.deployment.observed","attributes":[{a},
              {{"key":"host.name","value":{{"arrayValue":{{"values":[]}}}}}}]}}
        ]}}]}}]}}"#,
        a = observed_attrs("succeeded"),
    );
    let out = logs(&logs_json(&json), window());
    assert!(
        out.error_message()
            .contains("`host.name` must be a string, not an array"),
        "{}",
        out.error_message()
    );
}

#[test]
fn gauges_become_observations_and_other_metrics_are_ignored() {
    let json = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{host}]}},"scopeMetrics":[{{"metrics":[
            {{"name":"sextant.deployment.observed","gauge":{{"dataPoints":[
                {{"asInt":"1","timeUnixNano":"5","attributes":[{a}]}},
                {{"asDouble":0,"timeUnixNano":"5","attributes":[{a}]}}
            ]}}}},
            {{"name":"process.cpu.time","sum":{{"dataPoints":[{{"asDouble":1.5}},{{"asDouble":2}}]}}}}
        ]}}]}}]}}"#,
        host = kv("host.name", "h9"),
        a = observed_attrs("in_progress"),
    );
    let request: ExportMetricsServiceRequest = serde_json::from_str(&json).expect("valid");
    let out = metrics(&request, window(), &Reconcilers::default(), "default");
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.ignored, 2);
    assert_eq!(out.rejected, vec![("invalid_value", 1)]);
    let DeploymentEvent::Observed(o) = &out.events[0] else {
        panic!("observed")
    };
    assert_eq!((o.host.as_str(), o.observed_at), ("h9", UnixNanos(5)));
}

#[test]
fn event_times_beyond_i64_or_the_skew_window_are_refused() {
    let w = TimeWindow {
        now: UnixNanos(1_000_000_000_000),
        max_ahead: std::time::Duration::from_secs(300),
    };
    assert_eq!(w.event_time(0, 0), Ok(w.now), "no time: the receive time");
    assert_eq!(w.event_time(0, 7), Ok(UnixNanos(7)), "observed time");
    assert_eq!(w.event_time(5, 7), Ok(UnixNanos(5)), "own time first");
    let edge = 1_000_000_000_000 + 300_000_000_000;
    assert_eq!(w.event_time(edge, 0), Ok(UnixNanos(edge as i64)));
    let err = w
        .event_time(edge + 1, 0)
        .expect_err("past the window")
        .to_string();
    assert!(
        err.contains("timeUnixNano") && err.contains("clock-skew"),
        "{err}"
    );
    let err = w
        .event_time(u64::MAX, 0)
        .expect_err("beyond i64")
        .to_string();
    assert!(err.contains("beyond 2262"), "{err}");
    let err = w
        .event_time(0, i64::MAX as u64 + 1)
        .expect_err("beyond i64")
        .to_string();
    assert!(err.starts_with("observedTimeUnixNano"), "{err}");
}

#[test]
fn numbers_and_booleans_are_not_strings() {
    for (value, kind) in [
        (r#"{"intValue":"42"}"#, "an integer"),
        (r#"{"boolValue":true}"#, "a boolean"),
        (r#"{"doubleValue":1.5}"#, "a double"),
        (r#"{"bytesValue":"AA=="}"#, "bytes"),
    ] {
        let json = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[
                {{"eventName":"sextant.deployment.observed","attributes":[{a},
                  {{"key":"host.name","value":{value}}}]}}
            ]}}]}}]}}"#,
            a = observed_attrs("succeeded"),
        );
        let out = logs(&logs_json(&json), window());
        assert_eq!(out.rejected, vec![("invalid_attribute", 1)], "{value}");
        assert!(
            out.error_message()
                .contains(&format!("`host.name` must be a string, not {kind}")),
            "{}",
            out.error_message()
        );
    }
}

mod properties {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use proptest::prelude::*;

    use super::*;

    fn any_value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            any::<String>().prop_map(|s| Some(Value::StringValue(s))),
            any::<i64>().prop_map(|i| Some(Value::IntValue(i))),
            any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
            any::<f64>().prop_map(|d| Some(Value::DoubleValue(d))),
            any::<Vec<u8>>().prop_map(|b| Some(Value::BytesValue(b))),
            Just(Some(Value::ArrayValue(ArrayValue::default()))),
            Just(Some(Value::KvlistValue(KeyValueList::default()))),
            any::<i32>().prop_map(|i| Some(Value::StringValueStrindex(i))),
        ]
    }

    proptest! {
        /// Only a string is text; anything else is refused with its kind.
        #[test]
        fn only_strings_are_text(record in any_value(), resource in any_value()) {
            let kv = |v: &Option<Value>| KeyValue {
                key: "k".into(),
                value: Some(AnyValue { value: v.clone() }),
                ..Default::default()
            };
            let (r, res) = ([kv(&record)], [kv(&resource)]);
            let merged = Merged { record: &r, resource: &res };
            match (&record, merged.text("k")) {
                (Some(Value::StringValue(s)), Ok(Some(t))) => prop_assert_eq!(s, &t),
                (Some(Value::StringValue(_)), other) => prop_assert!(false, "{other:?}"),
                (None, Ok(None)) => {}
                (None, other) => prop_assert!(false, "an empty value is absent: {other:?}"),
                (Some(_), Err(problem)) => prop_assert!(problem.to_string().starts_with("must be a string, not ")),
                (Some(_), Ok(v)) => prop_assert!(false, "{v:?}"),
            }
        }

        /// A time taken is within the window and what `i64` holds; a time
        /// refused names its field.
        #[test]
        fn event_times_are_in_the_window_or_refused(time in any::<u64>(), observed in any::<u64>(), now in 0i64..i64::MAX / 2, ahead in 0u64..1_000_000) {
            let w = TimeWindow { now: UnixNanos(now), max_ahead: std::time::Duration::from_secs(ahead) };
            match w.event_time(time, observed) {
                Ok(at) => {
                    prop_assert!(at.0 >= 0);
                    prop_assert!(at.0 as i128 <= now as i128 + ahead as i128 * 1_000_000_000);
                    prop_assert!(at.0 as u64 == time || (time == 0 && (at.0 as u64 == observed || (observed == 0 && at == w.now))));
                }
                Err(e) => prop_assert!(e.to_string().starts_with("timeUnixNano") || e.to_string().starts_with("observedTimeUnixNano"), "{e}"),
            }
        }
    }
}
