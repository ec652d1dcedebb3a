#!/usr/bin/env python3
"""Crash consistency (issue 6): runs the dala CLI writing, sealing, capturing media and syncing, and kills
it with SIGKILL at random moments; sometimes kills dala-server in the middle of a sync too. After every
trial the store must open, pass its integrity check, hold every report a finished command reported (sealed,
never half-sealed), keep every finished attachment readable and identical, and hold no orphan media file.
At the end a clean sync must leave the server with each sealed report exactly once and the phone with a
verified receipt for each.

Usage: crash_trials.py BIN_DIR [--trials N] [--seed S]   (prints 'N passed, M failed')
"""
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.path.abspath(sys.argv[1])
TRIALS = int(sys.argv[sys.argv.index("--trials") + 1]) if "--trials" in sys.argv else 50
SEED = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else int(time.time())
rng = random.Random(SEED)
DALA, SERVER = os.path.join(BIN, "dala"), os.path.join(BIN, "dala-server")
ENV = dict(os.environ, DALA_PASSPHRASE="crash trials")
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


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Server:
    def __init__(self, data, port):
        self.data, self.port, self.proc = data, port, None

    def start(self):
        self.proc = subprocess.Popen([SERVER, "run", "--data", self.data, "--listen", f"127.0.0.1:{self.port}",
                                      "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.proc.stdout.readline()  # "listening on ..."

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def main():
    work = tempfile.mkdtemp(prefix="dala-crash-")
    store = os.path.join(work, "phone")
    server = None
    failures = []
    try:
        pk = run(DALA, "desk", "keygen", "--out", os.path.join(work, "org.key"), *KDF).stdout.strip()
        run(SERVER, "init", "--data", os.path.join(work, "srv"), "--recipient", pk)
        server = Server(os.path.join(work, "srv"), free_port())
        invite = run(SERVER, "invite", "--data", server.data, "--url", f"http://127.0.0.1:{server.port}",
                     "--uses", "1").stdout.strip()
        run(DALA, "init", "--store", store, *KDF)
        run(DALA, "join", "--store", store, invite)
        server.start()
        finished = {}  # report id -> sha256 of its attachment (or None): commands that exited 0
        kills = {}
        for trial in range(TRIALS):
            action = rng.choice(["report", "media", "media", "sync", "sync"])
            cmd = [DALA]
            media = None
            if action == "report":
                cmd += ["report", "add", "--store", store, "--form", "detention/1", "--text", f"trial {trial}", "--seal"]
            elif action == "media":
                media = os.path.join(work, f"clip{trial}.mp4")
                with open(media, "wb") as f:
                    f.write(os.urandom(rng.randint(100_000, 20_000_000)))
                cmd += ["report", "add", "--store", store, "--form", "detention/1", "--text", f"trial {trial}",
                        "--attach", media, "--seal"]
            else:
                cmd += ["sync", "--store", store, "--timeout", "10"]
            kill_server = action == "sync" and rng.random() < 0.3
            proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            # Most commands take 10 to 100 ms here: kill inside that window, so most trials cut one short.
            delay = rng.uniform(0.003, 0.03) if action == "report" else rng.uniform(0.005, 0.1)
            try:
                out, _ = proc.communicate(timeout=delay)
                killed = False
            except subprocess.TimeoutExpired:
                if kill_server:
                    server.kill()
                proc.send_signal(signal.SIGKILL)
                out, _ = proc.communicate()
                killed = True
                kills[action] = kills.get(action, 0) + 1
            if kill_server:
                server.kill()
                server.start()
            if not killed and proc.returncode == 0 and action in ("report", "media"):
                finished[out.strip()] = sha(media) if media else None
            if media:
                os.remove(media)  # its hash is what the checks need
            try:
                # Every trial: the store opens, passes its integrity check, and holds every finished report
                # sealed. Every 10 trials (and at the end): attachments byte for byte, and no orphan file.
                check_store(store, finished, full=trial % 10 == 9 or trial == TRIALS - 1)
            except AssertionError as e:
                failures.append(f"trial {trial} ({action}, killed={killed}): {e}")
        # The end: a clean sync delivers everything sealed exactly once, with verified receipts.
        for _ in range(20):
            if run(DALA, "sync", "--store", store, "--timeout", "30", check=False).returncode == 0:
                break
            time.sleep(0.5)
        reports = json.loads(run(DALA, "report", "list", "--store", store, "--json").stdout)
        sealed = [r for r in reports if r["state"] != "draft"]
        undelivered = [r["id"] for r in sealed if r["state"] != "delivered"]
        if undelivered:
            failures.append(f"after the final sync, not delivered: {undelivered}")
        receipts = json.loads(run(DALA, "receipts", "--store", store, "--json").stdout)
        if len(receipts) != len(sealed) or not all(r["verified"] for r in receipts):
            failures.append(f"{len(receipts)} receipts for {len(sealed)} sealed reports (all verified: "
                            f"{all(r['verified'] for r in receipts)})")
        devices = json.loads(run(SERVER, "devices", "--data", server.data, "--json").stdout)
        stored = sum(d["reports"] for d in devices)
        if stored != len(sealed):
            failures.append(f"the server holds {stored} reports for {len(sealed)} sealed on the phone")
        print(f"crash trials: seed {SEED}, {TRIALS} trials, SIGKILLs {kills}, {len(finished)} reports finished, "
              f"{len(sealed)} sealed, {stored} on the server")
    finally:
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for f in failures:
        print("FAIL:", f)
    print(f"{TRIALS + 1 - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


def check_store(store, finished, full):
    run(DALA, "check", "--store", store)
    reports = {r["id"]: r for r in json.loads(run(DALA, "report", "list", "--store", store, "--json").stdout)}
    for rid in finished:
        if rid not in reports:
            raise AssertionError(f"finished report {rid} is missing")
        if reports[rid]["state"] == "draft":
            raise AssertionError(f"report {rid} finished sealing but is a draft")
    if not full:
        return
    attachments = 0
    for rid, r in reports.items():
        shown = run(DALA, "report", "show", "--store", store, rid).stdout
        ids = [line.split()[0] for line in shown.splitlines() if line.startswith("  ") and "plaintext" in line]
        attachments += len(ids)
        if rid in finished:
            if r["state"] == "draft":
                raise AssertionError(f"report {rid} finished sealing but is a draft")
            want = finished[rid]
            if want is not None:
                if len(ids) != 1:
                    raise AssertionError(f"report {rid} lost its attachment")
                out = os.path.join(os.path.dirname(store), "check.bin")
                if os.path.exists(out):
                    os.remove(out)
                run(DALA, "attachment", "get", "--store", store, ids[0], "--out", out)
                if sha(out) != want:
                    raise AssertionError(f"report {rid}: the attachment differs from what was captured")
                os.remove(out)
    missing = [rid for rid in finished if rid not in reports]
    if missing:
        raise AssertionError(f"finished reports missing: {missing}")
    media_dir = os.path.join(store, "media")
    files = len(os.listdir(media_dir)) if os.path.isdir(media_dir) else 0
    if files != attachments:
        raise AssertionError(f"{files} media files for {attachments} attachments (orphans not swept?)")


sys.exit(main())
