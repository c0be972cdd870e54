#!/usr/bin/env python3
"""Send deployment events to an OTLP endpoint with the OpenTelemetry Python SDK.

Sextant's end-to-end tests use this as a real OTLP client it did not write.
It reads a JSON list of items from stdin:

    [{"kind": "log", "resource": {...}, "attributes": {...},
      "event_name": "sextant.deployment.observed", "body": "...",
      "time_unix_nano": 1700000000000000000},
     {"kind": "gauge", "resource": {...}, "attributes": {...}, "value": 1}]

Log items become LogRecords (with `event_name` in the record field, or in an
`event.name` attribute when the item says so); gauge items become data points
of the synchronous gauge `sextant.deployment.observed`. Items are grouped by
resource, one provider per resource, and exported through the SDK's OTLP
exporters over gRPC or HTTP/protobuf. The script exits 1 when any export
fails.
"""

import argparse
import json
import sys

from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

GAUGE_NAME = "sextant.deployment.observed"


def exporters(protocol, endpoint, headers, gzip):
    """The SDK's OTLP log and metric exporter classes and their arguments."""
    if protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        common = dict(
            endpoint=endpoint,
            # https:// takes the CA and client certificate from the
            # standard OTEL_EXPORTER_OTLP_CERTIFICATE, _CLIENT_KEY and
            # _CLIENT_CERTIFICATE variables.
            insecure=not endpoint.startswith("https://"),
            headers=headers,
            timeout=10,
            compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression,
        )
        return (OTLPLogExporter, dict(common)), (OTLPMetricExporter, dict(common))

    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    base = endpoint.rstrip("/")
    common = dict(
        headers=headers,
        timeout=10,
        compression=Compression.Gzip if gzip else Compression.NoCompression,
    )
    return (
        (OTLPLogExporter, dict(common, endpoint=f"{base}/v1/logs")),
        (OTLPMetricExporter, dict(common, endpoint=f"{base}/v1/metrics")),
    )


def checked(cls, failures):
    """A subclass of an SDK exporter that records failed exports."""

    class Checked(cls):
        def export(self, batch, *args, **kwargs):
            result = super().export(batch, *args, **kwargs)
            if result not in (LogRecordExportResult.SUCCESS, MetricExportResult.SUCCESS):
                failures.append(f"{cls.__module__}.{cls.__name__}: {result}")
            return result

    return Checked


def send(items, protocol, endpoint, headers, gzip):
    (log_cls, log_args), (metric_cls, metric_args) = exporters(protocol, endpoint, headers, gzip)
    failures = []
    log_exporter = checked(log_cls, failures)
    metric_exporter = checked(metric_cls, failures)

    groups = {}
    for item in items:
        key = json.dumps(item.get("resource", {}), sort_keys=True)
        groups.setdefault(key, []).append(item)

    for key, group in groups.items():
        resource = Resource.create(json.loads(key))
        logs = [i for i in group if i.get("kind", "log") == "log"]
        gauges = [i for i in group if i.get("kind") == "gauge"]
        if logs:
            provider = LoggerProvider(resource=resource)
            provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter(**log_args)))
            logger = provider.get_logger("sextant-e2e")
            for item in logs:
                attributes = dict(item.get("attributes", {}))
                event_name = item.get("event_name")
                if item.get("event_name_attribute"):
                    attributes["event.name"] = event_name
                    event_name = None
                logger.emit(
                    LogRecord(
                        timestamp=item.get("time_unix_nano"),
                        body=item.get("body"),
                        attributes=attributes,
                        event_name=event_name,
                    )
                )
            provider.shutdown()
        if gauges:
            reader = PeriodicExportingMetricReader(
                metric_exporter(**metric_args), export_interval_millis=3_600_000
            )
            provider = MeterProvider(resource=resource, metric_readers=[reader])
            gauge = provider.get_meter("sextant-e2e").create_gauge(GAUGE_NAME)
            for item in gauges:
                gauge.set(item.get("value", 1), attributes=item.get("attributes", {}))
            provider.shutdown()
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--protocol", choices=["grpc", "http"], required=True)
    parser.add_argument("--token", help="sent as Authorization: Bearer TOKEN")
    parser.add_argument("--gzip", action="store_true", help="compress requests")
    args = parser.parse_args()

    items = json.load(sys.stdin)
    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    failures = send(items, args.protocol, args.endpoint, headers, args.gzip)
    if failures:
        print("export failed: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"sent {len(items)} items over {args.protocol}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
