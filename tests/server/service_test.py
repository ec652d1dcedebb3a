#!/usr/bin/env python3
"""dala-server as a service (issue 16, the operator kit): the systemd unit in the repo passes
`systemd-analyze verify` with no warning and its offline security review; the server speaks systemd's notify
protocol (READY, RELOADING with MONOTONIC_USEC, WATCHDOG pings, STOPPING) to a NOTIFY_SOCKET this test
binds; SIGHUP loads a renewed TLS certificate for new connections while an open connection keeps working,
and the config file again (quiet, restart-only settings named); a certificate or config that fails changes
nothing; a config file with an unknown key, section or bad value is refused naming its line.

Usage: service_test.py BIN_DIR SOURCE_DIR. Everything listens on 127.0.0.1 and is stopped at the end."""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402

FAILED = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  ({detail})"))
    if not ok:
        FAILED.append(what)


def unit_checks(server_bin, source, work):
    unit = os.path.join(work, "dala-server.service")
    with open(os.path.join(source, "sync", "server", "systemd", "dala-server.service.in")) as f:
        text = f.read().replace("@DALA_SERVER_BIN@", server_bin)
    with open(unit, "w") as f:
        f.write(text)
    v = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True, timeout=60)
    check("the systemd unit passes systemd-analyze verify with no warning", v.returncode == 0 and not v.stderr.strip()
          and not v.stdout.strip(), (v.returncode, v.stderr[-400:]))
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, _, val = line.partition("=")
            settings.setdefault(k.strip(), []).append(val.strip())
    want = {"Type": "notify", "NotifyAccess": "main", "StateDirectory": "dala-server", "User": "dala-server",
            "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "UMask": "0077",
            "ExecReload": "/bin/kill -HUP $MAINPID"}
    missing = {k: v for k, v in want.items() if v not in settings.get(k, [])}
    check("  it runs as its own user in its StateDirectory, Type=notify, reload by SIGHUP, hardened", not missing,
          missing)
    check("  with a watchdog", int(settings.get("WatchdogSec", ["0"])[0]) > 0, settings.get("WatchdogSec"))
    s = subprocess.run(["systemd-analyze", "security", "--offline=true", unit], capture_output=True, text=True,
                       timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", s.stdout)
    exposure = float(m.group(1)) if m else 99.0
    check(f"  systemd-analyze security rates its exposure {exposure} (at most 2.0: 'OK')", exposure <= 2.0,
          s.stdout[-300:])


class Notifications:
    """A NOTIFY_SOCKET as systemd binds it: a Unix datagram socket; each message is KEY=VALUE lines."""

    def __init__(self, work, name="notify.sock"):
        self.path = os.path.join(work, name)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.got = []

    def wait_for(self, key, value=None, timeout=10.0):
        """The first message (after those already read) that sets key (to value); None on timeout."""
        end = time.time() + timeout
        while time.time() < end:
            self.sock.settimeout(max(0.01, end - time.time()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                return None
            fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.got.append(fields)
            if key in fields and (value is None or fields[key] == value):
                return fields
        return None


def make_cert(work, name, key_of=None):
    """A self-signed certificate for 127.0.0.1 (with a new key, or key_of's): (cert path, key path, DER)."""
    cert, key = os.path.join(work, name + ".crt"), os.path.join(work, name + ".key")
    if key_of is None:
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key],
                       check=True, capture_output=True)
    else:
        shutil.copy(key_of, key)
    subprocess.run(["openssl", "req", "-x509", "-key", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True, capture_output=True).stdout
    return cert, key, der


def tls_connection(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw)


def get(conn, path="/metrics"):
    """One keep-alive GET on conn; the status code (0 if the connection failed)."""
    try:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return 0
            head += chunk
        top, _, rest = head.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", top).group(1))
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return 0
            rest += chunk
        return int(top.split(b" ")[1])
    except OSError:
        return 0


class Log:
    """The server's stderr (JSON lines), read as it grows."""

    def __init__(self, path):
        self.path = path

    def events(self):
        out = []
        with open(self.path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_event(self, event, after=0, timeout=10.0):
        end = time.time() + timeout
        while time.time() < end:
            found = [e for e in self.events()[after:] if e.get("event") == event]
            if found:
                return found[0]
            time.sleep(0.05)
        return None


def write_config(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def config_errors(server_bin, work, data):
    cases = {
        "an unknown key": (["# dala-server", "[run]", f'data = "{data}"', "lisen = \"127.0.0.1:1\""], 4, "lisen"),
        "a bad value": (["[run]", f'data = "{data}"', "threads = 0"], 3, "threads"),
        "an unknown section": ([f'data = "{data}"', "", "[serve]", "threads = 2"], 3, "serve"),
    }
    for what, (lines, line, word) in cases.items():
        path = os.path.join(work, "bad.toml")
        write_config(path, lines)
        r = subprocess.run([server_bin, "run", "--config", path], capture_output=True, text=True, timeout=30)
        check(f"a config file with {what} is refused (exit 2), naming line {line}",
              r.returncode == 2 and f"line {line}:" in r.stderr and word in r.stderr, (r.returncode, r.stderr[-300:]))


def stuck_event_loop(server_bin, server, work):
    """The watchdog's other half: a server whose I/O threads are stuck stops pinging, and pings again once they
    are free. Each request is held 5 s on the I/O thread that routes it (a test-only failpoint); three at once
    hold both threads, and the watchdog's check (a task posted to them, answered within 1 s) fails."""
    notify = Notifications(work, "notify-stuck.sock")
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000",
               DALA_TEST_FAILPOINT_STALL="server.io.route:5000")
    env.pop("WATCHDOG_PID", None)
    with open(os.path.join(work, "stuck.log"), "w") as err:
        proc = subprocess.Popen([server_bin, "run", "--data", server.data, "--listen", f"127.0.0.1:{server.port}"],
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        stuck_checks(proc, notify, server)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    return proc


def stuck_checks(proc, notify, server):
    check("a server started with a 2 s watchdog is ready and pings it", notify.wait_for("READY", "1") is not None
          and notify.wait_for("WATCHDOG", "1", timeout=5) is not None, notify.got[-3:])
    answers = []

    def health():
        try:
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            answers.append(get(conn, "/v2/health"))
            conn.close()
        except OSError:
            answers.append(0)

    threads = [threading.Thread(target=health) for _ in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    # A ping already on its way when the threads were taken may still arrive; none after that, while stuck.
    quiet_from, quiet_to = t0 + 1.5, t0 + 4.5
    pings_while_stuck = []
    while time.monotonic() < quiet_to:
        got = notify.wait_for("WATCHDOG", "1", timeout=quiet_to - time.monotonic())
        if got is not None and time.monotonic() >= quiet_from:
            pings_while_stuck.append(round(time.monotonic() - t0, 2))
    check("  with both I/O threads stuck, it stops pinging (nothing from 1.5 s to 4.5 s)", not pings_while_stuck,
          pings_while_stuck)
    resumed = notify.wait_for("WATCHDOG", "1", timeout=8)
    for t in threads:
        t.join(timeout=20)
    check("  once they are free it pings again, and the held requests are answered",
          resumed is not None and answers == [200, 200, 200], (answers, notify.got[-3:]))
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def main():
    bin_dir, source = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-service-")
    proc = None
    try:
        unit_checks(server_bin, source, work)
        _, server = harness.new_server(dala, server_bin, work)
        config_errors(server_bin, work, server.data)

        a_cert, a_key, a_der = make_cert(work, "a")
        cert, key = os.path.join(work, "live.crt"), os.path.join(work, "live.key")
        shutil.copy(a_cert, cert)
        shutil.copy(a_key, key)
        config = os.path.join(work, "dala-server.toml")
        base = ["[run]", f'data = "{server.data}"', f'listen = "127.0.0.1:{server.port}"', f'tls-cert = "{cert}"',
                f'tls-key = "{key}"']
        write_config(config, base)
        notify = Notifications(work)
        # A 2 s watchdog: pinged each second while the I/O threads answer within that second (a loaded CI
        # machine still does; a stuck server does not).
        env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000")
        env.pop("WATCHDOG_PID", None)
        log = Log(os.path.join(work, "server.log"))
        with open(log.path, "w") as err:
            proc = subprocess.Popen([server_bin, "run", "--config", config], stdout=subprocess.DEVNULL, stderr=err,
                                    env=env)
        ready = notify.wait_for("READY", "1")
        check("the server tells systemd it is ready (READY=1, with a STATUS)", ready is not None and
              str(server.port) in ready.get("STATUS", ""), notify.got)
        pings, started = 0, time.time()
        end = started + 15
        while time.time() < end and pings < 3:
            if notify.wait_for("WATCHDOG", "1", timeout=end - time.time()):
                pings += 1
        took = time.time() - started
        check(f"  and pings the watchdog at half its interval while it serves (3 pings in {took:.1f} s)",
              pings == 3 and took >= 2.0, (pings, took, notify.got[-5:]))

        old = tls_connection(server.port)
        check("HTTPS serves the first certificate", old.getpeercert(binary_form=True) == a_der and get(old) == 200)

        # A renewed certificate (a new key), written over the same files: SIGHUP.
        b_cert, b_key, b_der = make_cert(work, "b")
        shutil.copy(b_cert, cert + ".new")
        shutil.copy(b_key, key + ".new")
        os.replace(key + ".new", key)
        os.replace(cert + ".new", cert)
        seen = len(log.events())
        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING", "1")
        check("SIGHUP: the server tells systemd it reloads (RELOADING=1 with MONOTONIC_USEC) ...",
              reloading is not None and reloading.get("MONOTONIC_USEC", "").isdigit(), notify.got[-3:])
        check("  ... and then that it is ready again", notify.wait_for("READY", "1") is not None, notify.got[-3:])
        reloaded = log.wait_event("reloaded", after=seen)
        check("  it logs the reload, with nothing needing a restart", reloaded is not None and
              reloaded.get("restart_needed_for") == [], reloaded)
        new = tls_connection(server.port)
        check("  new connections get the renewed certificate", new.getpeercert(binary_form=True) == b_der and
              get(new) == 200)
        check("  the connection opened before it keeps working (nothing dropped)", get(old) == 200 and
              old.getpeercert(binary_form=True) == a_der)
        new.close()

        # A broken renewal (the key of another certificate): refused, the server goes on with what it had.
        c_cert, _, _ = make_cert(work, "c")
        shutil.copy(c_cert, cert)
        seen = len(log.events())
        proc.send_signal(signal.SIGHUP)
        failed = log.wait_event("reload_failed", after=seen)
        check("a certificate that does not match its key: the reload fails, logged as such",
              failed is not None and "key" in failed.get("error", ""), failed)
        conn = tls_connection(server.port)
        check("  and the server still serves the certificate it had", conn.getpeercert(binary_form=True) == b_der and
              get(conn) == 200)
        conn.close()
        shutil.copy(b_cert, cert)

        # The config file again: quiet switched on at once; a restart-only setting named, not applied.
        seen = len(log.events())
        get(old, "/v1/nothing-here")
        logged_before = log.wait_event("request", after=seen, timeout=5) is not None
        write_config(config, base + ["quiet = true", "threads = 3"])
        seen = len(log.events())
        proc.send_signal(signal.SIGHUP)
        reloaded = log.wait_event("reloaded", after=seen)
        check("a config change: the reload names what takes a restart (threads)", reloaded is not None and
              reloaded.get("restart_needed_for") == ["threads"], reloaded)
        seen = len(log.events())
        conn = tls_connection(server.port)
        get(conn, "/v1/nothing-here")
        conn.close()
        time.sleep(0.3)
        check("  and applies quiet at once (requests logged before, not after)", logged_before and
              not [e for e in log.events()[seen:] if e.get("event") == "request"], log.events()[seen:])
        write_config(config, base + ["quiet = true", "body-timout = 5"])
        seen = len(log.events())
        proc.send_signal(signal.SIGHUP)
        failed = log.wait_event("reload_failed", after=seen)
        check("a config file with an unknown key on reload: refused naming line 7, the server serving on",
              failed is not None and "line 7:" in failed.get("error", "") and get(old) == 200, failed)

        proc.send_signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING", "1")
        code = proc.wait(timeout=30)
        check("SIGTERM: the server tells systemd it is stopping and exits 0", stopping is not None and code == 0,
              (code, notify.got[-3:]))
        old.close()
        proc = stuck_event_loop(server_bin, server, work)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    if FAILED:
        print(f"{len(FAILED)} checks failed: {FAILED}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
