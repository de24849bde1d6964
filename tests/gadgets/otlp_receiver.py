"""An OTLP/HTTP receiver for the export tests: POST /v1/metrics and
/v1/logs decoded with OpenTelemetry's own generated messages
(opentelemetry-proto), one JSON line per request on stdout:
{"path": ..., "at": unix seconds, "request": the message as JSON}.
Usage: otlp_receiver.py PORT. Prints "listening" once it is."""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

KINDS = {
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        kind = KINDS.get(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if kind is None or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(404)
            self.end_headers()
            return
        req = kind[0]()
        req.ParseFromString(body)
        line = {
            "path": self.path,
            "at": time.time(),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "request": MessageToDict(req, preserving_proto_field_name=True),
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        out = kind[1]().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


class Server(HTTPServer):
    def handle_error(self, request, client_address):
        # ig gave up on a slow answer (its timeout): not the test's failure.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
print("listening", flush=True)
server.serve_forever()
