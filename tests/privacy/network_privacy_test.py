#!/usr/bin/env python3
"""Issue 14, items 6 and 7, against the real dala and dala-server: a phone that syncs through a SOCKS5 proxy
never connects directly and never resolves the server's name itself; an .onion address without a proxy is
refused; a proxy that refuses, stalls, closes or is not SOCKS gives a clear error and nothing is lost; a
malformed proxy URL is refused; a phone never falls back to a weaker address unless the invite says the
addresses are equivalent; no header either way names the product; the health endpoint says only "ok";
the server logs no client address unless asked, and then believes X-Forwarded-For only from a trusted
proxy. Usage: network_privacy_test.py BIN_DIR"""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
from harness import ENV, free_port, run, wait_port  # noqa: E402
from socks5 import Socks5Proxy  # noqa: E402

failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f"  ({detail})" if detail and not ok else ""))
    if not ok:
        failures.append(what)


def sync(dala, store, *extra, timeout=20):
    t = time.monotonic()
    p = subprocess.run([dala, "sync", "--store", store, "--timeout", str(timeout), "--json", *extra], env=ENV,
                       capture_output=True, text=True, timeout=timeout + 30)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t


def last_error(sync_stdout):
    """The servers' last errors from `dala sync --json`."""
    try:
        return " ".join(s.get("last_error", "") for s in json.loads(sync_stdout)["servers"])
    except (ValueError, KeyError):
        return sync_stdout


def header_blocks(data, start):
    return [m.group(0) for m in re.finditer(start + rb"[^\r\n]*\r\n.*?\r\n\r\n", bytes(data), re.S)]


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-privacy-")
    _, server = harness.new_server(dala, server_bin, work)
    log_path = os.path.join(work, "server.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([server_bin, "run", "--data", server.data, "--listen", f"127.0.0.1:{server.port}",
                                 "--log-client-addresses", "--trusted-proxy", "127.0.0.2"],
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_port(server.port)
        name = "reports.example.invalid"  # resolves nowhere but in the proxy
        photo = os.path.join(work, "photo.jpg")
        with open(photo, "wb") as f:
            f.write(os.urandom(300_000))

        # 1. Through the proxy: delivered; every connection the server saw came from the proxy.
        with Socks5Proxy({name: ("127.0.0.1", server.port)}) as proxy:
            phone = harness.new_phone(dala, os.path.join(work, "p1"), server.invite(f"http://{name}:{server.port}"))
            run(dala, "report", "add", "--store", phone, "--form", "detention/1", "--text", "through the proxy",
                "--attach", photo, "--seal")
            rc, out, err, _ = sync(dala, phone, "--proxy", f"socks5h://127.0.0.1:{proxy.port}")
            check("sync through a SOCKS5 proxy delivers a report with an attachment", rc == 0, f"rc {rc} {err}")
            check("the proxy was asked for the server's name (socks5h: names resolved by the proxy)",
                  proxy.connects >= 1 and all(r[0] == 3 and r[1] == name for r in proxy.requested), proxy.requested)
            requests = [json.loads(line) for line in open(log_path, encoding="utf-8")
                        if '"event":"request"' in line]
            check("the server saw requests, every one from the proxy, none directly",
                  requests and all(r.get("peer") == "127.0.0.2" for r in requests),
                  [r.get("peer") for r in requests])
            # 2. No product names in headers, either way.
            sent = header_blocks(proxy.upstream_bytes, rb"(?:POST|GET) /")
            answered = header_blocks(proxy.downstream_bytes, rb"HTTP/1\.1 \d{3}")
            check("requests and answers were seen", len(sent) >= 2 and len(answered) >= 2, (len(sent), len(answered)))
            lower = [b.lower() for b in sent + answered]
            check("no header names the product (dala) in either direction", not any(b"dala" in b for b in lower),
                  [b for b in lower if b"dala" in b][:1])
            check("no User-Agent in requests", not any(b"\r\nuser-agent:" in b for b in lower))
            check("no Server header in answers", not any(b"\r\nserver:" in b for b in lower))

        # 3. Faults of the proxy: a clear error, nothing lost, bounded time, never a direct connection.
        phone2 = harness.new_phone(dala, os.path.join(work, "p2"), server.invite(f"http://127.0.0.1:{server.port}"))
        run(dala, "report", "add", "--store", phone2, "--form", "detention/1", "--text", "waits", "--seal")
        before = sum(1 for line in open(log_path, encoding="utf-8") if '"event":"request"' in line)
        for mode, words in (("refuse", "connection refused"), ("stall", "did not answer in time"),
                            ("close", "closed the connection"), ("not-socks", "not a SOCKS5 proxy")):
            with Socks5Proxy({"127.0.0.1": ("127.0.0.1", server.port)}, mode=mode) as bad:
                rc, out, err, took = sync(dala, phone2, "--proxy", f"socks5h://127.0.0.1:{bad.port}", timeout=4)
                check(f"a proxy that {mode}s: the sync leaves the report for later (exit 5)", rc == 5, f"rc {rc} {err}")
                check(f"a proxy that {mode}s: the error says so", words in last_error(out), last_error(out) or err)
                check(f"a proxy that {mode}s: within the timeout", took < 4 + 10, f"{took:.1f} s")
        after = sum(1 for line in open(log_path, encoding="utf-8") if '"event":"request"' in line)
        check("with a failing proxy the phone never connected directly", after == before, f"{before} -> {after}")
        left = json.loads(run(dala, "report", "list", "--store", phone2, "--json").stdout)
        check("nothing was lost", len(left) == 1 and left[0]["state"] in ("queued", "sealed"), left)
        for bad_url in ("http://127.0.0.1:9050", "socks5h://127.0.0.1", "socks5h://:9050", "socks5h://h:99999",
                        "socks4://127.0.0.1:9050"):
            rc, _, err, _ = sync(dala, phone2, "--proxy", bad_url, timeout=2)
            check(f"a malformed proxy URL {bad_url!r} is refused (exit 2)", rc == 2 and "proxy" in err, f"rc {rc} {err}")

        # 4. An .onion address without a proxy: refused, never looked up.
        onion = "http://" + "a" * 56 + ".onion"
        phone3 = harness.new_phone(dala, os.path.join(work, "p3"), server.invite(onion))
        run(dala, "report", "add", "--store", phone3, "--form", "detention/1", "--text", "onion", "--seal")
        rc, out3, err, _ = sync(dala, phone3, timeout=4)
        err3 = last_error(out3)
        check("an onion address without a proxy: refused, the report waits (exit 5)", rc == 5, f"rc {rc}")
        check("  and the error says a Tor proxy is needed and nothing was looked up",
              "Tor proxy" in err3 and "not looked up" in err3, err3)

        # 5. No fallback to a weaker address unless the invite says they are equivalent.
        dead = free_port()
        weak = server.desk.invite(server.key, "http://" + "b" * 56 + f".onion:{dead}",
                                  f"http://127.0.0.1:{server.port}")
        # Without a proxy the onion address is refused at once; that failure must not lead to clearnet.
        phone4 = harness.new_phone(dala, os.path.join(work, "p4"), weak)
        run(dala, "report", "add", "--store", phone4, "--form", "detention/1", "--text", "no fallback", "--seal")
        before = sum(1 for line in open(log_path, encoding="utf-8") if '"event":"request"' in line)
        rc, _, _, _ = sync(dala, phone4, timeout=4)
        after = sum(1 for line in open(log_path, encoding="utf-8") if '"event":"request"' in line)
        check("an unreachable onion address does not fall back to clearnet http (exit 5, no request)",
              rc == 5 and after == before, f"rc {rc}, requests {before} -> {after}")
        equivalent = server.desk.invite(server.key, "http://" + "c" * 56 + f".onion:{dead}",
                                        f"http://127.0.0.1:{server.port}", equivalent=True)
        phone5 = harness.new_phone(dala, os.path.join(work, "p5"), equivalent)
        run(dala, "report", "add", "--store", phone5, "--form", "detention/1", "--text", "fallback", "--seal")
        rc, _, err, _ = sync(dala, phone5, timeout=10)
        check("with addresses the invite calls equivalent it falls back and delivers", rc == 0, f"rc {rc} {err}")
        https_first = server.desk.invite(server.key, f"https://127.0.0.1:{dead}", f"http://127.0.0.1:{server.port}")
        phone6 = harness.new_phone(dala, os.path.join(work, "p6"), https_first)
        run(dala, "report", "add", "--store", phone6, "--form", "detention/1", "--text", "https only", "--seal")
        rc, _, _, _ = sync(dala, phone6, timeout=4)
        check("an unreachable https address does not fall back to http (exit 5)", rc == 5, f"rc {rc}")

        # 6b. Nothing else names the product either: 0.1's paths, the root, an unknown path.
        for path in ("/v1/health", "/v1/push", "/", "/nowhere"):
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            c.close()
            check(f"GET {path}: nothing in the answer names the product",
                  b"dala" not in body.lower() and not any("dala" in f"{k}{v}".lower() for k, v in r.getheaders()),
                  body[:120])

        # 6. Health says only that the server is up; client addresses and X-Forwarded-For.
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        c.request("GET", "/v2/health", headers={"X-Forwarded-For": "203.0.113.9"})
        r = c.getresponse()
        body = r.read()
        check("health answers 200 'ok' and nothing more", r.status == 200 and body == b"ok\n", (r.status, body))
        check("health has no Server header", r.getheader("Server") is None)
        c.close()
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=("127.0.0.2", 0))
        c.request("GET", "/v2/health", headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.44"})
        c.getresponse().read()
        c.close()
        # A client's forged line first, then the line the proxy appended (as HAProxy's forwardfor does).
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=("127.0.0.2", 0))
        c.putrequest("GET", "/v2/health")
        c.putheader("X-Forwarded-For", "6.6.6.6")
        c.putheader("X-Forwarded-For", "192.0.2.77")
        c.endheaders()
        c.getresponse().read()
        c.close()
        deadline = time.monotonic() + 10
        while True:  # bounded: the three health lines, or what is there after 10 s
            lines = [json.loads(line) for line in open(log_path, encoding="utf-8") if '"path":"/v2/health"' in line]
            if len(lines) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # Each connection is served on its own, and a line is logged once its answer is written: under a slow
        # (sanitised) build the lines may come in any order, so compare them as a multiset.
        peers = sorted(entry.get("peer") for entry in lines)
        check("X-Forwarded-For from an untrusted peer is ignored; from the trusted proxy, its last hop is logged, "
              "across header lines", peers == sorted(["127.0.0.1", "203.0.113.44", "192.0.2.77"]), peers)
    finally:
        proc.terminate()
        proc.wait(20)

    # 7. By default the server logs no client addresses at all.
    quiet_log = os.path.join(work, "default.log")
    with open(quiet_log, "wb") as log:
        proc = subprocess.Popen([server_bin, "run", "--data", server.data, "--listen", f"127.0.0.1:{server.port}"],
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_port(server.port)
        run(dala, "report", "add", "--store", phone2, "--form", "detention/1", "--text", "again", "--seal")
        rc, _, err, _ = sync(dala, phone2)
        check("a direct sync delivers", rc == 0, f"rc {rc} {err}")
    finally:
        proc.terminate()
        proc.wait(20)
    text = open(quiet_log, encoding="utf-8").read()
    check("the default log has request lines", '"event":"request"' in text)
    check("the default log holds no client address", '"peer"' not in text and "127.0.0." not in text,
          text[:300])

    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
