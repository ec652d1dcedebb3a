#!/usr/bin/env python3
"""The desk store (docs/desk.md) through the CLI, as an organisation uses it: `dala desk import` of a real
dala-server's exports (again, and a longer one: only what is new is added), refusal of altered,
truncated, duplicated and other organisations' exports with the store unchanged, a wrong passphrase, two
imports at once, nothing decrypted on disk, and `dala desk export` as CSV and JSON Lines.

Usage: desk_store_test.py BIN_DIR
"""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402

FAILED = []
CANARY = "canary-7f3a9c-narrative"


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  ({detail})"))
    if not ok:
        FAILED.append(what)


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-desk-store-")
    env = harness.ENV
    try:
        org_key, server = harness.new_server(dala, server_bin, work)
        server.start()
        phone = harness.new_phone(dala, os.path.join(work, "phone"), server.invite())
        photo = os.path.join(work, "photo.jpg")
        with open(photo, "wb") as f:
            f.write(b"\xff\xd8\xff" + os.urandom(200_000))
        harness.run(dala, "report", "add", "--store", phone, "--form", "detention/1", "--field", "place=Oral (Uralsk)",
                    "--field", "detained:person=Roza Kariyeva|detained", "--field", "formula==HYPERLINK(\"x\")",
                    "--text", f"Detained during their run. {CANARY}", "--attach", photo, "--seal", env=env)
        harness.run(dala, "report", "add", "--store", phone, "--form", "detention/1", "--field", "place=Astana",
                    "--text", "Police tried to stop the run.", "--seal", env=env)
        harness.run(dala, "sync", "--store", phone, env=env)
        server.stop()
        first = os.path.join(work, "first.export")
        harness.run(server_bin, "export", "--data", server.data, "--out", first)
        data = os.path.join(work, "desk")

        def imp(export, *extra, data_dir=data, key=org_key, environ=env):
            return subprocess.run([dala, "desk", "import", "--key", key, "--data", data_dir, "--from", export, "--json",
                                   *extra], capture_output=True, text=True, env=environ, timeout=120)

        def held_jsonl(data_dir=data):
            out = os.path.join(work, "held.jsonl")
            harness.run(dala, "desk", "export", "--key", org_key, "--data", data_dir, "--format", "jsonl", "--out", out,
                        env=env)
            with open(out, encoding="utf-8") as f:
                return [json.loads(line) for line in f]

        r = imp(first)
        res = json.loads(r.stdout) if r.returncode in (0, 1) and r.stdout.strip() else {}
        check("an export is imported", r.returncode == 0 and res.get("imported") is True, (r.returncode, r.stdout, r.stderr))
        check("  with both report versions added", res.get("added") == 2 and res.get("held") == 0, res)
        r = imp(first)
        res = json.loads(r.stdout) if r.stdout.strip() else {}
        check("the same export again adds nothing", r.returncode == 0 and res.get("added") == 0 and res.get("held") == 2,
              (r.returncode, r.stdout))

        # Nothing decrypted on disk: no file of the desk holds the narrative or the photo's bytes.
        with open(photo, "rb") as f:
            photo_piece = f.read()[1000:1064]
        leaks = []
        for root, _, files in os.walk(data):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    blob = f.read()
                if CANARY.encode() in blob or photo_piece in blob or b"Kariyeva" in blob:
                    leaks.append(name)
        check("no file of the desk store holds a narrative, a name or an attachment's bytes in the clear", not leaks, leaks)

        # A damaged file where the store keeps an attachment (an import cut short by a crash, a full disk)
        # is not trusted: the next import replaces it with the file the device signed.
        damaged = os.path.join(work, "damaged-desk")
        os.makedirs(os.path.join(damaged, "media"), mode=0o700)
        for name in os.listdir(os.path.join(data, "media")):
            good = open(os.path.join(data, "media", name), "rb").read()
            open(os.path.join(damaged, "media", name), "wb").write(good[: len(good) // 2])
        r = imp(first, data_dir=damaged)
        same = all(open(os.path.join(damaged, "media", n), "rb").read() == open(os.path.join(data, "media", n), "rb").read()
                   for n in os.listdir(os.path.join(data, "media")))
        check("a half-written attachment file in the store is replaced by the one the device signed",
              r.returncode == 0 and same and os.listdir(os.path.join(data, "media")), r.stdout)

        # A longer export: only the new version and the new report are added.
        server.start()
        first_id = [x["id"] for x in held_jsonl() if CANARY in x["narrative"]][0]
        harness.run(dala, "report", "add", "--store", phone, "--form", "detention/1", "--field", "place=Shortandy",
                    "--text", "Amangeldy Zhakhin detained.", "--seal", env=env)
        harness.run(dala, "sync", "--store", phone, env=env)
        server.stop()
        second = os.path.join(work, "second.export")
        harness.run(server_bin, "export", "--data", server.data, "--out", second)
        r = imp(second)
        res = json.loads(r.stdout) if r.stdout.strip() else {}
        check("a longer export adds only what is new", r.returncode == 0 and res.get("added") == 1 and res.get("held") == 2,
              (r.returncode, r.stdout))
        before = held_jsonl()
        check("the store holds three reports", len(before) == 3, len(before))

        # An older export after a newer one: its log does not extend the newest the desk took.
        r = imp(first)
        res = json.loads(r.stdout) if r.stdout.strip() else {}
        check("an older export after a newer one is refused (its log is shorter than the one the desk holds)",
              r.returncode == 1 and res.get("imported") is False, (r.returncode, r.stdout))

        raw = open(second, "rb").read()
        reports = [f for f in harness.pb_fields(raw) if f[0] == 2]
        altered = {}
        # One byte of an envelope's ciphertext changed.
        n, s, e = reports[1]
        mid = (s + e) // 2
        altered["an envelope changed by one byte"] = raw[:mid] + bytes([raw[mid] ^ 1]) + raw[mid + 1:]
        # An entry repeated.
        altered["a duplicated entry"] = raw + raw[reports[0][1]:reports[0][2]]
        # An entry dropped (withheld).
        altered["an entry removed"] = raw[:reports[2][1]] + raw[reports[2][2]:]
        # Cut short.
        altered["a truncated export"] = raw[: len(raw) * 2 // 3]
        for what, blob in altered.items():
            path = os.path.join(work, "altered.export")
            with open(path, "wb") as f:
                f.write(blob)
            media = second + ".media"
            if os.path.isdir(media):
                shutil.rmtree(path + ".media", ignore_errors=True)
                shutil.copytree(media, path + ".media")
            fresh = os.path.join(work, "fresh-" + str(len(what)))
            r = imp(path, data_dir=fresh)
            check(f"{what}: refused (exit 1 or 2, never 0)", r.returncode in (1, 2, 4), (r.returncode, r.stdout, r.stderr))
            check(f"{what}: says why", ("problem" in r.stdout or "refused" in r.stdout or r.stderr.strip() != ""),
                  (r.stdout, r.stderr))
            r = imp(path)
            check(f"{what}: the store is unchanged", held_jsonl() == before and r.returncode != 0)

        # An attachment file changed in the export: that report fails, the import is refused unless
        # --keep-failed, which keeps it marked failed.
        tampered = os.path.join(work, "media.export")
        shutil.copy(second, tampered)
        shutil.copytree(second + ".media", tampered + ".media")
        victim = os.path.join(tampered + ".media", os.listdir(tampered + ".media")[0])
        blob = bytearray(open(victim, "rb").read())
        blob[len(blob) // 2] ^= 1
        open(victim, "wb").write(bytes(blob))
        kept = os.path.join(work, "kept")
        r = imp(tampered, data_dir=kept)
        check("a changed attachment file: the import is refused", r.returncode == 1, (r.returncode, r.stdout))
        r = imp(tampered, "--keep-failed", data_dir=kept)
        res = json.loads(r.stdout) if r.stdout.strip() else {}
        check("  with --keep-failed it is kept, marked failed", r.returncode == 0 and res.get("added") == 3, r.stdout)
        rows = {x["id"]: x for x in held_jsonl(kept)}
        check("  the report with the changed photo is the one not verified",
              rows.get(first_id, {}).get("verified") is False and sum(1 for x in rows.values() if x["verified"]) == 2,
              rows)

        # Another organisation's export.
        other = os.path.join(work, "other")
        os.makedirs(other)
        other_key, other_server = harness.new_server(dala, server_bin, other)
        other_server.start()
        other_phone = harness.new_phone(dala, os.path.join(other, "phone"), other_server.invite())
        harness.run(dala, "report", "add", "--store", other_phone, "--form", "detention/1", "--text", "elsewhere",
                    "--seal", env=env)
        harness.run(dala, "sync", "--store", other_phone, env=env)
        other_server.stop()
        other_export = os.path.join(other, "other.export")
        harness.run(server_bin, "export", "--data", other_server.data, "--out", other_export)
        r = imp(other_export)
        check("another organisation's export is refused", r.returncode == 1 and "never authorised" in r.stdout,
              (r.returncode, r.stdout))
        check("  the store is unchanged", held_jsonl() == before)
        r = imp(second, key=other_key)
        check("the desk store opened with another organisation's key is refused (exit 3)", r.returncode == 3,
              (r.returncode, r.stderr))

        # A wrong desk passphrase.
        r = imp(second, environ=dict(env, DALA_PASSPHRASE="not the passphrase"))
        check("a wrong desk passphrase is refused (exit 3)", r.returncode == 3, (r.returncode, r.stderr))

        # Two imports at once into a new store: one adds everything, the other waits and finds it held.
        both = os.path.join(work, "both")
        results = [None, None]

        def run_one(i):
            results[i] = imp(second, data_dir=both)

        threads = [threading.Thread(target=run_one, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        parsed = [json.loads(x.stdout) if x is not None and x.stdout.strip() else {} for x in results]
        check("two imports at once both succeed", all(x is not None and x.returncode == 0 for x in results),
              [(x.returncode, x.stderr) for x in results if x is not None])
        check("  and add each version exactly once",
              sorted(p.get("added", -1) for p in parsed) == [0, 3] and len(held_jsonl(both)) == 3, parsed)

        # CSV for spreadsheets.
        out_csv = os.path.join(work, "reports.csv")
        harness.run(dala, "desk", "export", "--key", org_key, "--data", data, "--format", "csv", "--out", out_csv,
                    env=env)
        raw_csv = open(out_csv, "rb").read()
        check("CSV starts with a UTF-8 byte-order mark and uses CRLF", raw_csv.startswith(b"\xef\xbb\xbf") and
              b"\r\n" in raw_csv and raw_csv.count(b"\r\n") == raw_csv.count(b"\n"))
        table = list(csv.DictReader(io.StringIO(raw_csv.decode("utf-8-sig"), newline="")))
        check("CSV has one row per report", len(table) == 3, len(table))
        row = [t for t in table if t["id"] == first_id]
        row = row[0] if row else {}
        check("CSV has a column per field", row.get("field:place") == "Oral (Uralsk)" and
              row.get("field:detained") == "Roza Kariyeva (detained)", row)
        check("CSV times are ISO 8601 UTC", row.get("sealed", "").endswith("Z") and "T" in row.get("sealed", ""), row)
        check("CSV keeps a spreadsheet from running a field as a formula",
              row.get("field:formula", "").startswith("'="), row.get("field:formula"))
        one = os.path.join(work, "one.jsonl")
        harness.run(dala, "desk", "export", "--key", org_key, "--data", data, "--format", "jsonl", "--out", one,
                    "--report", first_id, env=env)
        lines = open(one, encoding="utf-8").read().splitlines()
        got = json.loads(lines[0]) if lines else {}
        check("JSON Lines of one report", len(lines) == 1 and got.get("id") == first_id and
              got["fields"]["detained"] == [{"name": "Roza Kariyeva", "role": "detained"}], lines)
        r = subprocess.run([dala, "desk", "export", "--key", org_key, "--data", data, "--format", "csv", "--out", one,
                            "--report", "00" * 16], capture_output=True, text=True, env=env)
        check("an id the desk does not hold: exit 4", r.returncode == 4, (r.returncode, r.stderr))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(FAILED)} failed" if FAILED else "all passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
