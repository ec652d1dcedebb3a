#!/usr/bin/env python3
"""A real PostgreSQL 15 cluster for the tests: initdb into a new directory, the server on 127.0.0.1 at a
free port (and a Unix socket in that directory only), trust authentication for its own database user, and
stopped (fast) at the end. PostgreSQL refuses to run as root: under root the cluster belongs to nobody.

As a program: postgres.py -- COMMAND...: runs COMMAND with DALA_TEST_POSTGRES_URL set to the cluster's
URL (postgresql://dala@127.0.0.1:PORT/dala) and returns its exit code, the cluster stopped whatever happens.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import free_port  # noqa: E402

BIN = "/usr/lib/postgresql/15/bin"
NOBODY = 65534


class Cluster:
    def __init__(self, parent=None, settings=None):
        self.settings = dict(settings or {})  # more -c NAME=VALUE for the server
        self.dir = tempfile.mkdtemp(prefix="dala-pg-", dir=parent)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.url = f"postgresql://dala@127.0.0.1:{self.port}/dala"
        self.proc = None

    def _as_owner(self, args, **kw):
        if os.getuid() == 0:
            args = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *args]
        return args

    def init(self):
        if os.getuid() == 0:
            os.chown(self.dir, NOBODY, NOBODY)
        subprocess.run(self._as_owner([f"{BIN}/initdb", "-D", self.data, "-U", "dala", "--auth=trust",
                                       "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                       check=True, capture_output=True, timeout=120)
        return self

    def start(self, timeout=60):
        """Starts the server and waits until it accepts connections."""
        log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(self._as_owner([
            f"{BIN}/postgres", "-D", self.data, "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=on", "-c", "max_connections=200",
            "-c", "shared_buffers=64MB", "-c", "logging_collector=off",
            *[a for k, v in self.settings.items() for a in ("-c", f"{k}={v}")]]), stdout=log, stderr=log)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: " + open(os.path.join(self.dir, "server.log")).read()[-2000:])
            r = subprocess.run([f"{BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-U", "dala"],
                               capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("postgres did not start in time")
        if not getattr(self, "_created", False):
            subprocess.run([f"{BIN}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "dala", "dala"],
                           check=True, capture_output=True, timeout=60)
            self._created = True
        return self

    def stop(self, mode=signal.SIGINT, timeout=60):
        """Stops the server (SIGINT: PostgreSQL's fast shutdown; SIGKILL: a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(mode)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def psql(self, sql, url=None):
        """sql run by psql on the cluster's database (or url's); its unaligned output."""
        return subprocess.run(["psql", "-X", "-q", "-A",
                               "-t", "-v", "ON_ERROR_STOP=1", url or self.url, "-c", sql],
                              check=True, capture_output=True, text=True, timeout=60).stdout

    def standby(self, **settings):
        """A streaming standby of this (running) cluster, not started: its own directory and port, its data
        from pg_basebackup -R (streaming from this one's port)."""
        sb = Cluster(os.path.dirname(self.dir), settings)
        if os.getuid() == 0:
            os.chown(sb.dir, NOBODY, NOBODY)
        subprocess.run(self._as_owner([f"{BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "dala",
                                       "-D", sb.data, "-R", "-X", "stream", "--no-sync"]),
                       check=True, capture_output=True, timeout=120)
        sb._created = True  # its databases came with the base backup
        return sb

    def promote(self, timeout=60):
        """Makes this standby a primary (pg_ctl promote) and returns once it takes writes."""
        subprocess.run(self._as_owner([f"{BIN}/pg_ctl", "promote", "-D", self.data, "-w", "-t", str(timeout)]),
                       check=True, capture_output=True, timeout=timeout + 10)

    def new_database(self):
        """The URL of a new, empty database in the cluster."""
        name = "dala_" + os.urandom(6).hex()
        self.psql(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def cluster(parent=None):
    c = Cluster(parent).init()
    try:
        c.start()
        yield c
    finally:
        c.remove()


def main():
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print(__doc__)
        return 2
    with cluster() as c:
        return subprocess.run(args, env=dict(os.environ, DALA_TEST_POSTGRES_URL=c.url)).returncode


if __name__ == "__main__":
    sys.exit(main())
