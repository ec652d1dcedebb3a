#!/usr/bin/env python3
"""dala-server backup and restore (docs/operations.md, "Backups and restore"), as an operator uses them:

- a backup taken while phones push reports and upload photos is restored into a fresh directory and checked
  whole (database, log against its signed heads, every attachment against its chunk hashes): the restored
  server's export verifies at the desk;
- the server moved to a fresh directory from an online backup: the phones keep delivering to it, with
  verified receipts and a log that continues without a fork (a phone stops at a fork);
- faults: a backup without its key, a wrong key, a non-empty directory, an altered attachment, a cut-short
  file and an entry outside the directory are refused, leaving nothing restored; `check` finds a damaged
  attachment in a data directory.

Usage: backup_test.py BIN_DIR
"""
import json
import os
import shutil
import stat
import sys
import tarfile
import ctypes
import io
import subprocess
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402

FAILED = []
ROUNDS = 12  # reports per phone while the backup runs


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  ({detail})"))
    if not ok:
        FAILED.append(what)


def add_report(dala, store, place, attach=None):
    extra = ["--attach", attach] if attach else []
    harness.run(dala, "report", "add", "--store", store, "--form", "detention/1", "--field", f"place={place}",
                "--text", f"Seen at {place}.", *extra, "--seal")


def audit(server_bin, data):
    r = harness.run(server_bin, "check", "--data", data, "--json", check=False)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        return r.returncode, {}


def desk_verdict(dala, server_bin, data, org_key, work):
    """The desk's summary of the data directory's full export."""
    export = os.path.join(work, "verdict.export")
    shutil.rmtree(export + ".media", ignore_errors=True)
    harness.run(server_bin, "export", "--data", data, "--out", export)
    out = os.path.join(work, "verdict")
    shutil.rmtree(out, ignore_errors=True)
    r = harness.run(dala, "desk", "open", "--key", org_key, "--from", export, "--out", out, check=False)
    with open(os.path.join(out, "summary.json")) as f:
        return r.returncode, json.load(f)


def rebuild(src, dst, manifest_change=None, extra=(), first=None, compress=""):
    """A copy of backup src in dst: its manifest changed by manifest_change, extra (name, bytes) entries
    added, entry `first` moved to the front."""
    with tarfile.open(src) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    if first is not None:
        members.sort(key=lambda e: e[0].name != first)
    with tarfile.open(dst, "w" + (":" + compress if compress else "")) as out:
        for m, data in members:
            if m.name == "dala-backup.json" and manifest_change is not None:
                doc = json.loads(data)
                manifest_change(doc)
                data = json.dumps(doc).encode()
                m.size = len(data)
            out.addfile(m, io.BytesIO(data))
        for name, data in extra:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def sql_on(db_path, key, sql):
    """Runs sql on a server database as someone holding its key would (SQLCipher through ctypes)."""
    lib = ctypes.CDLL("libsqlcipher.so.1")  # SQLCipher 4, as the server
    db = ctypes.c_void_p()
    if lib.sqlite3_open(db_path.encode(), ctypes.byref(db)) != 0:
        return -1
    script = f"PRAGMA key = \"x'{key.hex()}'\"; PRAGMA cipher_page_size = 4096; {sql}"
    rc = lib.sqlite3_exec(db, script.encode(), None, None, None)
    lib.sqlite3_close(db)
    return rc


def empty(path):
    return not os.path.exists(path) or not os.listdir(path)


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-backup-")
    server = moved = None
    try:
        org_key, server = harness.new_server(dala, server_bin, work)
        server.start()
        invite = server.invite(uses=4)
        phones = [harness.new_phone(dala, os.path.join(work, f"phone{i}"), invite) for i in range(4)]
        photo = os.path.join(work, "photo.jpg")
        with open(photo, "wb") as f:
            f.write(b"\xff\xd8\xff" + os.urandom(400_000))

        # Phones push while the backup is taken.
        errors = []

        def push(store, i):
            try:
                for n in range(ROUNDS):
                    add_report(dala, store, f"Town {i}-{n}", attach=photo if n % 3 == 0 else None)
                    harness.run(dala, "sync", "--store", store, timeout=120)
            except Exception as e:  # noqa: BLE001 (reported as a failed check)
                errors.append(repr(e))

        threads = [threading.Thread(target=push, args=(p, i)) for i, p in enumerate(phones)]
        for t in threads:
            t.start()
        # Taken once some reports are in and while most are still to come (bounded wait).
        for _ in range(200):
            _, before = audit(server_bin, server.data)
            if before.get("reports", 0) >= 8:
                break
            time.sleep(0.05)
        during = os.path.join(work, "during.tar")
        started = time.time()
        b = harness.run(server_bin, "backup", "--data", server.data, "--out", during, check=False)
        took = time.time() - started
        _, after = audit(server_bin, server.data)
        for t in threads:
            t.join()
        check("phones pushed without error meanwhile", not errors, errors[:2])
        check("a backup is taken while phones push", b.returncode == 0 and os.path.exists(during), b.stderr)
        _, final = audit(server_bin, server.data)
        check("  it was taken during the pushes (reports arrived before it and after it)",
              0 < before.get("reports", 0) and after.get("reports", 0) < final.get("reports", 0),
              (before.get("reports"), after.get("reports"), final.get("reports")))
        check("  the backup file is 0600", stat.S_IMODE(os.stat(during).st_mode) == 0o600,
              oct(stat.S_IMODE(os.stat(during).st_mode)))
        check("  and holds no key by default", "server.key" not in tarfile.open(during).getnames() and
              "keep a copy of" in b.stderr, tarfile.open(during).getnames()[:4])
        check("  and nothing is left beside it", sorted(os.listdir(work)).count("during.tar.tmp") == 0 and
              not os.path.exists(during + ".db-tmp"))
        print(f"     backup during pushes: {took:.2f} s")

        no_key = os.path.join(work, "no-key")
        r = harness.run(server_bin, "restore", "--data", no_key, "--from", during, check=False)
        check("restoring a backup without its key asks for --key (exit 2), nothing restored",
              r.returncode == 2 and "--key" in r.stderr and empty(no_key), r.stderr)
        wrong = os.path.join(work, "wrong.key")
        with open(wrong, "wb") as f:
            f.write(os.urandom(32))
        r = harness.run(server_bin, "restore", "--data", no_key, "--from", during, "--key", wrong, check=False)
        check("a wrong key restores nothing", r.returncode != 0 and empty(no_key), (r.returncode, r.stderr))

        restored = os.path.join(work, "restored")
        r = harness.run(server_bin, "restore", "--data", restored, "--from", during, "--key",
                        os.path.join(server.data, "server.key"), check=False)
        check("the backup taken during the pushes restores, every check passing", r.returncode == 0, r.stderr)
        code, got = audit(server_bin, restored)
        check("  the restored data checks out whole (database, log, heads, attachments)",
              code == 0 and not got.get("problems") and got.get("attachments", 0) > 0, got)
        check("  it holds what the server had when the backup began, or more, never more than after",
              before["reports"] <= got.get("reports", -1) <= after["reports"], (before, got, after))
        code, summary = desk_verdict(dala, server_bin, restored, org_key, work)
        check("  and its export verifies at the desk: every report, the log, no problem",
              code == 0 and summary["failed"] == 0 and summary["log_problems"] == 0 and summary["missing"] == 0
              and summary["reports"] == got.get("reports"), {k: summary.get(k) for k in ("reports", "failed",
                                                                                          "log_problems", "missing")})
        r = harness.run(server_bin, "restore", "--data", restored, "--from", during, "--key",
                        os.path.join(server.data, "server.key"), check=False)
        check("restoring into a directory that holds data is refused", r.returncode != 0 and "empty" in r.stderr,
              r.stderr)

        # Altered, cut-short and hostile backups: refused, nothing restored.
        with tarfile.open(during) as t:
            member = next(m for m in t.getmembers() if m.name.startswith("attachments/"))
            offset = member.offset_data + member.size // 2
        blob = open(during, "rb").read()
        bad = {"an attachment changed by one byte": blob[:offset] + bytes([blob[offset] ^ 1]) + blob[offset + 1:],
               "a backup cut short": blob[: len(blob) // 2]}
        hostile = os.path.join(work, "hostile.tar")
        with tarfile.open(hostile, "w") as t:
            with tarfile.open(during) as src:
                for m in src.getmembers():
                    t.addfile(m, src.extractfile(m))
            evil = tarfile.TarInfo("../escaped")
            evil.size = 4
            t.addfile(evil, __import__("io").BytesIO(b"evil"))
        bad["an entry outside the directory"] = open(hostile, "rb").read()
        # What a hostile backup could do to the disk or the log (each with the words its refusal says).
        expect = {}

        def made(what, words, **kw):
            path = os.path.join(work, "made.tar")
            rebuild(during, path, **kw)
            bad[what] = open(path, "rb").read()
            expect[what] = words

        def more(field, by):
            return lambda doc: doc.__setitem__(field, doc[field] + by)

        made("a manifest declaring more than the disk holds", "MiB free", manifest_change=more("attachment_bytes", 1 << 45))
        made("an attachment larger than its manifest declares", "more attachments than",
             manifest_change=more("attachment_bytes", -1))
        made("a database larger than its manifest declares", "another size", manifest_change=more("database_bytes", -1))
        made("a manifest that is not the first entry", "first entry", first="server.db")
        made("a manifest with a field of the wrong type", "manifest",
             manifest_change=lambda doc: doc.__setitem__("reports", "many"))
        stray = "attachments/" + "ab" * 32 + "-" + "cd" * 16
        made("an attachment file its database does not record", "manifest says attachments",
             manifest_change=lambda doc: (more("attachments", 1)(doc), more("attachment_bytes", 100)(doc)),
             extra=[(stray, os.urandom(100))])
        # A sparse entry (GNU tar's), the size of a real attachment.
        sparse_dir = os.path.join(work, "sparse")
        os.makedirs(os.path.join(sparse_dir, "attachments"))
        with tarfile.open(during) as t:
            t.extract("dala-backup.json", sparse_dir)
            t.extract("server.db", sparse_dir)
            recorded = [m for m in t.getmembers() if m.name.startswith("attachments/")]
            for m in recorded:
                t.extract(m, sparse_dir)
        with open(os.path.join(sparse_dir, recorded[0].name), "r+b") as f:
            f.truncate(0)
            f.truncate(recorded[0].size)  # all one hole
        subprocess.run(["tar", "-C", sparse_dir, "--sparse", "--format=pax", "-cf", os.path.join(work, "sparse.tar"),
                        "dala-backup.json", "server.db"] + [m.name for m in recorded], check=True)
        bad["a sparse entry"] = open(os.path.join(work, "sparse.tar"), "rb").read()
        expect["a sparse entry"] = "sparse"
        # A database whose log was emptied (by someone holding its key): restoring would start a forked log.
        emptied = os.path.join(work, "emptied")
        shutil.copytree(restored, emptied)
        key = open(os.path.join(server.data, "server.key"), "rb").read()
        rc = sql_on(os.path.join(emptied, "server.db"), key,
                    "DROP TRIGGER log_no_delete; DROP TRIGGER log_nodes_no_delete; DELETE FROM log; DELETE FROM log_nodes; DELETE FROM log_heads; DELETE FROM log_timestamps;")
        b = harness.run(server_bin, "backup", "--data", emptied, "--out", os.path.join(work, "emptied.tar"), check=False)
        check("(a backup of a data directory whose log was emptied is made)", rc == 0 and b.returncode == 0, (rc, b.stderr))
        bad["a database whose log was emptied"] = open(os.path.join(work, "emptied.tar"), "rb").read()
        expect["a database whose log was emptied"] = "no log"
        for what, data in bad.items():
            path = os.path.join(work, "bad.tar")
            with open(path, "wb") as f:
                f.write(data)
            target = os.path.join(work, "bad-restore")
            r = harness.run(server_bin, "restore", "--data", target, "--from", path, "--key",
                            os.path.join(server.data, "server.key"), check=False)
            check(f"{what}: refused, nothing restored", r.returncode not in (0,) and empty(target) and
                  not os.path.exists(os.path.join(work, "escaped")) and expect.get(what, "") in r.stderr and
                  not [n for n in os.listdir(work) if ".restore-" in n], (r.returncode, r.stderr[-300:]))

        # A backup the operator compressed restores as it is.
        gz = os.path.join(work, "during.tar.gz")
        rebuild(during, gz, compress="gz")
        r = harness.run(server_bin, "restore", "--data", os.path.join(work, "from-gz"), "--from", gz, "--key",
                        os.path.join(server.data, "server.key"), check=False)
        check("a gzip-compressed backup restores", r.returncode == 0, r.stderr[-300:])

        # `check` finds a damaged attachment in a data directory.
        name = sorted(os.listdir(os.path.join(restored, "attachments")))[0]
        path = os.path.join(restored, "attachments", name)
        with open(path, "r+b") as f:
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 1]))
        code, got = audit(server_bin, restored)
        check("check finds an attachment damaged in a data directory (exit 1)",
              code == 1 and any(name in p for p in got.get("problems", [])), got.get("problems"))

        # The server moved to a fresh directory from an online backup (with its key): phones keep delivering.
        final = os.path.join(work, "final.tar")
        r = harness.run(server_bin, "backup", "--data", server.data, "--out", final, "--include-key", check=False)
        check("a backup with its key says how secret it is", r.returncode == 0 and "as safe as" in r.stderr, r.stderr)
        server.stop()
        moved_dir = os.path.join(work, "moved")
        r = harness.run(server_bin, "restore", "--data", moved_dir, "--from", final, check=False)
        check("a backup holding its key restores without --key", r.returncode == 0, r.stderr)
        moved = harness.Server(server_bin, moved_dir, port=server.port, desk=server.desk)
        moved.start()
        for i, p in enumerate(phones):
            add_report(dala, p, f"After the move {i}", attach=photo if i == 0 else None)
            r = harness.run(dala, "sync", "--store", p, check=False)
            if r.returncode != 0:
                print(f"     sync after the move: {r.stderr.strip()[-300:]}")
        problems, n = harness.check_delivered(dala, server_bin, moved_dir, org_key, phones)
        check(f"after the move every phone's {n} versions are delivered with verified receipts, the log continuing "
              "without a fork, the desk verifying all", not problems, problems[:3])
    finally:
        for s in (server, moved):
            if s is not None:
                s.stop()
        shutil.rmtree(work, ignore_errors=True)
    if FAILED:
        print(f"{len(FAILED)} checks failed: {FAILED}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
