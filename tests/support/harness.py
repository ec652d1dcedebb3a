"""Shared by the Python test scripts (tests/reliability/*.py, tests/bench/upload_bench.py): the command line
every one of them takes, running the CLIs with a timeout, a free loopback port, a process's memory, the
organisation's desk (its key file from `dala desk keygen`, invites signed by it with `dala desk invite`), a
dala-server process (init for the organisation, invite through the desk, run until it listens, stop),
phones, and the end-to-end check that a server holds exactly what phones sealed. Import it with
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
# The store records no Argon2id cost: every command on these stores is given the same one (KDF).
ENV = dict(os.environ, DALA_PASSPHRASE="reliability trials", DALA_KDF_OPS="1", DALA_KDF_MEM_MIB="8")
KDF = ["--kdf-ops", "1", "--kdf-mem-mib", "8"]


def parser(doc, seed=True):
    """An argparse parser taking BIN_DIR (the directory holding dala and dala-server) and, with seed,
    --seed S (default: the time now)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bin_dir", metavar="BIN_DIR", type=os.path.abspath,
                   help="the directory holding dala and dala-server")
    if seed:
        p.add_argument("--seed", type=int, default=int(time.time()), metavar="S",
                       help="replays a run (default: the time now)")
    return p


def binaries(bin_dir):
    """(dala, dala-server) in bin_dir."""
    return os.path.join(bin_dir, "dala"), os.path.join(bin_dir, "dala-server")


def run(*args, check=True, timeout=60, env=None):
    """Runs a command (output captured as text) within timeout seconds (None: no limit); with check, an
    exit other than 0 raises AssertionError naming the command and its stderr."""
    p = subprocess.run(list(args), env=ENV if env is None else env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    return p


def measured(cmd, env=None):
    """Runs cmd (stdout discarded); returns (seconds, peak RSS in MiB, exit code, stderr)."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - start, usage.ru_maxrss / 1024, p.returncode, p.stderr.read().decode()


def _varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def pb_fields(data):
    """The top-level protobuf fields of data (varint and length-delimited only): (number, start, end) of
    each whole field, for tests that cut, repeat or alter an export's entries."""
    out, i = [], 0
    while i < len(data):
        start = i
        tag, i = _varint(data, i)
        if tag & 7 == 0:
            _, i = _varint(data, i)
        elif tag & 7 == 2:
            n, i = _varint(data, i)
            i += n
        else:
            raise ValueError("wire type")
        out.append((tag >> 3, start, i))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, tries=400, interval=0.025):
    """Returns once something accepts connections on 127.0.0.1:port; exits the script if nothing does."""
    for _ in range(tries):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(interval)
    raise SystemExit(f"nothing listens on {port}")


def _status_mib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mib(pid):
    """A running process's resident memory now (VmRSS), in MiB."""
    return _status_mib(pid, "VmRSS")


def peak_rss_mib(pid):
    """A running process's peak resident memory so far (VmHWM), in MiB."""
    return _status_mib(pid, "VmHWM")


class Desk:
    """The organisation's desk: a key file made by `dala desk keygen` (passphrase: ENV's DALA_PASSPHRASE)
    and the invites it signs with `dala desk invite`. identity is the DALA-ORG1-... that keygen printed."""

    def __init__(self, dala, key, name=None):
        self.dala, self.key = dala, key
        extra = ["--name", name] if name is not None else []
        self.identity = run(dala, "desk", "keygen", "--out", key, *extra, *KDF).stdout.strip()
        if not self.identity.startswith("DALA-ORG1-") or "\n" in self.identity:
            raise AssertionError(f"dala desk keygen printed {self.identity!r}, not an organisation identity alone")

    def invite(self, server_key, *urls, uses=None, expires=None, tls_pin=None, equivalent=False):
        """A new invite (DALA2-...) to the server whose key is server_key, dialled at urls, for uses phones
        (default: dala desk invite's), valid for expires (30m, 12h, 7d; default its); with equivalent, the
        addresses may stand in for one another."""
        extra = [a for u in urls for a in ("--url", u)]
        extra += ["--addresses-equivalent"] if equivalent else []
        extra += ["--uses", str(uses)] if uses is not None else []
        extra += ["--expires", expires] if expires is not None else []
        extra += ["--tls-pin", tls_pin] if tls_pin is not None else []
        text = run(self.dala, "desk", "invite", "--key", self.key, "--server-key", server_key, *extra).stdout.strip()
        if not text.startswith("DALA2-") or "\n" in text:
            raise AssertionError(f"dala desk invite printed {text!r}, not an invite alone")
        return text


def backend_init_args():
    """`dala-server init`'s storage options for the backend the tests run on (DALA_TEST_BACKEND): nothing for
    the embedded database; for postgres, --database with a new database in the test cluster; with
    DALA_TEST_BLOBS=s3, --blobs with a prefix of its own in the test bucket."""
    blobs = []
    if os.environ.get("DALA_TEST_BLOBS", "") == "s3":
        # Attachments in the bucket of tests/support/seaweedfs.py, under a prefix of this server's own.
        url = os.environ.get("DALA_TEST_S3_URL")
        if not url:
            raise AssertionError("DALA_TEST_BLOBS=s3 runs through tests/support/seaweedfs.py")
        blobs = ["--blobs", f"{url}&prefix=t{os.urandom(6).hex()}/"]
    backend = os.environ.get("DALA_TEST_BACKEND", "embedded")
    if backend == "embedded":
        return blobs
    if backend != "postgres":
        raise AssertionError(f"DALA_TEST_BACKEND={backend!r}: embedded or postgres")
    base = os.environ.get("DALA_TEST_POSTGRES_URL")
    if not base:
        raise AssertionError("DALA_TEST_BACKEND=postgres runs through tests/support/postgres.py")
    name = "dala_" + os.urandom(6).hex()
    subprocess.run(["psql", "-X", "-q", base, "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True,
                   timeout=60)
    return ["--database", base.rsplit("/", 1)[0] + "/" + name, *blobs]


class Server:
    """A dala-server data directory and the process serving it on 127.0.0.1:port; its invites come from
    desk (a Desk), which signs them for the server's key (what init printed on its last line)."""

    def __init__(self, binary, data, port=None, desk=None):
        self.binary, self.data, self.proc, self.desk, self.key = binary, data, None, desk, None
        self.port = free_port() if port is None else port

    def init(self, organisation=None):
        """Creates the data directory for organisation (an identity, DALA-ORG1-...; default: desk's) and
        keeps the server's public key, which init prints alone on its last stdout line. With
        DALA_TEST_BACKEND=postgres (and the cluster of tests/support/postgres.py), in a new database of it."""
        if organisation is None:
            organisation = self.desk.identity
        out = run(self.binary, "init", "--data", self.data, "--organisation", organisation,
                  *backend_init_args()).stdout
        lines = out.strip().splitlines()
        self.key = lines[-1].strip() if lines else ""
        if len(self.key) != 64 or any(c not in "0123456789abcdef" for c in self.key.lower()):
            raise AssertionError(f"dala-server init's last line is {self.key!r}, not the server's key (64 hex)")
        return self.key

    def invite(self, url=None, uses=None):
        """A new invite from the desk to url (default: this server directly), for uses phones (default: the
        desk's, one)."""
        if self.desk is None or self.key is None:
            raise AssertionError("Server.invite needs a desk and an initialised server (init)")
        return self.desk.invite(self.key, url or f"http://127.0.0.1:{self.port}", uses=uses)

    def start(self, *extra):
        """Runs it (quiet; stderr discarded) and returns once it listens."""
        self.proc = subprocess.Popen([self.binary, "run", "--data", self.data, "--listen", f"127.0.0.1:{self.port}",
                                      "--quiet", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.proc.stdout.readline()  # "listening on ..."

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=20):
        if self.alive():
            self.proc.terminate()
            self.proc.wait(timeout=timeout)

    def peak_rss_mib(self):
        return peak_rss_mib(self.proc.pid)


def new_server(dala, server_bin, work, port=None):
    """An organisation key (work/org.key, its Desk as server.desk) and a dala-server data directory (work/srv)
    for it, not running yet: (org key file, Server)."""
    desk = Desk(dala, os.path.join(work, "org.key"))
    server = Server(server_bin, os.path.join(work, "srv"), port, desk)
    server.init(desk.identity)
    return desk.key, server


def new_phone(dala, store, invite, include_existing=False):
    """A new store at store, joined to the server of invite (with include_existing, the reports sealed
    before the join are sent too; a new store has none)."""
    run(dala, "init", "--store", store, *KDF)
    run(dala, "join", "--store", store, *(["--include-existing"] if include_existing else []), invite)
    return store


def reports(dala, store):
    """`dala report list --json`: every report's latest version."""
    return json.loads(run(dala, "report", "list", "--store", store, "--json").stdout)


def receipts(dala, store):
    """`dala receipts --json`: the receipts a phone holds."""
    return json.loads(run(dala, "receipts", "--store", store, "--json").stdout)


def receipted_versions(dala, store):
    """(id, version) of every version a phone holds a receipt for."""
    return {(r["id"], r["version"]) for r in receipts(dala, store)}


def sealed_versions(dala, store):
    """(id, version) of every sealed version on a phone."""
    out = set()
    for r in reports(dala, store):
        last = r["version"] if r["state"] != "draft" else r["version"] - 1
        out.update((r["id"], v) for v in range(1, last + 1))
    return out


def check_delivered(dala, server_bin, server_data, org_key, stores):
    """Problems (a list of strings) unless every phone's sealed versions are delivered with verified
    receipts and the server's export holds exactly those versions, each once, every one verified by the
    desk (signatures, receipts and attachment hashes)."""
    problems = []
    expected = set()
    for store in stores:
        mine = sealed_versions(dala, store)
        expected |= mine
        held = receipts(dala, store)
        got = {(r["id"], r["version"]) for r in held}
        if got != mine or len(held) != len(mine) or not all(r["verified"] for r in held):
            problems.append(f"{store}: {len(held)} receipts ({len(got)} distinct) for {len(mine)} sealed "
                            f"versions; missing {sorted(mine - got)[:5]}; all verified: "
                            f"{all(r['verified'] for r in held)}")
        rejected = [r["id"] for r in reports(dala, store) if r["state"] == "rejected"]
        if rejected:
            problems.append(f"{store}: rejected reports {rejected}")
    with tempfile.TemporaryDirectory(prefix="dala-export-") as tmp:
        export = os.path.join(tmp, "export.dala")
        run(server_bin, "export", "--data", server_data, "--out", export)
        desk = os.path.join(tmp, "desk")
        opened = run(dala, "desk", "open", "--key", org_key, "--from", export, "--out", desk, check=False)
        with open(os.path.join(desk, "summary.json")) as f:
            summary = json.load(f)
        held = [(r["id"], r["version"]) for r in summary["items"]]
        if len(held) != len(set(held)):
            problems.append(f"the server holds {len(held) - len(set(held))} versions more than once")
        if set(held) != expected:
            problems.append(f"the server holds {len(set(held))} versions, the phones sealed {len(expected)}: "
                            f"missing {sorted(expected - set(held))[:5]}, extra {sorted(set(held) - expected)[:5]}")
        if opened.returncode != 0 or summary.get("failed", 0) != 0:
            problems.append(f"the desk found {summary.get('failed')} reports failing a check: {opened.stdout.strip()}")
    return problems, len(expected)


if __name__ == "__main__":
    import sys  # noqa: F811
    # For shell tests: `python3 harness.py init-args` prints backend_init_args(), one per line.
    if sys.argv[1:] != ["init-args"]:
        sys.exit("usage: harness.py init-args")
    print("\n".join(backend_init_args()))
