#!/usr/bin/env python3
"""dala-server on a PostgreSQL primary with a synchronous streaming standby (issue 16), both real
PostgreSQL 15 servers this test starts on 127.0.0.1 (tests/support/postgres.py). The server's database URL
names both hosts with target_session_attrs=read-write, as docs/operations.md says to. While phones push,
the primary is SIGKILLed and the standby promoted: pushes in the gap get "try later", the same server process
reconnects to the new primary by itself, and in the end every version is stored exactly once, every phone
holds verified receipts, the desk verifies the one log (no fork: synchronous replication lost no commit
that a phone holds a receipt for), and `dala-server check` is clean.

Usage: failover_test.py BIN_DIR [--reports N]."""
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
import postgres  # noqa: E402

FAILED = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  ({detail})"))
    if not ok:
        FAILED.append(what)


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    per_phone = int(sys.argv[sys.argv.index("--reports") + 1]) if "--reports" in sys.argv else 8
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-failover-")
    primary = postgres.Cluster().init()
    standby = None
    server = None
    try:
        primary.start()
        standby = primary.standby()
        standby.start()
        # From now every commit waits until the standby has it: a failover loses no push that was answered.
        primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        primary.psql("SELECT pg_reload_conf()")
        for _ in range(300):
            sync = primary.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").strip()
            if sync == "1":
                break
            time.sleep(0.1)
        check("the standby streams synchronously from the primary", sync == "1", sync)
        url = (f"postgresql://dala@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/dala"
               "?target_session_attrs=read-write&connect_timeout=3")
        desk = harness.Desk(dala, os.path.join(work, "org.key"))
        server = harness.Server(server_bin, os.path.join(work, "srv"), desk=desk)
        out = harness.run(server_bin, "init", "--data", server.data, "--organisation", desk.identity,
                          "--database", url).stdout
        server.key = out.strip().splitlines()[-1]
        server.start()
        phones = [harness.new_phone(dala, os.path.join(work, f"phone{i}"), server.invite(uses=1)) for i in range(3)]

        errors = []

        def push(store, i):
            try:
                for n in range(per_phone):
                    harness.run(dala, "report", "add", "--store", store, "--form", "detention/1", "--field",
                                f"place=Square {i}.{n}", "--text", f"Seen at square {i}.{n}.", "--seal")
                    harness.run(dala, "sync", "--store", store, "--now", "--timeout", "20", check=False, timeout=60)
                    time.sleep(0.1)
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(repr(e))

        threads = [threading.Thread(target=push, args=(p, i)) for i, p in enumerate(phones)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        before = sum(len(harness.receipted_versions(dala, p)) for p in phones)
        primary.stop(signal.SIGKILL)  # the primary's machine dies
        time.sleep(0.5)
        standby.promote()
        for t in threads:
            t.join(timeout=600)
        check("the phones kept writing and syncing through the failover", not errors, errors[:2])
        check(f"pushes were answered before the primary died ({before} receipts)", before > 0, before)
        check("the same server process went on (no restart)", server.alive())
        for _ in range(10):  # what was left in the gap goes now
            codes = [harness.run(dala, "sync", "--store", p, "--now", "--timeout", "30", check=False,
                                 timeout=90).returncode for p in phones]
            if all(c == 0 for c in codes):
                break
            time.sleep(1)
        check("every phone delivered everything once the standby was promoted", all(c == 0 for c in codes), codes)
        problems, n = harness.check_delivered(dala, server_bin, server.data, desk.key, phones)
        check(f"every version ({n}) stored once, receipts verified, the desk verifies the one log (no fork)",
              not problems, problems[:3])
        r = harness.run(server_bin, "check", "--data", server.data, check=False)
        check("dala-server check on the promoted standby: clean", r.returncode == 0, r.stderr[-300:])
    finally:
        if server is not None and server.alive():
            server.stop()
        if standby is not None:
            standby.remove()
        primary.remove()
        shutil.rmtree(work, ignore_errors=True)
    if FAILED:
        print(f"{len(FAILED)} checks failed: {FAILED}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
