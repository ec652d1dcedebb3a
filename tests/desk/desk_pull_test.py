#!/usr/bin/env python3
"""dala desk pull (docs/desk.md) against a real dala-server over HTTP, as an organisation uses it: the first
pull lists the desk in the organisation's statement and fetches everything (a 9 MiB attachment in 8 MiB
ranges), later pulls fetch only what is new from the address remembered; nothing decrypted reaches the
disk; another organisation's desk gets nothing; a server restored from an old copy (its log shorter than
the one the desk holds) is refused with the store unchanged. Run on the embedded backend and on
PostgreSQL with attachments in S3 (DALA_TEST_BACKEND, DALA_TEST_BLOBS: ranges read from the bucket).

Usage: desk_pull_test.py BIN_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402

FAILED = []
CANARY = "canary-51d0e2-pulled-narrative"


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  ({detail})"))
    if not ok:
        FAILED.append(what)


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-desk-pull-")
    env = harness.ENV
    embedded = os.environ.get("DALA_TEST_BACKEND", "embedded") == "embedded"
    try:
        org_key, server = harness.new_server(dala, server_bin, work)
        server.start()
        url = f"http://127.0.0.1:{server.port}"
        phone = harness.new_phone(dala, os.path.join(work, "phone"), server.invite())
        photo = os.path.join(work, "photo.jpg")
        with open(photo, "wb") as f:
            f.write(b"\xff\xd8\xff" + os.urandom(9 << 20))
        harness.run(dala, "report", "add", "--store", phone, "--form", "detention/1", "--field", "place=Oral",
                    "--text", f"Detained during their run. {CANARY}", "--attach", photo, "--seal", env=env)
        harness.run(dala, "report", "add", "--store", phone, "--form", "detention/1", "--text", "Second.", "--seal",
                    env=env)
        harness.run(dala, "sync", "--store", phone, env=env, timeout=180)
        data = os.path.join(work, "desk")

        def pull(*extra, key=org_key, data_dir=data):
            r = subprocess.run([dala, "desk", "pull", "--key", key, "--data", data_dir, "--json", *extra],
                               capture_output=True, text=True, env=env, timeout=300)
            try:
                out = json.loads(r.stdout)["servers"] if r.stdout.strip() else []
            except ValueError:
                out = []
            return r, (out[0] if len(out) == 1 else {})

        def versions(data_dir=data):
            out = os.path.join(work, "held.jsonl")
            harness.run(dala, "desk", "export", "--key", org_key, "--data", data_dir, "--format", "jsonl", "--out", out,
                        env=env)
            with open(out, encoding="utf-8") as f:
                return [json.loads(line) for line in f]

        r, s = pull("--url", url)
        check("the first pull imports everything the server holds", r.returncode == 0 and s.get("imported") is True
              and s.get("added") == 2, (r.returncode, r.stdout, r.stderr))
        check("  after listing the desk in the organisation's statement", s.get("listed_desk") is True, s)
        check("  with the attachment fetched in 8 MiB ranges", s.get("media_files") == 1 and
              s.get("media_bytes", 0) > 9 << 20, s)
        check("  every version verified", s.get("summary", {}).get("verified") == 2, s.get("summary"))
        first_size = s.get("log_size", 0)

        r, s = pull()
        check("a second pull, from the address remembered, adds nothing", r.returncode == 0 and s.get("added") == 0
              and s.get("log_from") == first_size and s.get("listed_desk") is False, (r.returncode, r.stdout, r.stderr))

        snapshot = os.path.join(work, "srv-copy")
        if embedded:  # an operator's old copy of the data directory (the PostgreSQL database is elsewhere)
            server.stop()
            shutil.copytree(server.data, snapshot, symlinks=True)
            server.start()

        harness.run(dala, "report", "add", "--store", phone, "--form", "detention/1", "--text", "Third.", "--seal",
                    env=env)
        harness.run(dala, "sync", "--store", phone, env=env)
        r, s = pull()
        check("a pull after a new report adds only it", r.returncode == 0 and s.get("added") == 1 and
              s.get("log_from") == first_size and s.get("log_size", 0) > first_size and s.get("media_files") == 0, (r.returncode, r.stdout, r.stderr))
        held = versions()
        check("the desk holds the three reports", len(held) == 3 and any(CANARY in x["narrative"] for x in held), len(held))

        # Nothing decrypted on disk: no file of the desk holds the narrative or the photo's bytes.
        with open(photo, "rb") as f:
            piece = f.read()[4096:4160]
        leaks = [name for root, _, files in os.walk(data) for name in files
                 if CANARY.encode() in open(os.path.join(root, name), "rb").read()
                 or piece in open(os.path.join(root, name), "rb").read()]
        check("no file of the desk holds a narrative or an attachment's bytes in the clear", not leaks, leaks)

        # Another organisation's desk, which authorised this server's key in its own statement: refused.
        rival = harness.Desk(dala, os.path.join(work, "rival.key"), name="Rival")
        rival.invite(server.key, url)
        rival_data = os.path.join(work, "rival-desk")
        r, s = pull("--url", url, key=rival.key, data_dir=rival_data)
        check("another organisation's desk is refused by the server", r.returncode != 0 and "403" in r.stderr,
              (r.returncode, r.stdout, r.stderr))
        check("  and holds nothing", not os.path.isdir(os.path.join(rival_data, "media"))
              or not os.listdir(os.path.join(rival_data, "media")))

        if embedded:
            # The server restored from the older copy: its log is shorter than the one the desk holds.
            server.stop()
            shutil.rmtree(server.data)
            shutil.copytree(snapshot, server.data, symlinks=True)
            server.start()
            r, s = pull()
            check("a server restored from an old copy is refused (its log is shorter than the desk's)",
                  r.returncode != 0 and "400" in r.stderr, (r.returncode, r.stdout, r.stderr))
            check("  and the desk store is unchanged", len(versions()) == 3)
        server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("FAILED: " + ", ".join(FAILED) if FAILED else "all desk pull checks passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
