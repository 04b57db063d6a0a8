#!/usr/bin/env python3
"""An OTLP/HTTP traces receiver for Nimbus's OpenTelemetry test.

Independent of Nimbus: it decodes each `POST /v1/traces` with the
OpenTelemetry project's own protobuf definitions (`opentelemetry-proto` from
PyPI), answers as a collector does, and serves what it received as JSON at
`GET /spans`:

    python3 tests/otlp/receiver.py        # prints "listening on PORT"
    python3 tests/otlp/receiver.py --discard   # benchmarks: answer, keep nothing
    python3 tests/otlp/receiver.py --tls CERT KEY   # HTTPS, with this PEM
                                                    # certificate chain and key

Each span is {trace_id, span_id, parent_span_id (hex, "" for none), name,
kind (OTLP's number: 2 server, 5 consumer), attributes, events: [{name,
attributes}], status_code, status_message, resource (attributes), scope}.
"""

import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

SPANS = []
LOCK = threading.Lock()
DISCARD = "--discard" in sys.argv[1:]
TLS = sys.argv[sys.argv.index("--tls") + 1 :][:2] if "--tls" in sys.argv else None


def value(any_value):
    """An OTLP AnyValue as a plain Python value."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    return getattr(any_value, kind) if kind else None


def attributes(key_values):
    return {kv.key: value(kv.value) for kv in key_values}


def spans_of(request):
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": span.kind,
                    "start_unix_nano": span.start_time_unix_nano,
                    "end_unix_nano": span.end_time_unix_nano,
                    "attributes": attributes(span.attributes),
                    "events": [
                        {"name": e.name, "attributes": attributes(e.attributes)}
                        for e in span.events
                    ],
                    "status_code": span.status.code,
                    "status_message": span.status.message,
                    "resource": resource,
                    "scope": scope_spans.scope.name,
                }


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        if self.headers.get("content-type") != "application/x-protobuf":
            self.send_error(415, "expected application/x-protobuf")
            return
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if not DISCARD:
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            with LOCK:
                SPANS.extend(spans_of(request))
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self):
        if self.path != "/spans":
            self.send_error(404)
            return
        with LOCK:
            body = json.dumps(SPANS).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if TLS:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*TLS)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
