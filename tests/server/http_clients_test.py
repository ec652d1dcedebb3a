#!/usr/bin/env python3
"""dala-server's HTTP front end with clients other than Dala's own: connection persistence as RFC 9112
section 9.3 says for HTTP/1.0 and 1.1 (ApacheBench with and without -k; raw requests with and without
keep-alive or close, also on the upload path and for early answers), a plain 404 for paths it does not
serve, phones delivering reports with an attachment through nginx as a reverse proxy (HTTP/1.1 with
upstream keep-alive, and nginx's default HTTP/1.0), and the request log's format (ISO 8601 UTC times, a
level on every line, one line per request, no client address). Every wait is bounded: a connection left
hanging is a failure, not a stuck run. Usage: http_clients_test.py BIN_DIR"""
import datetime
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
from harness import ENV, check_delivered, free_port, run, wait_port  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# Longer than any wait below: a connection the server leaves open by mistake is seen open, not timed out.
HEADER_TIMEOUT_S = 30
failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f"  ({detail})" if detail and not ok else ""))
    if not ok:
        failures.append(what)


def ab(url, *flags, n=200):
    """ApacheBench's counts for n GETs of url, 4 at a time; each answer waited for at most 5 s."""
    p = subprocess.run(["ab", *flags, "-s", "5", "-n", str(n), "-c", "4", url], capture_output=True, text=True,
                       timeout=120)
    counts = {k: int(v) for k, v in re.findall(r"^(Complete requests|Failed requests|Keep-Alive requests|"
                                                 r"Non-2xx responses):\s+(\d+)", p.stdout, re.M)}
    return p.returncode, counts, (p.stdout + p.stderr)[-400:]


class Raw:
    """One TCP connection speaking HTTP by hand, every read bounded."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def answer(self):
        """(status, headers with lower-case names, body) of the next answer; None if the connection ended or
        nothing came within 5 s."""
        try:
            while b"\r\n\r\n" not in self.buf:
                got = self.s.recv(65536)
                if not got:
                    return None
                self.buf += got
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            while len(self.buf) < n:
                got = self.s.recv(65536)
                if not got:
                    return None
                self.buf += got
            body, self.buf = self.buf[:n], self.buf[n:]
            return lines[0], headers, body
        except (socket.timeout, OSError):
            return None

    def closed_by_server(self, within=3.0):
        """True if the server ends the connection within `within` seconds (and sends nothing more)."""
        self.s.settimeout(within)
        try:
            return self.s.recv(1) == b""
        except socket.timeout:
            return False
        except OSError:
            return True  # reset: closed too

    def close(self):
        self.s.close()


def persistence(port):
    """Returns how many requests were sent (for the log check)."""
    sent = 0
    health = "/v2/health"

    def tokens(headers):
        return [t.strip().lower() for t in headers.get("connection", "").split(",") if t.strip()]

    # HTTP/1.0, no keep-alive: answered, then closed.
    c = Raw(port)
    c.send(f"GET {health} HTTP/1.0\r\n\r\n".encode())
    sent += 1
    a = c.answer()
    check("1.0 without keep-alive: answered 200", a is not None and a[0].split()[1] == "200", a)
    check("1.0 without keep-alive: no 'Connection: keep-alive' in the answer",
          a is not None and "keep-alive" not in tokens(a[1]), a and a[1])
    check("1.0 without keep-alive: the server closes the connection after the answer", c.closed_by_server())
    c.close()

    # HTTP/1.0 with keep-alive: the answer says keep-alive, and the connection serves a second request.
    c = Raw(port)
    for i in range(2):
        c.send(f"GET {health} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
        sent += 1
        a = c.answer()
        check(f"1.0 with keep-alive, request {i + 1}: answered 200 with 'Connection: keep-alive' and a length",
              a is not None and a[0].split()[1] == "200" and "keep-alive" in tokens(a[1]) and
              "content-length" in a[1], a)
    check("1.0 with keep-alive: the connection stays open", not c.closed_by_server(1.0))
    # ... and a last one without keep-alive ends it.
    c.send(f"GET {health} HTTP/1.0\r\n\r\n".encode())
    sent += 1
    a = c.answer()
    check("1.0 keep-alive connection, then a request without it: answered, then closed",
          a is not None and c.closed_by_server(), a)
    c.close()

    # HTTP/1.1: persistent without Connection: close; closed with it.
    c = Raw(port)
    for i in range(2):
        c.send(f"GET {health} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sent += 1
        a = c.answer()
        check(f"1.1, request {i + 1}: answered 200 without 'Connection: close'",
              a is not None and a[0].split()[1] == "200" and "close" not in tokens(a[1]), a)
    check("1.1: the connection stays open", not c.closed_by_server(1.0))
    c.send(f"GET {health} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    sent += 1
    a = c.answer()
    check("1.1 with Connection: close: answered with 'Connection: close', then closed",
          a is not None and "close" in tokens(a[1]) and c.closed_by_server(), a)
    c.close()

    # The upload path (streamed body, read outside the HTTP parser): an empty body is read whole, so the
    # connection persists as the client asked; a refused upload whose body was not read closes it.
    bogus = "Authorization: Bearer AAAA\r\nContent-Type: application/octet-stream\r\n"
    c = Raw(port)
    c.send(f"POST /v2/upload HTTP/1.0\r\nConnection: keep-alive\r\n{bogus}Content-Length: 0\r\n\r\n".encode())
    sent += 1
    a = c.answer()
    check("upload, 1.0 with keep-alive, body read: answered with 'Connection: keep-alive'",
          a is not None and "keep-alive" in tokens(a[1]), a)
    c.send(f"GET {health} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
    sent += 1
    a = c.answer()
    check("  and the connection serves the next request", a is not None and a[0].split()[1] == "200", a)
    c.close()
    c = Raw(port)
    c.send(f"POST /v2/upload HTTP/1.0\r\n{bogus}Content-Length: 0\r\n\r\n".encode())
    sent += 1
    a = c.answer()
    check("upload, 1.0 without keep-alive: answered, then closed", a is not None and c.closed_by_server(), a)
    c.close()
    for version, extra in (("1.1", "Host: x\r\n"), ("1.0", "Connection: keep-alive\r\n")):
        c = Raw(port)
        c.send(f"POST /v2/upload HTTP/{version}\r\n{extra}{bogus}Content-Length: 100000\r\n\r\n".encode())
        sent += 1
        a = c.answer()
        check(f"upload refused early ({version}, body not sent): answered 'Connection: close', then closed",
              a is not None and a[0].split()[1].startswith("4") and "close" in tokens(a[1]) and
              "keep-alive" not in tokens(a[1]) and c.closed_by_server(), a)
        c.close()
    # An early answer on the ordinary path: a body over the limit, refused after the header.
    c = Raw(port)
    c.send(b"POST /v2/push HTTP/1.0\r\nConnection: keep-alive\r\nContent-Type: application/x-protobuf\r\n"
           b"Content-Length: 999999999\r\n\r\n")
    sent += 1
    a = c.answer()
    check("a body over the limit (1.0 keep-alive): 413 'Connection: close', then closed",
          a is not None and a[0].split()[1] == "413" and "close" in tokens(a[1]) and c.closed_by_server(), a)
    c.close()
    return sent


def not_served(port):
    """Paths the server does not serve: a short plain 404 that names nothing."""
    sent = 0
    for path in ("/", "/index.html", "/v2/", "/v2/nowhere", "/favicon.ico"):
        for method in ("GET", "POST"):
            c = Raw(port)
            c.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
            sent += 1
            a = c.answer()
            c.close()
            ok = (a is not None and a[0].split()[1] == "404" and a[1].get("content-type", "").startswith("text/plain")
                  and 0 < len(a[2]) <= 40 and a[2].isascii() and b"dala" not in a[2].lower()
                  and not any("dala" in f"{k}{v}".lower() for k, v in a[1].items()))
            check(f"{method} {path}: a short plain-text 404 naming nothing", ok, a)
    return sent


NGINX_CONF = """
{user}
worker_processes 1;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 20m;
    upstream dala {{
        server 127.0.0.1:{upstream};
        {keepalive}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://dala;
            {proxy_version}
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, work, upstream, http11):
        self.prefix = os.path.join(work, "nginx-1.1" if http11 else "nginx-1.0")
        os.makedirs(self.prefix)
        self.port = free_port()
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        conf = NGINX_CONF.format(
            user=user, prefix=self.prefix, upstream=upstream, port=self.port,
            keepalive="keepalive 8;" if http11 else "",
            proxy_version='proxy_http_version 1.1;\n            proxy_set_header Connection "";' if http11 else "")
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix, "-c", self.conf, "-e", f"{self.prefix}/error.log",
                                      "-g", f"daemon off; pid {self.prefix}/nginx.pid;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def errors(self):
        try:
            with open(os.path.join(self.prefix, "error.log"), encoding="utf-8", errors="replace") as f:
                return [line for line in f if "[error]" in line or "[crit]" in line or "[alert]" in line]
        except OSError:
            return []


def through_nginx(dala, server, work, photo):
    """Phones deliver through nginx in both upstream modes; returns (stores, requests the server saw)."""
    stores, sent = [], 0
    for http11 in (True, False):
        mode = "HTTP/1.1 keep-alive" if http11 else "HTTP/1.0 (nginx's default)"
        nginx = Nginx(work, server.port, http11)
        try:
            rc, counts, out = ab(f"http://127.0.0.1:{nginx.port}/v2/health", "-k", n=100)
            sent += counts.get("Complete requests", 0)
            check(f"nginx upstream {mode}: ab -k through it, 100 complete, 0 failed",
                  rc == 0 and counts.get("Complete requests") == 100 and counts.get("Failed requests") == 0
                  and counts.get("Non-2xx responses", 0) == 0, out)
            for i in range(2):
                store = harness.new_phone(dala, os.path.join(work, f"phone-{'11' if http11 else '10'}-{i}"),
                                          server.invite(f"http://127.0.0.1:{nginx.port}"))
                run(dala, "report", "add", "--store", store, "--form", "detention/1", "--text",
                    f"through nginx ({mode}), phone {i}", "--attach", photo, "--seal")
                run(dala, "report", "add", "--store", store, "--form", "detention/1", "--text", "a second one",
                    "--seal")
                p = subprocess.run([dala, "sync", "--store", store, "--timeout", "30", "--json"], env=ENV,
                                   capture_output=True, text=True, timeout=90)
                out = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
                check(f"nginx upstream {mode}, phone {i}: sync delivers both reports and the attachment",
                      p.returncode == 0 and out.get("delivered") == 2 and out.get("remaining") == 0,
                      f"rc {p.returncode} {p.stdout.strip()[:300]} {p.stderr.strip()[-300:]}")
                stores.append(store)
            errors = nginx.errors()
            check(f"nginx upstream {mode}: nginx logged no upstream errors", not errors, errors[:3])
            with open(os.path.join(nginx.prefix, "access.log"), encoding="utf-8") as f:
                sent += sum(1 for _ in f) - 100  # the phones' requests (ab's are counted above)
        finally:
            nginx.stop()
    return stores, sent


ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def check_log(log_path, requests, started):
    """Every line: JSON with an ISO 8601 UTC time (ms) and a level; one request line per request."""
    deadline = time.monotonic() + 15
    while True:  # a line is written once its answer went out: wait, bounded, for the last ones
        with open(log_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        n = sum(1 for line in lines if '"event":"request"' in line)
        if n >= requests or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    parsed, bad = [], []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            bad.append(line)
    check("every log line is one JSON object", lines and not bad, bad[:2])
    times_ok = all(isinstance(e.get("time"), str) and ISO_MS.match(e["time"]) for e in parsed)
    check("every log line has an ISO 8601 UTC time with milliseconds ('time')", times_ok,
          [e.get("time") for e in parsed][:3])
    check("no log line has the old epoch 'ts'", not any("ts" in e for e in parsed))
    check("every log line has a level", all(e.get("level") in ("debug", "info", "warn", "error") for e in parsed),
          [e for e in parsed if e.get("level") not in ("debug", "info", "warn", "error")][:2])
    if times_ok and parsed:
        now = datetime.datetime.now(datetime.timezone.utc)
        first = datetime.datetime.strptime(parsed[0]["time"], "%Y-%m-%dT%H:%M:%S.%f%z")
        last = datetime.datetime.strptime(parsed[-1]["time"], "%Y-%m-%dT%H:%M:%S.%f%z")
        check("the log's times are the UTC time now", started - datetime.timedelta(seconds=5) <= first <= last
              <= now + datetime.timedelta(seconds=5), (started, first, last, now))
    got = [e for e in parsed if e.get("event") == "request"]
    check("one request line per request", len(got) == requests, f"{len(got)} lines for {requests} requests")
    check("request lines hold method, path and status",
          all(isinstance(e.get("method"), str) and isinstance(e.get("path"), str) and
              isinstance(e.get("status"), int) for e in got))
    text = "\n".join(lines)
    check("the log holds no client address (no --log-client-addresses)", '"peer"' not in text and
          "127.0.0.1" not in text, text[:200])


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    for tool in ("ab", NGINX):
        if shutil.which(tool) is None:
            print(f"FAIL {tool} is not installed (tools/dev installs the operator kit)")
            return 1
    work = tempfile.mkdtemp(prefix="dala-http-clients-")
    org_key, server = harness.new_server(dala, server_bin, work)
    log_path = os.path.join(work, "server.log")
    started = datetime.datetime.now(datetime.timezone.utc)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([server_bin, "run", "--data", server.data, "--listen", f"127.0.0.1:{server.port}",
                                 "--header-timeout", str(HEADER_TIMEOUT_S)], stdout=subprocess.DEVNULL, stderr=log)
    requests = 0
    stores = []
    try:
        wait_port(server.port)
        url = f"http://127.0.0.1:{server.port}/v2/health"
        for flags, name in (((), "ab"), (("-k",), "ab -k")):
            rc, counts, out = ab(url, *flags)
            requests += counts.get("Complete requests", 0)
            check(f"{name} -n 200 -c 4: 200 complete, 0 failed, all 200",
                  rc == 0 and counts.get("Complete requests") == 200 and counts.get("Failed requests") == 0 and
                  counts.get("Non-2xx responses", 0) == 0, out)
            if flags:
                check("ab -k: every request kept alive (Keep-Alive requests: 200)",
                      counts.get("Keep-Alive requests") == 200, out)
        requests += persistence(server.port)
        requests += not_served(server.port)
        photo = os.path.join(work, "photo.jpg")
        with open(photo, "wb") as f:
            f.write(os.urandom(1_500_000))
        stores, sent = through_nginx(dala, server, work, photo)
        requests += sent
        check_log(log_path, requests, started)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if stores:
        problems, n = check_delivered(dala, server_bin, server.data, org_key, stores)
        check(f"the server holds exactly the {n} versions the phones sealed, all verified by the desk",
              not problems, problems)
    if not failures:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
