#!/usr/bin/env python3
"""Network chaos (issue 6): phones write reports (some with media) and sync them to dala-server through
tests/reliability/chaosproxy.py, which gives every connection a random fault plan: cuts (reset or end of
stream) at random byte offsets, stalls and black holes, throttling, latency, flipped bytes. Several phones
sync at once. Then the network heals and each phone syncs until nothing is left. The server must hold
exactly the versions the phones sealed, each once, the desk must verify every one (signatures, receipts,
attachment hashes), and every phone must hold a verified receipt for each and no rejected report.

Usage: network_chaos.py BIN_DIR [--sessions N] [--phones P] [--seed S]   (prints a summary; exit 1 on any
discrepancy)
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ENV, KDF, Server, check_delivered, free_port, run  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
SESSIONS = int(sys.argv[sys.argv.index("--sessions") + 1]) if "--sessions" in sys.argv else 30
PHONES = int(sys.argv[sys.argv.index("--phones") + 1]) if "--phones" in sys.argv else 3
SEED = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else int(time.time())
rng = random.Random(SEED)
DALA, SERVER = os.path.join(BIN, "dala"), os.path.join(BIN, "dala-server")
PROXY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chaosproxy.py")


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
        reports = json.loads(run(DALA, "report", "list", "--store", store, "--json").stdout)
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
        org_key = os.path.join(work, "org.key")
        pk = run(DALA, "desk", "keygen", "--out", org_key, *KDF).stdout.strip()
        run(SERVER, "init", "--data", os.path.join(work, "srv"), "--recipient", pk)
        server = Server(SERVER, os.path.join(work, "srv"), free_port())
        server.start()
        proxy_port = free_port()
        proxy = subprocess.Popen([sys.executable, PROXY, str(proxy_port), str(server.port), str(SEED)],
                                 stdout=subprocess.PIPE, text=True)
        proxy.stdout.readline()
        invite = run(SERVER, "invite", "--data", server.data, "--url", f"http://127.0.0.1:{proxy_port}",
                     "--uses", str(PHONES)).stdout.strip()
        stores = []
        for i in range(PHONES):
            store = os.path.join(work, f"phone{i}")
            run(DALA, "init", "--store", store, *KDF)
            run(DALA, "join", "--store", store, invite)
            stores.append(store)

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
        proxy.send_signal(signal.SIGUSR1)
        for store in stores:
            for _ in range(10):
                if run(DALA, "sync", "--store", store, "--now", "--timeout", "60", check=False).returncode == 0:
                    break
                time.sleep(0.5)
        problems, versions = check_delivered(DALA, SERVER, server.data, org_key, stores)
    finally:
        stats = {}
        if proxy:
            proxy.terminate()
            try:
                stats = json.loads(proxy.communicate(timeout=20)[0].strip().splitlines()[-1])
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
