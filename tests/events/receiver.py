"""A webhook receiver for the event-center tests: HTTPS on 127.0.0.1, each POST appended to a file as
one JSON line (headers and body), answered 200.

Usage: python3 receiver.py PORT CERT KEY OUT_FILE
"""
import http.server
import json
import ssl
import sys

port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = min(int(self.headers.get("content-length", "0")), 1 << 20)
        body = self.rfile.read(length).decode("utf-8", "replace")
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}) + "\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
