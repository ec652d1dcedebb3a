#!/usr/bin/env python3
"""dala-server under abuse (issue 6): while a phone delivers reports one sync at a time, other peers open
more idle connections than the server allows, trickle headers in byte by byte, trickle bodies that claim
16 MiB, send oversized and malformed requests, and burst signed junk from a key that never enrolled.
The server must stay up, keep its memory bounded, and keep serving the phone: every sync under abuse
delivers its report. At the end the server holds exactly what the phone sealed (the desk verifies it).

Prints the phone's sync times (p50, p99) without and with the abuse, the server's peak memory and what
the abusers sent. Usage: server_abuse.py BIN_DIR [--reports N] [--seed S] [--sanitized]
(--sanitized: a sanitizer build, whose allocator keeps freed memory: the memory bound is not checked)
"""
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
from harness import check_delivered, run  # noqa: E402

_cli = harness.parser(__doc__)
_cli.add_argument("--reports", type=int, default=40, metavar="N",
                  help="reports delivered calm, then as many under abuse (default 40)")
_cli.add_argument("--sanitized", action="store_true",
                  help="a sanitizer build, whose allocator keeps freed memory: the memory bound is not checked")
ARGS = _cli.parse_args()
BIN, REPORTS, SEED, SANITIZED = ARGS.bin_dir, ARGS.reports, ARGS.seed, ARGS.sanitized
DALA, SERVER = harness.binaries(BIN)
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "fuzz_request")
MAX_CONNECTIONS, BUFFERED_MIB, MEMORY_LIMIT_MIB = 128, 64, 256


class Abuse:
    def __init__(self, port, rng):
        self.port, self.rng = port, rng
        self.stop = threading.Event()
        self.counts = {}
        self.lock = threading.Lock()
        self.threads = []

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
        return s

    def spawn(self, fn, n=1):
        for i in range(n):
            t = threading.Thread(target=self.loop, args=(fn, i), daemon=True)
            t.start()
            self.threads.append(t)

    def loop(self, fn, i):
        while not self.stop.is_set():
            try:
                fn(i)
            except OSError:
                self.count("connections dropped by the server")
                time.sleep(0.05)

    def idle(self, _):
        """Connections that never send anything: 3 times the server's limit, reopened when closed."""
        socks = []
        while not self.stop.is_set() and len(socks) < 3 * MAX_CONNECTIONS:
            socks.append(self.connect())
            self.count("idle connections")
        while not self.stop.is_set():
            time.sleep(0.5)
            for k, s in enumerate(socks):
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    continue
                except OSError:
                    s.close()
                    try:
                        socks[k] = self.connect()
                        self.count("idle connections")
                    except OSError:
                        pass
        for s in socks:
            s.close()

    def slow_header(self, _):
        s = self.connect()
        self.count("slow headers")
        s.sendall(b"POST /v2/push HTTP/1.1\r\nHost: x\r\n")
        while not self.stop.is_set():
            s.sendall(b"X")
            time.sleep(0.5)

    def slow_body(self, _):
        s = self.connect()
        self.count("slow 16 MiB bodies")
        s.sendall(b"POST /v2/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                  b"Content-Length: 16777216\r\n\r\n")
        while not self.stop.is_set():
            s.sendall(b"\x00" * 100)
            time.sleep(0.2)

    def send(self, what, data, read=True):
        s = self.connect()
        try:
            s.sendall(data)
            if read:
                s.settimeout(5)
                answer = s.recv(64)
                status = answer.split(b" ")[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
                self.count(f"{what} -> {status}")
        finally:
            s.close()

    def oversized(self, _):
        if self.rng.random() < 0.5:
            self.send("1 GiB body", b"POST /v2/push HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n" +
                      b"\x00" * 65536)
        else:
            self.send("100 KB header", b"GET /v2/health HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")

    def malformed(self, _):
        kind = self.rng.randrange(3)
        if kind == 0:
            self.send("random bytes", os.urandom(self.rng.randint(1, 4096)))
        elif kind == 1:
            body = os.urandom(self.rng.randint(0, 20000))
            self.send("random push body", b"POST /v2/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf"
                      b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        else:
            self.send("chunked push", b"POST /v2/push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"10\r\n0123456789abcdef\r\n0\r\n\r\n")

    def junk(self, _):
        """Signed requests from a device that never enrolled, on keep-alive connections, as fast as they go."""
        bodies = []
        for name in sorted(os.listdir(CORPUS)):
            with open(os.path.join(CORPUS, name), "rb") as f:
                bodies.append((name, f.read()))
        s = self.connect()
        s.settimeout(5)
        while not self.stop.is_set():
            name, body = self.rng.choice(bodies)
            s.sendall(b"POST /v1/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                      b"Content-Length: %d\r\n\r\n" % (name.encode(), len(body)) + body)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionResetError
                answer += chunk
            head, rest = answer.split(b"\r\n\r\n", 1)
            length = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
            while len(rest) < length:
                rest += s.recv(4096)
            self.count(f"unenrolled signed {name} -> {head.split(b' ')[1].decode()}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def deliver(store, n, label):
    times, failed = [], 0
    for i in range(n):
        run(DALA, "report", "add", "--store", store, "--form", "detention/1", "--text", f"{label} {i}", "--seal")
        t = time.monotonic()
        code = run(DALA, "sync", "--store", store, "--timeout", "30", check=False).returncode
        times.append(time.monotonic() - t)
        failed += code != 0
    return times, failed


def main():
    rng = random.Random(SEED)
    work = tempfile.mkdtemp(prefix="dala-abuse-")
    server = None
    problems = []
    try:
        org_key, server = harness.new_server(DALA, SERVER, work)
        server.start("--max-connections", str(MAX_CONNECTIONS), "--max-buffered-mib", str(BUFFERED_MIB),
                     "--body-timeout", "20")
        store = harness.new_phone(DALA, os.path.join(work, "phone"), server.invite())

        calm, calm_failed = deliver(store, REPORTS, "calm")
        calm_rss = server.peak_rss_mib()

        abuse = Abuse(server.port, rng)
        abuse.spawn(abuse.idle)
        abuse.spawn(abuse.slow_header, 30)
        abuse.spawn(abuse.slow_body, 20)
        abuse.spawn(abuse.oversized, 2)
        abuse.spawn(abuse.malformed, 2)
        abuse.spawn(abuse.junk, 4)
        time.sleep(2)  # the connections pile up
        stormy, stormy_failed = deliver(store, REPORTS, "under abuse")
        alive = server.alive()
        rss = server.peak_rss_mib() if alive else float("nan")
        abuse.stop.set()
        for t in abuse.threads:
            t.join(timeout=10)

        if not alive:
            problems.append("dala-server died under abuse")
        if calm_failed or stormy_failed:
            problems.append(f"syncs that left work: {calm_failed} calm, {stormy_failed} under abuse")
        if rss > MEMORY_LIMIT_MIB and not SANITIZED:
            problems.append(f"server peak memory {rss:.0f} MiB over the {MEMORY_LIMIT_MIB} MiB bound")
        if alive:
            found, _ = check_delivered(DALA, SERVER, server.data, org_key, [store])
            problems += found
        print(f"server abuse: seed {SEED}; abusers sent: {dict(sorted(abuse.counts.items()))}")
        print(f"phone sync time, calm:        p50 {pct(calm, 50) * 1000:.0f} ms, p99 {pct(calm, 99) * 1000:.0f} ms "
              f"({REPORTS} syncs, each delivering one report)")
        print(f"phone sync time, under abuse: p50 {pct(stormy, 50) * 1000:.0f} ms, "
              f"p99 {pct(stormy, 99) * 1000:.0f} ms ({REPORTS} syncs)")
        print(f"server peak memory: {calm_rss:.1f} MiB calm, {rss:.1f} MiB under abuse (bound {MEMORY_LIMIT_MIB} MiB: "
              f"{MAX_CONNECTIONS} connections x 64 KiB + {BUFFERED_MIB} MiB body budget + the process"
              f"{'; not checked in a sanitizer build' if SANITIZED else ''})")
    finally:
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for p in problems:
        print("FAIL:", p)
    print("0 failures" if not problems else f"{len(problems)} failures")
    return 1 if problems else 0


sys.exit(main())
