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
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
from harness import ENV, run  # noqa: E402

_cli = harness.parser(__doc__)
_cli.add_argument("--trials", type=int, default=50, metavar="N", help="number of trials (default 50)")
ARGS = _cli.parse_args()
BIN, TRIALS, SEED = ARGS.bin_dir, ARGS.trials, ARGS.seed
rng = random.Random(SEED)
DALA, SERVER = harness.binaries(BIN)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    work = tempfile.mkdtemp(prefix="dala-crash-")
    store = os.path.join(work, "phone")
    server = None
    failures = []
    try:
        org_key, server = harness.new_server(DALA, SERVER, work)
        harness.new_phone(DALA, store, server.invite(uses=1))
        server.start()
        finished = {}  # report id -> sha256 of its attachment (or None): commands that exited 0
        kills = {}
        for trial in range(TRIALS):
            action = rng.choice(["report", "media", "media", "sync", "sync", "server"])
            cmd = [DALA]
            media = None
            if action == "server":
                # dala-server alone is killed while a phone pushes and uploads (a few MB waiting).
                clip = os.path.join(work, f"clip{trial}.mp4")
                with open(clip, "wb") as f:
                    f.write(os.urandom(rng.randint(1_000_000, 8_000_000)))
                rid = run(DALA, "report", "add", "--store", store, "--form", "detention/1", "--text",
                          f"trial {trial}", "--attach", clip, "--seal").stdout.strip()
                finished[rid] = sha(clip)
                os.remove(clip)
                proc = subprocess.Popen([DALA, "sync", "--store", store, "--timeout", "10"], env=ENV,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(rng.uniform(0.003, 0.07))  # such a sync takes 40-70 ms here
                killed = proc.poll() is None
                server.kill()
                if killed:
                    kills["server"] = kills.get("server", 0) + 1
                server.start()
                proc.wait(timeout=60)
                try:
                    check_store(store, finished, full=trial % 10 == 9 or trial == TRIALS - 1)
                except AssertionError as e:
                    failures.append(f"trial {trial} (server killed={killed}): {e}")
                continue
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
        # The end: a clean sync delivers everything sealed exactly once, with verified receipts, and the
        # desk verifies every report and attachment the server exports.
        for _ in range(20):
            if run(DALA, "sync", "--store", store, "--now", "--timeout", "30", check=False).returncode == 0:
                break
            time.sleep(0.5)
        problems, sealed = harness.check_delivered(DALA, SERVER, server.data, org_key, [store])
        failures += problems
        if problems:
            explain_undelivered(store)
        print(f"crash trials: seed {SEED}, {TRIALS} trials, SIGKILLs {kills}, {len(finished)} reports finished, "
              f"{sealed} sealed versions, each on the server once and verified by the desk: {not problems}")
    finally:
        if server:
            server.stop()
        if failures:
            print(f"kept for a look: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for f in failures:
        print("FAIL:", f)
    print(f"{TRIALS + 1 - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


def explain_undelivered(store):
    """What the phone says of every version it holds no receipt for, and what one more sync says."""
    got = harness.receipted_versions(DALA, store)
    for (rid, version) in sorted(harness.sealed_versions(DALA, store) - got):
        print(f"UNDELIVERED {rid} v{version}:")
        print(run(DALA, "report", "show", "--store", store, rid, check=False).stdout)
    p = run(DALA, "sync", "--store", store, "--now", "--timeout", "30", check=False)
    print(f"one more sync: exit {p.returncode}: {p.stdout.strip()} {p.stderr.strip()}")


def check_store(store, finished, full):
    run(DALA, "check", "--store", store)
    reports = {r["id"]: r for r in harness.reports(DALA, store)}
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
