"""The front of the local Google Cloud Storage stand-in (tools/gcs): what TensorFlow's and Beam's GCS
clients need from storage.googleapis.com that the emulator behind it (fake-gcs-server) does not give.

Clients reach it two ways, both set by the environment `tools/gcs env` prints:

* TensorFlow's GCS file system has Google's endpoints compiled in (gcs_file_system.cc: kGcsUriBase
  https://www.googleapis.com/storage/v1/, kStorageHost storage.googleapis.com) and talks HTTPS through
  libcurl, which honours `https_proxy`. So this is that proxy: a CONNECT to a Google storage host is
  answered here, and the TLS inside it terminated with a certificate of the stand-in's own CA (the
  client trusts it through CURL_CA_BUNDLE). Any other host is refused: nothing leaves the machine.
* google-cloud-storage (Beam's gcsio) honours STORAGE_EMULATOR_HOST and speaks plain HTTP to it.

Either way each request goes on to the emulator, with three repairs:

* A chunked request body is de-chunked (TensorFlow's uploads are chunked; the emulator's Go server
  answers 501 "Unsupported transfer encoding").
* A `Location` (the session URL of a resumable upload) names the host and scheme the client used,
  not the emulator's.
* `POST /batch/storage/v1` (the JSON API's batch endpoint: multipart/mixed of application/http
  requests, answered in the same order; cloud.google.com/storage/docs/batch) is carried out here,
  one sub-request at a time: Beam finalizes every file it writes with a batch of copies and
  deletes, and the emulator has no batch endpoint.

Standard library only; one thread per connection.
"""
from __future__ import annotations

import argparse
import email.parser
import http.client
import http.server
import logging
import socketserver
import ssl
import urllib.parse
import uuid

log = logging.getLogger("gcs-gateway")

GOOGLE_STORAGE_HOSTS = {"www.googleapis.com", "storage.googleapis.com", "oauth2.googleapis.com"}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "expect", "content-length"}
BATCH_PATH = "/batch/storage/v1"


class Gateway(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], upstream: tuple[str, int], tls: ssl.SSLContext) -> None:
        super().__init__(address, Handler)
        self.upstream, self.tls = upstream, tls


def forward(server: Gateway, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
            client_base: str) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """One request to the emulator; the answer with hop-by-hop headers dropped and `Location`
    pointing back at the client's own base URL."""
    connection = http.client.HTTPConnection(*server.upstream, timeout=300)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                connection.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        payload = response.read()
        # The emulator builds a session URL from the Host header it got (or its -external-url),
        # always as http://: it goes back to the client as its own scheme and host.
        ours = {"%s:%d" % server.upstream, urllib.parse.urlsplit(client_base).netloc}
        answer = []
        for name, value in response.getheaders():
            location = urllib.parse.urlsplit(value) if name.lower() == "location" else None
            if location and location.netloc in ours:
                value = client_base + urllib.parse.urlunsplit(("", "", location.path, location.query, ""))
            if name.lower() not in HOP_BY_HOP or (method == "HEAD" and name.lower() == "content-length"):
                answer.append((name, value))
        return response.status, response.reason, answer, payload
    finally:
        connection.close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Gateway
    scheme = "http"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    # --- the proxy: TLS for Google's storage hosts --------------------------------------------
    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        if host not in GOOGLE_STORAGE_HOSTS or port != "443":
            self.send_error(403, f"the GCS stand-in only answers for {sorted(GOOGLE_STORAGE_HOSTS)}")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.connection, self.scheme = connection, "https"
        self.rfile = connection.makefile("rb")
        self.wfile = socketserver._SocketWriter(connection)
        self.close_connection = False   # the client's requests follow on this connection

    # --- everything else goes on to the emulator ----------------------------------------------
    def body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):   # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def relay(self) -> None:
        body = self.body()
        base = f"{self.scheme}://{self.headers.get('Host', '')}"
        target = self.path
        if target.startswith(("http://", "https://")):   # absolute form, as a plain-HTTP proxy gets it
            parts = urllib.parse.urlsplit(target)
            target = urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))
        if self.command == "POST" and urllib.parse.urlsplit(target).path == BATCH_PATH:
            status, reason, headers, payload = self.batch(body, base)
        else:
            status, reason, headers, payload = forward(self.server, self.command, target,
                                                       self.headers.items(), body, base)
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = relay

    def batch(self, body: bytes, base: str) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """The batch endpoint: each application/http part carried out in turn, answered in order."""
        envelope = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + self.headers.get("Content-Type", "").encode() + b"\r\n\r\n" + body)
        if not envelope.is_multipart():
            return 400, "Bad Request", [("Content-Type", "text/plain")], b"a batch is multipart/mixed"
        boundary = f"batch_{uuid.uuid4().hex}"
        out = []
        for number, part in enumerate(envelope.get_payload(), 1):
            request_line, _, rest = part.get_payload().partition("\n")
            method, uri, _ = request_line.strip().split(" ", 2)
            inner = email.parser.Parser().parsestr(rest)
            sub_body = (inner.get_payload() or "").encode()
            parts = urllib.parse.urlsplit(uri)
            status, reason, headers, payload = forward(
                self.server, method, urllib.parse.urlunsplit(("", "", parts.path, parts.query, "")),
                [(k, v) for k, v in inner.items()] + [("Host", self.headers.get("Host", ""))],
                sub_body, base)
            content_id = part.get("Content-ID", f"<{number}>").strip("<>")
            lines = [f"--{boundary}", "Content-Type: application/http", f"Content-ID: <response-{content_id}>",
                     "", f"HTTP/1.1 {status} {reason}"]
            lines += [f"{k}: {v}" for k, v in headers]
            lines += [f"Content-Length: {len(payload)}", "", payload.decode("utf-8", "replace")]
            out.append("\r\n".join(lines))
        out.append(f"--{boundary}--\r\n")
        return 200, "OK", [("Content-Type", f"multipart/mixed; boundary={boundary}")], "\r\n".join(out).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:4480", help="host:port of this gateway")
    parser.add_argument("--upstream", default="127.0.0.1:4443", help="host:port of fake-gcs-server (HTTP)")
    parser.add_argument("--cert", required=True, help="PEM certificate for Google's storage hosts")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    host, port = args.listen.rsplit(":", 1)
    up_host, up_port = args.upstream.rsplit(":", 1)
    server = Gateway((host, int(port)), (up_host, int(up_port)), tls)
    log.info("listening on %s, emulator at %s", args.listen, args.upstream)
    server.serve_forever()


if __name__ == "__main__":
    main()
