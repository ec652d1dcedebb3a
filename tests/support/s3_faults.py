"""An HTTP proxy between dala-server and an S3 store that misbehaves on demand, for the fault tests.

Each request is read whole, passed to the store with its headers unchanged (the Host header too: SigV4
signs it), and its answer passed back, unless the proxy's mode says otherwise:
  "pass"    forwards;
  "refuse"  closes every connection at once, without an answer;
  "stall"   reads the request and answers nothing (until the mode changes, at most 120 s);
  "5xx"     answers 503 SlowDown;
  "etag"    forwards, but the ETag the store answers for a part or an object written is changed;
  "flip"    forwards, but one byte in the middle of a part or an object written is changed on the way;
  "fakeok"  answers a multipart upload's completion 200 without passing it on (a store that loses it).
`counts` tells how many requests each mode met.
"""
import http.client
import http.server
import threading
import time


class FaultyS3:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.counts = {}
        self._armed = None  # (mode, requests still passed before it)
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                with proxy._lock:
                    if proxy._armed is not None:
                        if proxy._armed[1] <= 0:
                            proxy.mode, proxy._armed = proxy._armed[0], None
                        else:
                            proxy._armed = (proxy._armed[0], proxy._armed[1] - 1)
                    mode = proxy.mode
                    proxy.counts[mode] = proxy.counts.get(mode, 0) + 1
                if mode == "refuse":
                    self.close_connection = True
                    self.connection.close()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if mode == "stall":
                    end = time.time() + 120
                    while proxy.mode == "stall" and time.time() < end:
                        time.sleep(0.1)
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "5xx":
                    msg = b"<Error><Code>SlowDown</Code><Message>fault test</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if mode == "fakeok" and self.command == "POST" and "uploadId=" in self.path:
                    msg = b"<CompleteMultipartUploadResult><ETag>&quot;0-1&quot;</ETag></CompleteMultipartUploadResult>"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if mode == "flip" and self.command == "PUT" and body:
                    body = bytearray(body)
                    body[len(body) // 2] ^= 0x01
                    body = bytes(body)
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in ("expect", "connection", "content-length"):
                        conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status, r.reason)
                writes = self.command == "PUT"
                for name, value in r.getheaders():
                    if name.lower() in ("connection", "transfer-encoding"):
                        continue
                    if name.lower() == "content-length":
                        if self.command == "HEAD":  # the object's size, though no body follows
                            self.send_header(name, value)
                        continue
                    if mode == "etag" and writes and name.lower() == "etag":
                        value = '"' + "0" * 32 + '"'
                    self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def arm(self, mode, after):
        """Passes `after` more requests, then takes `mode` (mid-upload: after its first parts)."""
        with self._lock:
            self.mode, self._armed = "pass", (mode, after)

    def set(self, mode):
        with self._lock:
            self.mode, self._armed = mode, None

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.mode = "pass"
        self.server.shutdown()
        self.server.server_close()
