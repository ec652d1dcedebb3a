#!/usr/bin/env python3
"""dala-server's GET /metrics against the real programs: the text parses strictly as the Prometheus format
0.0.4; after phones deliver reports with an attachment the counters moved by exactly what happened (reports
stored, attachment bytes, requests by endpoint, the log's leaves, pushes per commit); the main listener
answers /metrics only to loopback clients no proxy forwarded (others get the 404 of any unknown path); the
--metrics-listen listener, set in the --config file, serves /metrics and nothing else; the text holds no
device key, report id or address; after a restart the reports held are loaded again.
Usage: server_metrics_test.py BIN_DIR"""
import http.client
import json
import math
import os
import re
import socket
import sys
import tempfile
import time

from prometheus_client.parser import text_string_to_metric_families

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
from harness import ENV, check_delivered, free_port, run  # noqa: E402

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_CONNECTIONS = 8
failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f"  ({detail})" if detail and not ok else ""))
    if not ok:
        failures.append(what)


def get(port, path, method="GET", headers=None, body=None):
    """(status, content type, body) of one request to 127.0.0.1:port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.getheader("Content-Type", ""), r.read()
    finally:
        c.close()


class Scrape:
    """One /metrics answer, parsed strictly: every sample by (name, sorted labels)."""

    def __init__(self, port, check_format=True):
        status, ctype, body = get(port, "/metrics")
        self.status, self.ctype, self.text = status, ctype, body.decode("utf-8")
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}  # raises if malformed
        self.samples = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        if check_format:
            self.check_format()

    def check_format(self):
        lines = self.text.splitlines()
        helps = {ln.split()[2] for ln in lines if ln.startswith("# HELP ")}
        types = {ln.split()[2]: ln.split()[3] for ln in lines if ln.startswith("# TYPE ")}
        # The parser names a counter's family without its _total.
        parsed = {n + "_total" if f.type == "counter" else n for n, f in self.families.items()}
        check("every family has HELP and TYPE", helps == set(types) == parsed,
              (sorted(set(types) ^ helps), sorted(set(types) ^ parsed)))
        check("every name starts with dala_server_", all(n.startswith("dala_server_") for n in types), sorted(types))
        for name, f in self.families.items():
            if f.type == "counter":
                check(f"{name}: counter values are whole and not negative",
                      all(s.value >= 0 and s.value == int(s.value) for s in f.samples))
            if f.type != "histogram":
                continue
            series = {}
            for s in f.samples:
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                series.setdefault(key, {"buckets": []})
                if s.name.endswith("_bucket"):
                    series[key]["buckets"].append((float(s.labels["le"]), s.value))
                else:
                    series[key][s.name[len(name) + 1:]] = s.value
            for key, h in series.items():
                counts = [c for _, c in sorted(h["buckets"])]
                check(f"{name}{dict(key)}: buckets cumulative, +Inf last and equal to _count",
                      counts == sorted(counts) and math.isinf(sorted(h["buckets"])[-1][0])
                      and counts[-1] == h.get("count"), (h["buckets"], h.get("count")))

    def value(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def requests(self, endpoint, code):
        return self.value("dala_server_http_requests_total", endpoint=endpoint, code=str(code))


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-metrics-")
    org_key, server = harness.new_server(dala, server_bin, work)
    metrics_port = free_port()
    config = os.path.join(work, "server.toml")
    with open(config, "w") as f:
        f.write(f'[run]\nmetrics-listen = "127.0.0.1:{metrics_port}"\nheader-timeout = 2\nmax-body-mib = 1\n'
                f'max-connections = {MAX_CONNECTIONS}\n')
    started = time.time()
    server.start("--config", config)
    try:
        second = server.proc.stdout.readline().decode().strip()
        check("run says where the metrics listener listens", second == f"metrics on 127.0.0.1:{metrics_port}",
              second)
        before = Scrape(server.port)
        check("GET /metrics from 127.0.0.1: 200 in the text format 0.0.4",
              before.status == 200 and before.ctype == CONTENT_TYPE, (before.status, before.ctype))
        now = time.time()
        check("start time: when the server started",
              started - 1 <= before.value("dala_server_start_time_seconds") <= now + 1,
              before.value("dala_server_start_time_seconds"))
        fds = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        check("open file descriptors read from /proc (within a few of the test's own count)",
              abs(before.value("dala_server_process_open_fds") - fds) <= 4,
              (before.value("dala_server_process_open_fds"), fds))
        rss = harness.rss_mib(server.proc.pid) * 2 ** 20
        check("resident memory read from /proc (within half of VmRSS)",
              0.5 * rss <= before.value("dala_server_process_resident_memory_bytes") <= 1.5 * rss,
              (before.value("dala_server_process_resident_memory_bytes"), rss))

        # Phones deliver: two reports each, one of them with an attachment.
        photo = os.path.join(work, "photo.jpg")
        with open(photo, "wb") as f:
            f.write(os.urandom(300_000))
        stores = []
        for i in range(2):
            store = harness.new_phone(dala, os.path.join(work, f"phone{i}"), server.invite())
            run(dala, "report", "add", "--store", store, "--form", "detention/1", "--text", f"plain {i}", "--seal")
            run(dala, "report", "add", "--store", store, "--form", "detention/1", "--text", f"with a photo {i}",
                "--attach", photo, "--seal")
            run(dala, "sync", "--store", store, "--timeout", "30", timeout=90)
            stores.append(store)
        problems, delivered = check_delivered(dala, server_bin, server.data, org_key, stores)
        check("the phones' reports were delivered", not problems and delivered == 4, problems)
        # A few requests of the test's own, counted exactly.
        for _ in range(3):
            get(server.port, "/v2/health")
        for path in ("/nowhere", "/v1/push"):
            get(server.port, path)
        after = Scrape(metrics_port)
        check("the metrics listener answers GET /metrics (200, format 0.0.4)",
              after.status == 200 and after.ctype == CONTENT_TYPE, (after.status, after.ctype))

        def moved(name, **labels):
            return after.value(name, **labels) - before.value(name, **labels)

        check("reports stored == reports delivered", moved("dala_server_reports_stored_total") == delivered,
              (moved("dala_server_reports_stored_total"), delivered))
        check("reports held == reports delivered (a new server)", after.value("dala_server_reports_held") == delivered)
        check("envelope bytes stored grew", moved("dala_server_envelope_bytes_stored_total") > 0)
        on_disk = sum(os.path.getsize(os.path.join(server.data, "attachments", n))
                      for n in os.listdir(os.path.join(server.data, "attachments")))
        check("attachment bytes stored == the attachment files on disk, >= the photos sent",
              moved("dala_server_attachment_bytes_stored_total") == on_disk >= 2 * os.path.getsize(photo),
              (moved("dala_server_attachment_bytes_stored_total"), on_disk))
        check("attachment bytes held == the attachment files on disk",
              after.value("dala_server_attachment_bytes_held") == on_disk)
        check("no upload in progress", after.value("dala_server_uploads_in_progress") == 0)
        check("health answered 3 times more", moved("dala_server_http_requests_total", endpoint="/v2/health",
                                                     code="200") == 3)
        check("unknown and 0.1 paths counted as endpoint \"other\" (404 and 410)",
              after.requests("other", 404) - before.requests("other", 404) == 1
              and after.requests("other", 410) - before.requests("other", 410) == 1,
              [(k, v) for k, v in after.samples.items() if k[0] == "dala_server_http_requests_total"])
        check("one enrolment per phone", after.requests("/v2/enrol", 200) - before.requests("/v2/enrol", 200) == 2)
        pushes = after.requests("/v2/push", 200) - before.requests("/v2/push", 200)
        check("pushes answered 200, and uploads, were counted",
              pushes >= 2 and after.requests("/v2/upload", 200) - before.requests("/v2/upload", 200) >= 2)
        check("every push answered 200 went through one group commit (pushes per commit)",
              moved("dala_server_pushes_per_commit_sum") == pushes, (moved("dala_server_pushes_per_commit_sum"), pushes))
        check("the commits were timed", 1 <= moved("dala_server_commit_duration_seconds_count") <= pushes)
        check("request durations per endpoint",
              moved("dala_server_http_request_duration_seconds_count", endpoint="/v2/health") == 3)
        check("connections accepted counted", moved("dala_server_connections_accepted_total") >= 5 + 2)
        check("connections open counts this one", after.value("dala_server_connections_open") >= 1)
        with tempfile.TemporaryDirectory(prefix="dala-export-") as tmp:
            export = os.path.join(tmp, "export.dala")
            run(server_bin, "export", "--data", server.data, "--out", export)
            log = json.loads(run(dala, "log", "verify", "--organisation", server.desk.identity, "--from", export,
                                 "--json").stdout)
        check("log leaves == the leaves of the exported log", after.value("dala_server_log_leaves") == log["leaves"],
              (after.value("dala_server_log_leaves"), log["leaves"]))

        # Nothing identifying in the text: keys, report ids, addresses.
        keys = [d["device"] for d in json.loads(run(server_bin, "devices", "--data", server.data, "--json").stdout)]
        ids = [r["id"] for s in stores for r in harness.reports(dala, s)]
        text = after.text.lower()
        check("no device key, server key or report id in the metrics",
              keys and ids and not any(x.lower() in text for x in keys + ids + [server.key]))
        check("no IP address in the metrics", not re.search(r"\d+\.\d+\.\d+\.\d+|::", text))

        # Access: /metrics only to loopback clients no proxy forwarded; the same 404 as any unknown path.
        unknown = get(server.port, "/nowhere")
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            status, ctype, body = get(server.port, "/metrics", headers={header: "203.0.113.7"})
            check(f"/metrics forwarded by a proxy ({header}): the 404 of an unknown path",
                  (status, ctype, len(body)) == unknown[:2] + (len(unknown[2]),) and b"dala_server" not in body,
                  (status, ctype, body[:40]))
        status, _, body = get(server.port, "/metrics", method="POST", body=b"")
        check("POST /metrics: 404", status == 404 and b"dala_server" not in body)
        for method, path in (("GET", "/v2/health"), ("GET", "/"), ("POST", "/v2/push"), ("POST", "/v2/upload")):
            status, _, body = get(metrics_port, path, method=method, body=b"x" if method == "POST" else None)
            check(f"the metrics listener serves nothing else: {method} {path} is 404",
                  status == 404 and b"ok" not in body, (status, body[:40]))

        # Refusals, each counted once under its reason; an idle connection that times out is not a refusal.
        refused = Scrape(metrics_port, check_format=False)
        idle, partial = (socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2))
        partial.sendall(b"GET /v2/health HTTP/1.1\r\nHost: x\r\n")  # and never the end of the header
        closed = [s.recv(1) == b"" for s in (idle, partial)]  # within the 2 s header timeout (10 s bound)
        status, _, _ = get(server.port, "/v2/push", method="POST", body=b"x" * (2 << 20))
        crowd = []
        for _ in range(MAX_CONNECTIONS + 1):  # one more than allowed: the longest waiting is closed
            crowd.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now_refused = Scrape(metrics_port, check_format=False)
            if now_refused.value("dala_server_connections_refused_total", reason="evicted") > refused.value(
                    "dala_server_connections_refused_total", reason="evicted"):
                break
            time.sleep(0.05)
        for s in crowd + [idle, partial]:
            s.close()
        delta = {r: now_refused.value("dala_server_connections_refused_total", reason=r)
                 - refused.value("dala_server_connections_refused_total", reason=r)
                 for r in ("timeout", "body_too_large", "evicted", "connection_limit", "body_budget")}
        check("the server closed the idle and the half-sent connection", closed == [True, True], closed)
        check("refusals by reason: one timeout (the half-sent header, not the idle one), one body too large "
              "(413), one evicted", status == 413 and delta == {"timeout": 1, "body_too_large": 1, "evicted": 1,
                                                                 "connection_limit": 0, "body_budget": 0},
              (status, delta))

        # After a restart the reports held come from the database; counters start again from zero.
        server.stop()
        server.start("--config", config)
        server.proc.stdout.readline()
        again = Scrape(server.port)
        check("after a restart: reports held loaded (== delivered), reports stored since start 0",
              again.value("dala_server_reports_held") == delivered
              and again.value("dala_server_reports_stored_total") == 0,
              (again.value("dala_server_reports_held"), again.value("dala_server_reports_stored_total")))
        check("after a restart: log leaves loaded", again.value("dala_server_log_leaves") == log["leaves"])
    finally:
        server.stop()
    if failures:
        print(f"{len(failures)} checks failed: {failures}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
