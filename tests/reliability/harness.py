"""Shared by the reliability tests: running the CLIs, a free loopback port, a dala-server process, and the
end-to-end check that a server holds exactly what phones sealed."""
import json
import os
import socket
import subprocess
import tempfile

ENV = dict(os.environ, DALA_PASSPHRASE="reliability trials")
KDF = ["--kdf-ops", "1", "--kdf-mem-mib", "8"]


def run(*args, check=True, timeout=60):
    p = subprocess.run(list(args), env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, binary, data, port):
        self.binary, self.data, self.port, self.proc = binary, data, port, None

    def start(self, *extra):
        self.proc = subprocess.Popen([self.binary, "run", "--data", self.data, "--listen", f"127.0.0.1:{self.port}",
                                      "--quiet", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.proc.stdout.readline()  # "listening on ..."

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def sealed_versions(dala, store):
    """(id, version) of every sealed version on a phone."""
    out = set()
    for r in json.loads(run(dala, "report", "list", "--store", store, "--json").stdout):
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
        receipts = json.loads(run(dala, "receipts", "--store", store, "--json").stdout)
        got = {(r["id"], r["version"]) for r in receipts}
        if got != mine or len(receipts) != len(mine) or not all(r["verified"] for r in receipts):
            problems.append(f"{store}: {len(receipts)} receipts ({len(got)} distinct) for {len(mine)} sealed "
                            f"versions; missing {sorted(mine - got)[:5]}; all verified: "
                            f"{all(r['verified'] for r in receipts)}")
        rejected = [r["id"] for r in json.loads(run(dala, "report", "list", "--store", store, "--json").stdout)
                    if r["state"] == "rejected"]
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
