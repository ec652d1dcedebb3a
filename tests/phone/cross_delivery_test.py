#!/usr/bin/env python3
"""A phone of another architecture delivers to this machine's dala-server, and this machine's desk verifies
what it sealed (issue 17, item 2). The phone is tests/phone/deliver.c built for arm64 (or armhf) and run under
qemu-user; the organisation's desk, dala-server and the export's checks run natively. The phone records a
report whose values a byte-order, word-size or time_t assumption would change (int64 extremes, a timestamp
in 2100 and one before 1970, coordinates, a long decimal, Cyrillic text), attaches a 2.5 MiB file (several
upload chunks, the last one short), seals it, edits and seals version 2, and syncs with libdala's own HTTP
transport. Then: the phone holds two receipts it verified (signed here); the export holds both versions; the
desk verifies them (device signature, enrolment, receipt, log, attachment hashes); and every value and every
attachment byte reads back at the desk exactly as the phone set it.

    cross_delivery_test.py HOST_BIN_DIR -- [EMULATOR ARGS...] DELIVER_PROGRAM
"""
import glob
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
from harness import run  # noqa: E402

# What deliver.c sets, as the desk's report JSON shows it (version 2: "released" true).
EXPECTED_FIELDS = {
    "place": "Алматы, Republic Square",
    "count_min": -9223372036854775808,
    "count_max": 9223372036854775807,
    "detained": 0x01020304050607,
    "fine": "-12345678901234567.891",
    "seen": 4102444800123,
    "before": -86400000,
    "where": {"latitude": 43.238949, "longitude": 76.889709, "accuracy_m": 12.5},
}
PEOPLE = [("Айгерим Ж.", "detained"), ("Nurlan K.", "")]
LOCATION = (-33.868820, 151.209295)
NARRATIVE = "Six runners stopped at 07:40; CANARY-CROSS-ARCH-7f3a."


def field_values(report):
    """{key: value} of a desk report JSON's fields ({"report": {"fields": {key: {"type", "value"}}}})."""
    return {k: f.get("value") for k, f in (report.get("report", {}).get("fields") or {}).items()}


def main():
    argv = sys.argv[1:]
    if len(argv) < 3 or argv[1] != "--":
        sys.exit(__doc__)
    host_bin, phone_cmd = os.path.abspath(argv[0]), argv[2:]
    dala, server_bin = harness.binaries(host_bin)
    problems = []

    def check(ok, what):
        if not ok:
            problems.append(what)

    with tempfile.TemporaryDirectory(prefix="dala-cross-") as work:
        org_key, server = harness.new_server(dala, server_bin, work)
        server.start()
        try:
            invite = server.invite()
            clip = bytes((i * 7919 >> 3) & 0xFF for i in range(5 * 512 * 1024 + 4321))
            clip_path = os.path.join(work, "clip.mp4")
            with open(clip_path, "wb") as f:
                f.write(clip)
            phone = run(*phone_cmd, os.path.join(work, "phone"), invite, clip_path, check=False, timeout=400)
            print(phone.stdout.strip())
            check(phone.returncode == 0, f"the phone exited {phone.returncode}: {phone.stderr.strip()[-800:]}")
            check("receipts 2 verified 2" in phone.stdout, f"the phone's receipts: {phone.stdout.strip()}")
        finally:
            server.stop()

        export = os.path.join(work, "export.dala")
        run(server_bin, "export", "--data", server.data, "--out", export)
        desk = os.path.join(work, "desk")
        opened = run(dala, "desk", "open", "--key", org_key, "--from", export, "--out", desk, check=False)
        check(opened.returncode == 0, f"desk open exited {opened.returncode}: {opened.stdout.strip()} {opened.stderr.strip()}")
        with open(os.path.join(desk, "summary.json")) as f:
            summary = json.load(f)
        check(summary.get("reports") == 2 and summary.get("verified") == 2 and summary.get("failed", 0) == 0,
              f"desk summary: {summary.get('reports')} reports, {summary.get('verified')} verified, "
              f"{summary.get('failed')} failed")
        for version, released in ((1, False), (2, True)):
            found = glob.glob(os.path.join(desk, f"*-v{version}.json"))
            check(len(found) == 1, f"version {version}: {found}")
            if len(found) != 1:
                continue
            with open(found[0]) as f:
                report = json.load(f)
            what = f"v{version}"
            check(report.get("verified") is True, f"{what}: not verified: {report.get('problems')}")
            check(report.get("receipt", {}).get("verified") is True, f"{what}: receipt not verified")
            values = field_values(report)
            for key, want in EXPECTED_FIELDS.items():
                got = values.get(key)
                if isinstance(want, dict):
                    got_cmp = {k: (got or {}).get(k) for k in want}
                    check(got_cmp == want, f"{what}: {key} = {got!r}, want {want!r}")
                else:
                    check(got == want, f"{what}: {key} = {got!r}, want {want!r}")
            check(values.get("released") is released, f"{what}: released = {values.get('released')!r}")
            people = [(p.get("name"), p.get("role", "")) for p in values.get("detained_people") or []]
            check(people == PEOPLE, f"{what}: people {people}")
            content = report.get("report", {})
            check(content.get("narrative") == NARRATIVE, f"{what}: narrative {content.get('narrative')!r}")
            loc = content.get("capture", {}).get("location") or {}
            check((loc.get("latitude"), loc.get("longitude")) == LOCATION, f"{what}: location {loc}")
            files = [a for a in report.get("attachments", []) if a.get("verified") and a.get("mime") == "video/mp4"]
            check(len(files) == 1 and files[0].get("size") == len(clip), f"{what}: attachments {report.get('attachments')}")
            if len(files) == 1 and files[0].get("file"):
                with open(os.path.join(desk, files[0]["file"]), "rb") as f:
                    check(f.read() == clip, f"{what}: the attachment's bytes differ from the phone's file")

    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("a phone of another architecture delivered; the desk verified both versions and every value")
    return 0


if __name__ == "__main__":
    sys.exit(main())
