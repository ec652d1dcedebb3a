#!/usr/bin/env python3
"""A phone delivers a report with an attachment through a real, private, offline Tor network to dala-server
published as a v3 onion service; and how long deliveries take through Tor beside a direct connection.

Debian's `tor` runs 3 directory authorities (also relays), 3 more relays, the onion service's tor and the
phone's tor (a client with a SocksPort), every one on 127.0.0.1: TestingTorNetwork 1, DirAuthority lines
only for these authorities (keys from tor-gencert, fingerprints from tor --list-fingerprint), no default
fallback directories, no IPv6, no exit relay, outgoing sockets bound to 127.0.0.1 (tor binds none for a
loopback destination, so any other destination would fail); a watcher reads /proc throughout and fails the
test if any socket of a tor process has an endpoint off loopback.

The phones that go through Tor hold invites with ONLY the onion address (http://<56>.onion:80), so they can
reach the server through `dala sync --proxy socks5h://127.0.0.1:SOCKSPORT` or not at all; the server must see
their requests, and a sampler (every 25 ms) checks that the sync process connected to nothing but the SOCKS
port. Then the same deliveries go directly (invites with only http://127.0.0.1:PORT) from two more phones,
and a table compares the times:
  (a) N sealed reports delivered by one sync (--reports, default 100),
  (b) one report with an M MiB attachment (--attachment-mib, default 10).
At the end the server's export must hold exactly what the phones sealed, each verified by the desk.

Every wait is bounded (the phone's tor bootstrapped within 180 s of the start, the onion service answering
GET /v2/health "ok" through it within 240 s, each sync within 600 s). Everything is stopped at the end, also
on failure or a signal (process groups); should this script be killed outright, its tor processes and server
get SIGTERM from the kernel (setpriv --pdeathsig) and each tor also exits by itself within 15 s
(__OwningControllerProcess). A missing tor fails the test: run tools/dev deps.

Usage: tor_network_test.py BIN_DIR [--reports N] [--attachment-mib M] [--keep]"""
import json
import os
import re
import shutil
import signal
from signal import SIGKILL, SIGTERM
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
from harness import ENV, free_port, run, wait_port  # noqa: E402

BOOTSTRAP_LIMIT = 180  # seconds from the start of the tor processes until the phone's tor is bootstrapped
ONION_LIMIT = 240  # seconds from the start until the onion service answers through the phone's tor
ONION_PORT = 80  # the onion service's virtual port

failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f"  ({detail})" if detail and not ok else ""), flush=True)
    if not ok:
        failures.append(what)


def say(text):
    print(text, flush=True)


def read_text(path):
    """The text of a file; "" if it cannot be read (yet)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------------------
# A tiny SOCKS5 client (RFC 1928, no authentication, CONNECT to a name): an HTTP GET through the phone's tor.

def socks_http_get(socks_port, host, port, path, timeout):
    """The body of GET http://host:port/path through the SOCKS5 proxy on 127.0.0.1:socks_port (the name
    resolved by the proxy); raises OSError (or ValueError) on any failure."""
    with socket.create_connection(("127.0.0.1", socks_port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"\x05\x01\x00")
        if _recv_exact(s, 2) != b"\x05\x00":
            raise ValueError("the proxy refused the greeting")
        name = host.encode()
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port))
        head = _recv_exact(s, 4)
        if head[1] != 0:
            raise ConnectionError(f"SOCKS5 reply {head[1]}")  # tor: 4 until the onion service is reachable
        bound = {1: 4, 4: 16}.get(head[3]) or _recv_exact(s, 1)[0]  # IPv4, IPv6 or a name of that length
        _recv_exact(s, bound + 2)  # the bound address and port
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(f"answer {head[:40]!r}")
    return body


def _recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the proxy closed the connection")
        data += chunk
    return data


# ---------------------------------------------------------------------------------------------------------
# Which sockets of some processes are not on loopback (read from /proc: no tool needed).

def _endpoint(hex_addr):
    ip, port = hex_addr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words), int(port, 16)


def _loopback_or_unset(ip):
    return (ip.startswith("127.") or ip in ("0.0.0.0", "::", "::1") or ip.startswith("::ffff:127."))


def sockets_of(pids, protos=("tcp", "tcp6", "udp", "udp6")):
    """[(pid, proto, local, remote, state)] for every socket of pids in protos (state: /proc's hex, e.g. "01"
    established, "02" SYN sent, "0A" listening); endpoints are (ip, port). Each /proc/net/tcp* read takes a
    few ms here (the kernel walks its whole table)."""
    inodes = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes[link[8:-1]] = pid
    found = []
    for proto in protos:
        try:
            with open(f"/proc/net/{proto}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[9] in inodes:
                found.append((inodes[cols[9]], proto, _endpoint(cols[1]), _endpoint(cols[2]), cols[3]))
    return found


def foreign_sockets(pids):
    """The sockets of pids with an endpoint off loopback."""
    return [(pid, proto, local, remote) for pid, proto, local, remote, _ in sockets_of(pids)
            if not (_loopback_or_unset(local[0]) and _loopback_or_unset(remote[0]))]


class PeerWatch:
    """Samples every 25 ms, in a thread, where a process's TCP/IPv4 connections go (dala-server and the
    SOCKS port listen on 127.0.0.1 only): .remotes, the (ip, port) it connected or was connecting to;
    .samples, how many samples found the process alive."""

    def __init__(self, pid):
        self.pid, self.remotes, self.samples = pid, set(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if os.path.exists(f"/proc/{self.pid}"):
                for _, _, _, remote, state in sockets_of([self.pid], ("tcp",)):
                    if state in ("01", "02"):
                        self.remotes.add(remote)
                self.samples += 1
            self._stop.wait(0.025)

    def stop(self):
        self._stop.set()
        self._thread.join(5)


class LoopbackWatch:
    """Samples the sockets of the tor processes every 0.2 s in a thread; .foreign keeps every one seen off
    loopback, .samples counts the samples."""

    def __init__(self, pids):
        self.pids, self.foreign, self.samples = list(pids), [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for item in foreign_sockets(self.pids):
                if item not in self.foreign:
                    self.foreign.append(item)
            self.samples += 1
            self._stop.wait(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join(5)


# ---------------------------------------------------------------------------------------------------------
# The private Tor network.

COMMON = """\
TestingTorNetwork 1
DataDirectory {dir}
Nickname {nick}
Log notice file {dir}/notice.log
Log info file {dir}/info.log
SafeLogging 0
LogTimeGranularity 1
ShutdownWaitLength 0
Sandbox 0
__OwningControllerProcess {owner}
ControlPort 0
AssumeReachable 1
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteHSDir *
TestingDirAuthVoteGuard *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
UseDefaultFallbackDirs 0
ClientUseIPv4 1
ClientUseIPv6 0
ClientPreferIPv6ORPort 0
# tor binds no outgoing socket for a loopback destination; any other would be bound to 127.0.0.1 and fail
OutboundBindAddress 127.0.0.1
{authorities}
"""

RELAY = """\
SocksPort 0
Address 127.0.0.1
ORPort 127.0.0.1:{orport}
DirPort 127.0.0.1:{dirport}
ContactInfo {nick}@test.invalid
ExitRelay 0
ExitPolicy reject *:*
ServerDNSDetectHijacking 0
ServerDNSTestAddresses
ServerDNSResolvConfFile {resolv}
"""

# The fastest consensus cycle (Chutney's older authority template): the first consensus 5 s after the start,
# then a new one every 10 s (votes and signatures within 2 s each on loopback); measured here, the phone's tor
# bootstraps in ~10 s, against ~20-35 s with Chutney's current 20 s cycle.
AUTHORITY = """\
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval 5
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
"""


class TorNetwork:
    def __init__(self, root, tor, gencert, authorities=3, relays=3):
        self.root, self.tor, self.gencert = root, tor, gencert
        self.nodes = []  # dicts: nick, dir, kind, ports, proc
        self.started = None
        self.resolv = os.path.join(root, "resolv.conf")
        with open(self.resolv, "w") as f:
            f.write("nameserver 127.0.0.1\n")  # a relay looks nothing up; if one did, it would stay here
        for i in range(authorities):
            self._node(f"auth{i}", "authority")
        for i in range(relays):
            self._node(f"relay{i}", "relay")
        self.service = self._node("onion", "service")
        self.client = self._node("phone", "client")

    def _node(self, nick, kind):
        d = os.path.join(self.root, nick)
        os.makedirs(d, mode=0o700)
        node = {"nick": nick, "dir": d, "kind": kind, "proc": None}
        if kind in ("authority", "relay"):
            node["orport"], node["dirport"] = free_port(), free_port()
        if kind == "client":
            node["socks"] = free_port()
        self.nodes.append(node)
        return node

    def _authority_lines(self):
        lines = []
        for n in self.nodes:
            if n["kind"] != "authority":
                continue
            keys = os.path.join(n["dir"], "keys")
            os.makedirs(keys, mode=0o700, exist_ok=True)
            subprocess.run([self.gencert, "--create-identity-key", "--passphrase-fd", "0",
                            "-i", os.path.join(keys, "authority_identity_key"),
                            "-s", os.path.join(keys, "authority_signing_key"),
                            "-c", os.path.join(keys, "authority_certificate"), "-m", "12",
                            "-a", f"127.0.0.1:{n['dirport']}"],
                           input="\n", text=True, capture_output=True, timeout=60, check=True)
            with open(os.path.join(keys, "authority_certificate")) as f:
                v3ident = re.search(r"^fingerprint ([0-9A-F]{40})$", f.read(), re.M).group(1)
            out = run(self.tor, "--ignore-missing-torrc", "-f", os.path.join(n["dir"], "none"), "--nickname", n["nick"],
                      "--orport", "1", "--datadirectory", n["dir"], "--list-fingerprint", env=dict(os.environ)).stdout
            last = out.strip().splitlines()[-1].split()
            fingerprint = "".join(last[1:])
            if last[0] != n["nick"] or not re.fullmatch(r"[0-9A-F]{40}", fingerprint):
                raise AssertionError(f"tor --list-fingerprint printed {out[-300:]!r}")
            lines.append(f"DirAuthority {n['nick']} orport={n['orport']} no-v2 v3ident={v3ident} "
                         f"127.0.0.1:{n['dirport']} {fingerprint}")
        return "\n".join(lines)

    def configure(self, service_target):
        """Writes every torrc; the onion service forwards ONION_PORT to service_target (host:port)."""
        authorities = self._authority_lines()
        for n in self.nodes:
            text = COMMON.format(dir=n["dir"], nick=n["nick"], owner=os.getpid(), authorities=authorities)
            if n["kind"] in ("authority", "relay"):
                text += RELAY.format(orport=n["orport"], dirport=n["dirport"], nick=n["nick"], resolv=self.resolv)
            if n["kind"] == "authority":
                text += AUTHORITY
            if n["kind"] == "service":
                text += (f"SocksPort 0\nHiddenServiceDir {n['dir']}/hs\n"
                         f"HiddenServicePort {ONION_PORT} {service_target}\nHiddenServiceVersion 3\n")
            if n["kind"] == "client":
                text += f"SocksPort 127.0.0.1:{n['socks']}\n"
            n["torrc"] = os.path.join(n["dir"], "torrc")
            with open(n["torrc"], "w") as f:
                f.write(text)

    def start(self):
        self.started = time.monotonic()
        for n in self.nodes:
            with open(os.path.join(n["dir"], "stderr.log"), "wb") as err:
                n["proc"] = spawn([self.tor, "-f", n["torrc"]], err)

    def pids(self):
        return [n["proc"].pid for n in self.nodes if n["proc"] is not None]

    def elapsed(self):
        return time.monotonic() - self.started

    def check_alive(self):
        for n in self.nodes:
            if n["proc"] is not None and n["proc"].poll() is not None:
                raise AssertionError(f"tor {n['nick']} exited ({n['proc'].returncode}):\n" + self.tail(n, 15))

    def log(self, node):
        return read_text(os.path.join(node["dir"], "notice.log"))

    def tail(self, node, lines):
        text = self.log(node) + read_text(os.path.join(node["dir"], "stderr.log"))
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def wait(self, what, limit, probe, interval=0.5):
        """Calls probe() until it returns something true, at most until limit seconds after the start;
        returns (its value, the seconds since the start). Fails if a tor exits or the limit passes."""
        while True:
            self.check_alive()
            value = probe()
            if value:
                return value, self.elapsed()
            if self.elapsed() > limit:
                raise AssertionError(f"{what}: not within {limit} s of the start")
            time.sleep(interval)

    def stop(self):
        """Stops every tor: SIGTERM to each process group, then SIGKILL to what is left after 10 s."""
        for n in self.nodes:
            if n["proc"] is not None and n["proc"].poll() is None:
                _signal_group(n["proc"], SIGTERM)
        deadline = time.monotonic() + 10
        for n in self.nodes:
            if n["proc"] is not None:
                stop_process(n["proc"], max(0.1, deadline - time.monotonic()), term=False)


SETPRIV = shutil.which("setpriv")  # util-linux


def spawn(cmd, stderr):
    """Starts cmd in a process group of its own (stopped with _signal_group), stdout discarded; with
    setpriv, it is also sent SIGTERM as soon as this script's process is gone, even if killed."""
    if SETPRIV:
        cmd = [SETPRIV, "--pdeathsig", "TERM", "--", *cmd]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                            start_new_session=True)


def _signal_group(proc, sig):
    if proc.poll() is None:  # not reaped yet: its group is still its own
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def stop_process(proc, grace, term=True):
    """SIGTERM to proc's group (unless term is False: already sent), SIGKILL if it is still there after grace
    seconds; reaps it."""
    if term:
        _signal_group(proc, SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc, SIGKILL)
        proc.wait(10)


# ---------------------------------------------------------------------------------------------------------

def requests_in(log_path):
    """The request lines dala-server logged (JSON, one a line)."""
    out = []
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"event":"request"' in line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def timed_sync(dala, store, *extra, timeout=600):
    """`dala sync --json` on store: (exit code, stdout, stderr, seconds, PeerWatch of the process)."""
    t = time.monotonic()
    p = subprocess.Popen([dala, "sync", "--store", store, "--timeout", str(timeout), "--json", *extra], env=ENV,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = PeerWatch(p.pid)
    try:
        out, err = p.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    finally:
        watch.stop()
        if p.poll() is None:  # interrupted (a signal): no process left behind
            p.kill()
            p.wait()
    return p.returncode, out, err, time.monotonic() - t, watch


def states(dala, store):
    return sorted(r["state"] for r in harness.reports(dala, store))


def main():
    p = harness.parser(__doc__, seed=False)
    p.add_argument("--reports", type=int, default=100, metavar="N", help="reports delivered by one sync (default 100)")
    p.add_argument("--attachment-mib", type=int, default=10, metavar="M",
                   help="the size of the one attachment delivered (default 10)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (tor logs, stores)")
    args = p.parse_args()
    dala, server_bin = harness.binaries(args.bin_dir)
    tor, gencert = shutil.which("tor"), shutil.which("tor-gencert")
    if not tor or not gencert:
        print("FAIL tor and tor-gencert are not installed: run tools/dev deps (it installs the Debian package tor)")
        return 1

    # Stopped by a signal (ctest's timeout, ^C): still clean up.
    def stop_on(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, stop_on)

    t_all = time.monotonic()
    work = tempfile.mkdtemp(prefix="dala-tor-")
    os.makedirs(os.path.join(work, "tor"), mode=0o700)
    net = TorNetwork(os.path.join(work, "tor"), tor, gencert)
    org_key, server = harness.new_server(dala, server_bin, work)
    log_path = os.path.join(work, "server.log")
    server_proc, watch, ok = None, None, False
    try:
        with open(log_path, "wb") as log:
            server_proc = spawn([server_bin, "run", "--data", server.data, "--listen", f"127.0.0.1:{server.port}"],
                                log)
        wait_port(server.port)
        net.configure(f"127.0.0.1:{server.port}")
        net.start()
        watch = LoopbackWatch(net.pids())
        say(f"started {len(net.nodes)} tor processes (3 authorities, 3 relays, the onion service, the phone's "
            f"client) in {work}")

        hostname = os.path.join(net.service["dir"], "hs", "hostname")
        onion, _ = net.wait("the onion service's hostname", 30, lambda: read_text(hostname).strip())
        check("the onion service has a v3 address", re.fullmatch(r"[a-z2-7]{56}\.onion", onion) is not None, onion)

        # While tor bootstraps (in a thread, so the waits below measure tor alone): the phones and what they
        # will send. Through Tor, their invites hold ONLY the onion address; directly, only 127.0.0.1.
        phones, prep_errors = {}, []

        def prepare():
            try:
                big = os.path.join(work, "video.mp4")
                with open(big, "wb") as f:
                    f.write(os.urandom(args.attachment_mib << 20))
                for path, url in (("tor", f"http://{onion}:{ONION_PORT}"),
                                  ("direct", f"http://127.0.0.1:{server.port}")):
                    many = harness.new_phone(dala, os.path.join(work, f"{path}-reports"),
                                             server.desk.invite(server.key, url))
                    for i in range(args.reports):
                        run(dala, "report", "add", "--store", many, "--form", "detention/1", "--text",
                            f"report {i} via {path}", "--seal")
                    media = harness.new_phone(dala, os.path.join(work, f"{path}-media"),
                                              server.desk.invite(server.key, url))
                    run(dala, "report", "add", "--store", media, "--form", "detention/1", "--text",
                        f"video via {path}", "--attach", big, "--seal")
                    phones[path] = (many, media)
                say(f"phones ready after {net.elapsed():.1f} s: {args.reports} reports each, and "
                    f"{args.attachment_mib} MiB attachments")
            except Exception as e:  # noqa: BLE001 (reported by the main thread)
                prep_errors.append(e)
        prep = threading.Thread(target=prepare, daemon=True)
        prep.start()

        _, t_boot = net.wait("the phone's tor bootstrapped", BOOTSTRAP_LIMIT,
                             lambda: "Bootstrapped 100%" in net.log(net.client))
        say(f"the phone's tor bootstrapped {t_boot:.1f} s after the start")

        tries = [0]

        def health():
            tries[0] += 1
            try:
                return socks_http_get(net.client["socks"], onion, ONION_PORT, "/v2/health", timeout=30) == b"ok\n"
            except (OSError, ValueError):
                return False
        _, t_onion = net.wait("the onion service answered through the phone's tor", ONION_LIMIT, health, 1)
        say(f"the onion service answered {t_onion:.1f} s after the start (GET /v2/health tries: {tries[0]})")
        prep.join(300)
        if prep.is_alive() or prep_errors:
            raise AssertionError(f"preparing the phones: {prep_errors[0] if prep_errors else 'not within 300 s'}")

        # Through Tor: the phones' invites hold only the onion address, so they can reach the server only
        # through the phone's tor; a watcher also samples where each sync process connects.
        socks = ("127.0.0.1", net.client["socks"])
        proxy = f"socks5h://127.0.0.1:{socks[1]}"
        server_addr = ("127.0.0.1", server.port)
        times = {}
        for path in ("tor", "direct"):
            many, media = phones[path]
            extra = ["--proxy", proxy] if path == "tor" else []
            for store, what, count in ((many, f"{args.reports} reports by one sync", args.reports),
                                       (media, f"a report with a {args.attachment_mib} MiB attachment", 1)):
                before = len(requests_in(log_path))
                rc, out, err, took, peers = timed_sync(dala, store, *extra)
                times[(path, store == media)] = took
                label = "through Tor" if path == "tor" else "directly"
                check(f"{label}: {what} delivered (exit 0)", rc == 0, f"rc {rc} {err.strip()} {out.strip()}")
                got = harness.receipts(dala, store)
                check(f"{label}:   {count} verified receipts, every report delivered",
                      len(got) == count and all(r["verified"] for r in got)
                      and states(dala, store) == ["delivered"] * count, (len(got), states(dala, store)[:3]))
                seen = len(requests_in(log_path)) - before
                check(f"{label}:   the server saw its requests ({seen})", seen >= 1)
                if path == "tor":
                    check(f"through Tor:   the phone connected only to its tor's SOCKS port, never to the server "
                          f"({peers.samples} samples)",
                          socks in peers.remotes and server_addr not in peers.remotes and peers.remotes <= {socks},
                          sorted(peers.remotes))

        watch.stop()
        check(f"no tor socket left loopback ({watch.samples} samples of {len(net.pids())} processes)",
              not watch.foreign and watch.samples > 10, watch.foreign[:5])

        say("")
        say(f"{'what':<34}{'through Tor':>14}{'direct':>10}{'ratio':>8}")
        for what, media in ((f"{args.reports} reports, one sync", False),
                            (f"{args.attachment_mib} MiB attachment", True)):
            a, b = times[("tor", media)], times[("direct", media)]
            say(f"{what:<34}{a:>12.2f} s{b:>8.2f} s{a / b:>7.1f}x")
        say(f"tor bootstrapped after {t_boot:.1f} s; the onion service answered after {t_onion:.1f} s; the "
            f"{len(net.pids())} tor processes peaked at {sum(harness.peak_rss_mib(p) for p in net.pids()):.0f} MiB")
        ok = True
    except (AssertionError, subprocess.SubprocessError) as e:
        check(str(e).splitlines()[0] if str(e) else type(e).__name__, False, str(e))
    finally:
        if watch is not None:
            watch.stop()
        net.stop()
        if server_proc is not None:
            stop_process(server_proc, 20)
        if not ok:
            for n in net.nodes:
                say(f"--- {n['nick']}: the end of its log ({n['dir']})\n{net.tail(n, 8)}")

    if ok:  # The server holds exactly what the phones sealed; the desk verifies every report and attachment.
        stores = [s for pair in phones.values() for s in pair]
        problems, n = harness.check_delivered(dala, server_bin, server.data, org_key, stores)
        check(f"the server's export holds the {n} sealed reports, each verified by the desk", not problems,
              problems)
    say(f"the whole test took {time.monotonic() - t_all:.0f} s")
    if failures or args.keep:
        say(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
