#!/usr/bin/env python3
"""Network chaos (issue 6): phones write reports (some with media) and sync them to dala-server through
tools/faultproxy.py (mode chaos), which gives every connection a random fault plan: cuts (reset or end of
stream) at random byte offsets, stalls and black holes, throttling, latency, flipped bytes. Several phones
sync at once. Then the network heals and each phone syncs until nothing is left. The server must hold
exactly the versions the phones sealed, each once, the desk must verify every one (signatures, receipts,
attachment hashes), and every phone must hold a verified receipt for each and no rejected report.

Usage: network_chaos.py BIN_DIR [--sessions N] [--phones P] [--seed S]   (prints a summary; exit 1 on any
discrepancy)
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path[:0] = [os.path.join(HERE, "..", "support"), os.path.join(HERE, "..", "..", "tools")]
import faultproxy  # noqa: E402
import harness  # noqa: E402
from harness import ENV, check_delivered, free_port, run  # noqa: E402

_cli = harness.parser(__doc__)
_cli.add_argument("--sessions", type=int, default=30, metavar="N", help="sync sessions (default 30)")
_cli.add_argument("--phones", type=int, default=3, metavar="P", help="phones (default 3)")
ARGS = _cli.parse_args()
BIN, SESSIONS, PHONES, SEED = ARGS.bin_dir, ARGS.sessions, ARGS.phones, ARGS.seed
rng = random.Random(SEED)
DALA, SERVER = harness.binaries(BIN)


def write_reports(work, store, n_session):
    """0-2 new reports (a third with media up to 1.5 MB), sometimes a new version of an existing one."""
    for k in range(rng.randint(0, 2)):
        cmd = [DALA, "report", "add", "--store", store, "--form", "detention/1", "--text", f"session {n_session}.{k}",
               "--seal"]
        if rng.random() < 0.35:
            media = os.path.join(work, f"clip-{n_session}-{k}.jpg")
            with open(media, "wb") as f:
                f.write(os.urandom(rng.randint(10_000, 1_500_000)))
            cmd += ["--attach", media]
        run(*cmd)
    if rng.random() < 0.2:
        reports = harness.reports(DALA, store)
        if reports:
            r = rng.choice(reports)
            run(DALA, "report", "edit", "--store", store, r["id"], "--text", f"corrected in session {n_session}",
                "--seal")


def main():
    work = tempfile.mkdtemp(prefix="dala-chaos-")
    server = proxy = None
    problems = []
    outcomes = {}
    try:
        org_key, server = harness.new_server(DALA, SERVER, work)
        server.start()
        proxy_port = free_port()
        proxy = faultproxy.Proxy("chaos", proxy_port, server.port, SEED)
        invite = server.invite(url=f"http://127.0.0.1:{proxy_port}", uses=PHONES)
        stores = [harness.new_phone(DALA, os.path.join(work, f"phone{i}"), invite) for i in range(PHONES)]

        for n in range(SESSIONS):
            # Some phones write, then all of them sync at once, each through its own chaotic connections.
            syncing = rng.sample(stores, rng.randint(1, PHONES))
            for store in syncing:
                write_reports(work, store, n)
            procs = [subprocess.Popen([DALA, "sync", "--store", s, "--timeout", str(rng.randint(2, 8))], env=ENV,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for s in syncing]
            for p in procs:
                code = p.wait(timeout=120)
                outcomes[code] = outcomes.get(code, 0) + 1

        # The network heals: every phone syncs (sending everything queued now) until nothing is left.
        proxy.heal()
        for store in stores:
            for _ in range(10):
                if run(DALA, "sync", "--store", store, "--now", "--timeout", "60", check=False).returncode == 0:
                    break
                time.sleep(0.5)
        problems, versions = check_delivered(DALA, SERVER, server.data, org_key, stores)
    finally:
        stats = {}
        if proxy:
            try:
                stats = json.loads(proxy.stop(timeout=20).strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                proxy.kill()
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"network chaos: seed {SEED}, {SESSIONS} sessions, {PHONES} phones, sync exits {outcomes}, "
          f"proxy {stats}")
    for p in problems:
        print("DISCREPANCY:", p)
    if not problems:
        print(f"{versions} sealed versions, each on the server exactly once and verified by the desk; 0 discrepancies")
    return 1 if problems else 0


sys.exit(main())
