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


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-operator-")
    server = None
    try:
        org_key, server = harness.new_server(dala, server_bin, work)
        server.start()
        devices_and_invites(dala, server_bin, work, server.desk, server)
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
