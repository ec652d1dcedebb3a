#!/usr/bin/env python3
"""dala-server as an operator runs it (docs/operations.md), through its command line against a running
server: devices with labels and last contact in ISO time, invites listed with uses left and cancelled (by
their text before any use, by their id after), incremental exports (--since a log position) that the
desk store imports on top of the previous one.

Usage: operator_test.py BIN_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402

FAILED = []
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  ({detail})"))
    if not ok:
        FAILED.append(what)


def add_report(dala, store, place, attach=None):
    extra = ["--attach", attach] if attach else []
    harness.run(dala, "report", "add", "--store", store, "--form", "detention/1", "--field", f"place={place}",
                "--text", f"Seen at {place}.", *extra, "--seal")


def devices_and_invites(dala, server_bin, work, desk, server):
    """Labels, last contact, invites listed and cancelled, with the server running."""
    two = server.invite(uses=2)
    a = harness.new_phone(dala, os.path.join(work, "a"), two)
    add_report(dala, a, "Oral")
    harness.run(dala, "sync", "--store", a)
    listed = json.loads(harness.run(server_bin, "devices", "--data", server.data, "--json").stdout)
    check("devices --json lists the enrolled phone with its report", len(listed) == 1 and listed[0]["reports"] == 1,
          listed)
    d = listed[0] if listed else {}
    check("enrolment and last contact are ISO 8601 UTC times",
          ISO.match(d.get("enrolled", "")) is not None and ISO.match(d.get("last_contact", "")) is not None, d)
    key = d.get("device", "")
    harness.run(server_bin, "label", "--data", server.data, key, "field team 3 — Ğ")
    listed = json.loads(harness.run(server_bin, "devices", "--data", server.data, "--json").stdout)
    check("a label set while the server runs is listed", listed[0]["label"] == "field team 3 — Ğ", listed[0])
    bad = harness.run(server_bin, "label", "--data", server.data, key, "two\nlines", check=False)
    check("a label of two lines is refused (exit 2)", bad.returncode == 2, bad.returncode)
    missing = harness.run(server_bin, "label", "--data", server.data, "00" * 32, "x", check=False)
    check("labelling an unknown device exits 4", missing.returncode == 4, missing.returncode)

    invites = json.loads(harness.run(server_bin, "invites", "--data", server.data, "--json").stdout)
    check("invites lists the invite used once, one use left",
          len(invites) == 1 and invites[0]["used"] == 1 and invites[0]["uses"] == 2 and invites[0]["uses_left"] == 1
          and invites[0]["state"] == "active" and ISO.match(invites[0]["expires"]) is not None, invites)
    check("devices name the invite they enrolled with", listed[0]["invite"] == invites[0]["invite"], listed[0])
    # Cancelled by its id: its second use is refused, the phone already enrolled keeps delivering.
    harness.run(server_bin, "invites", "cancel", "--data", server.data, invites[0]["invite"][:10])
    b = harness.new_phone(dala, os.path.join(work, "b"), two)
    add_report(dala, b, "Astana")
    refused = harness.run(dala, "sync", "--store", b, check=False)
    b_state = harness.reports(dala, b)
    check("a phone joining with a cancelled invite is not enrolled and delivers nothing",
          refused.returncode != 0 and not harness.receipts(dala, b), (refused.returncode, refused.stderr, b_state))
    check("the phone is told the invite was cancelled", "cancelled" in refused.stderr + refused.stdout,
          refused.stderr)
    add_report(dala, a, "Aktobe")
    harness.run(dala, "sync", "--store", a)
    check("a device enrolled before the cancellation keeps delivering", len(harness.receipts(dala, a)) == 2)
    # Cancelled by its text before anyone used it.
    unused = server.invite()
    harness.run(server_bin, "invites", "cancel", "--data", server.data, unused)
    c = harness.new_phone(dala, os.path.join(work, "c"), unused)
    add_report(dala, c, "Shymkent")
    refused = harness.run(dala, "sync", "--store", c, check=False)
    check("an invite cancelled by its text before any use enrols nobody",
          refused.returncode != 0 and not harness.receipts(dala, c), refused.stderr)
    invites = json.loads(harness.run(server_bin, "invites", "--data", server.data, "--json").stdout)
    states = sorted(i["state"] for i in invites)
    check("both invites are listed as cancelled, with their time",
          states == ["cancelled", "cancelled"] and all(ISO.match(i["cancelled"]) for i in invites), invites)
    again = harness.run(server_bin, "invites", "cancel", "--data", server.data, unused, check=False)
    check("cancelling twice says so (exit 1)", again.returncode == 1 and "already" in again.stderr, again.stderr)
    other = harness.Desk(dala, os.path.join(work, "other.key"))
    foreign = other.invite(server.key, f"http://127.0.0.1:{server.port}")
    wrong = harness.run(server_bin, "invites", "cancel", "--data", server.data, foreign, check=False)
    check("another organisation's invite is refused (exit 2)", wrong.returncode == 2, wrong.stderr)
    return a


def exported(server_bin, data, out, *extra):
    """Runs dala-server export; returns (reports written, the log size to pass as --since next time)."""
    r = harness.run(server_bin, "export", "--data", data, "--out", out, *extra)
    m = re.search(r"Exported (\d+) sealed reports.*--since (\d+)", r.stderr, re.S)
    if m is None:
        raise AssertionError(f"export printed {r.stderr!r}")
    return int(m.group(1)), int(m.group(2))


def incremental_exports(dala, server_bin, work, server, org_key, phone):
    """export --since N writes only what the log gained from N; the desk joins it to the export it kept
    and checks the whole; dala desk open refuses one alone; a gap, a withheld report, and an incremental
    export with no full one before it are refused, the desk store unchanged."""
    desk = os.path.join(work, "desk")
    env = harness.ENV

    def imp(export, data_dir=desk):
        r = subprocess.run([dala, "desk", "import", "--key", org_key, "--data", data_dir, "--from", export, "--json"],
                           capture_output=True, text=True, env=env, timeout=120)
        try:
            return r, json.loads(r.stdout)
        except ValueError:
            return r, {}

    def held(data_dir=desk):
        out = os.path.join(work, "held.jsonl")
        harness.run(dala, "desk", "export", "--key", org_key, "--data", data_dir, "--format", "jsonl", "--out", out)
        with open(out, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    # While the server runs, as an operator exports.
    full = os.path.join(work, "full.export")
    n_full, since = exported(server_bin, server.data, full)
    r, res = imp(full)
    check("a full export is imported", r.returncode == 0 and res.get("added") == n_full, (r.returncode, r.stdout, r.stderr))

    photo = os.path.join(work, "photo.jpg")
    with open(photo, "wb") as f:
        f.write(b"\xff\xd8\xff" + os.urandom(150_000))
    add_report(dala, phone, "Taraz", attach=photo)
    add_report(dala, phone, "Semey")
    harness.run(dala, "sync", "--store", phone)
    inc = os.path.join(work, "inc1.export")
    n_inc, since2 = exported(server_bin, server.data, inc, "--since", str(since))
    check("an incremental export holds only the two new reports", n_inc == 2 and since2 > since, (n_inc, since, since2))
    check("  and is smaller than the full one", os.path.getsize(inc) < os.path.getsize(full),
          (os.path.getsize(inc), os.path.getsize(full)))
    alone = harness.run(dala, "desk", "open", "--key", org_key, "--from", inc, "--out", os.path.join(work, "open"),
                        check=False)
    check("dala desk open refuses an incremental export alone, saying what to do",
          alone.returncode != 0 and "incremental" in alone.stderr and "dala desk import" in alone.stderr, alone.stderr)
    check("  and writes nothing", not os.path.exists(os.path.join(work, "open")) or not os.listdir(os.path.join(work, "open")))

    fresh = os.path.join(work, "fresh-desk")
    r, _ = imp(inc, data_dir=fresh)
    check("an incremental export into a desk with no earlier export of the server is refused (import a full one "
          "first)", r.returncode != 0 and "full export first" in r.stderr, (r.returncode, r.stdout, r.stderr))

    # A server that withholds one of the new reports: the joined export misses a leaf's report.
    raw = open(inc, "rb").read()
    entries = [f for f in harness.pb_fields(raw) if f[0] == 2]
    withheld = os.path.join(work, "withheld.export")
    with open(withheld, "wb") as f:
        f.write(raw[:entries[0][1]] + raw[entries[0][2]:])
    shutil.copytree(inc + ".media", withheld + ".media")
    before = held()
    r, res = imp(withheld)
    check("an incremental export withholding a report is refused", r.returncode != 0 and res.get("imported") is not True,
          (r.returncode, r.stdout))
    check("  and the store is unchanged", held() == before)

    r, res = imp(inc)
    check("the incremental export is imported on top of the kept one: the two new reports added, the earlier held",
          r.returncode == 0 and res.get("added") == 2 and res.get("held") == n_full, (r.returncode, r.stdout, r.stderr))
    rows = held()
    taraz = [x for x in rows if x.get("place") == "Taraz"]
    check("the desk holds every report, the new one verified with its attachment (from the incremental export's "
          "media)", len(rows) == n_full + 2 and len(taraz) == 1 and taraz[0]["verified"] is True and
          taraz[0]["attachments"] == 1, taraz)
    r, res = imp(inc)
    check("the same incremental export again adds nothing", r.returncode == 0 and res.get("added") == 0, r.stdout)

    # Incremental on incremental; and one that leaves a gap after what the desk holds.
    add_report(dala, phone, "Kyzylorda")
    harness.run(dala, "sync", "--store", phone)
    inc2 = os.path.join(work, "inc2.export")
    _, since3 = exported(server_bin, server.data, inc2, "--since", str(since2))
    add_report(dala, phone, "Atyrau")
    harness.run(dala, "sync", "--store", phone)
    gap = os.path.join(work, "gap.export")
    exported(server_bin, server.data, gap, "--since", str(since3))
    r, res = imp(gap)
    check("an incremental export leaving a gap after the desk's log is refused, naming the --since to use",
          r.returncode != 0 and f"--since {since2}" in r.stderr, (r.returncode, r.stdout, r.stderr))
    r, res = imp(inc2)
    check("a second incremental export joins the first", r.returncode == 0 and res.get("added") == 1, r.stdout)
    overlap = os.path.join(work, "overlap.export")
    exported(server_bin, server.data, overlap, "--since", str(since))
    r, res = imp(overlap)
    check("an incremental export overlapping what the desk holds adds only the new report",
          r.returncode == 0 and res.get("added") == 1 and len(held()) == n_full + 4, (r.returncode, r.stdout))
    past = harness.run(server_bin, "export", "--data", server.data, "--out", os.path.join(work, "past.export"),
                       "--since", "1000000", check=False)
    check("--since past the log's end exits 2", past.returncode == 2 and "1000000" in past.stderr, past.stderr)


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-operator-")
    server = None
    try:
        org_key, server = harness.new_server(dala, server_bin, work)
        server.start()
        phone = devices_and_invites(dala, server_bin, work, server.desk, server)
        incremental_exports(dala, server_bin, work, server, org_key, phone)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if FAILED:
        print(f"{len(FAILED)} checks failed: {FAILED}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
