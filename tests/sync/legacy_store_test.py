#!/usr/bin/env python3
"""A phone store written by Dala 0.1 (tests/fixtures/store-0.1, made by tests/fixtures/make_store_0.1.sh at
commit 7d4fb78) opens with this code and loses nothing: every report, version, field, narrative and
attachment reads back as 0.1 sealed it (same content hashes), its 0.1 receipts are kept. Its queued
reports wait (no server speaks 0.1's protocol, and a 0.1 invite vouches for no organisation); joining an
organisation without --include-existing hands it none of them; joining with --include-existing delivers
every sealed version, and the organisation's desk verifies each (signatures, enrolment, receipts,
attachments). The draft stays a draft.

    legacy_store_test.py BIN_DIR
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
from harness import run  # noqa: E402

FIXTURE = os.path.join(harness.ROOT, "tests", "fixtures", "store-0.1")


def main():
    args = harness.parser(__doc__, seed=False).parse_args()
    dala, server_bin = harness.binaries(args.bin_dir)
    with open(os.path.join(FIXTURE, "expected.json")) as f:
        expected = json.load(f)
    env = dict(harness.ENV, DALA_PASSPHRASE=expected["passphrase"])
    legacy = expected["server"]["destination"]
    problems = []

    def check(ok, what):
        if not ok:
            problems.append(what)

    def phone(work, name):
        store = os.path.join(work, name)
        shutil.copytree(FIXTURE, store, ignore=shutil.ignore_patterns("expected.json"))
        return store

    with tempfile.TemporaryDirectory(prefix="dala-legacy-") as work:
        store = phone(work, "phone")
        dala_run = lambda *a, **kw: run(dala, *a, env=env, **kw)  # noqa: E731

        # 1. Everything 0.1 wrote reads back.
        listed = {r["id"]: r for r in json.loads(dala_run("report", "list", "--store", store, "--json").stdout)}
        check(set(listed) == {r["id"] for r in expected["reports"]}, f"reports listed: {sorted(listed)}")
        for rep in expected["reports"]:
            got = listed.get(rep["id"], {})
            check(got.get("version") == rep["latest_version"], f"{rep['name']}: latest version {got.get('version')}")
            for ver in rep["versions"]:
                shown = json.loads(dala_run("report", "show", "--store", store, rep["id"], "--version",
                                            str(ver["version"]), "--json").stdout)
                what = f"{rep['name']} v{ver['version']}"
                check(shown["narrative"] == ver["narrative"], f"{what}: narrative {shown['narrative']!r}")
                check(shown["fields"] == ver["fields"], f"{what}: fields differ: {shown['fields']}")
                check(shown["form"] == rep["form"], f"{what}: form {shown['form']}")
                check((shown["state"] == "draft") == (not ver["sealed"]), f"{what}: state {shown['state']}")
                if ver["sealed"]:
                    check(shown["content_hash"] == ver["content_hash"], f"{what}: content hash changed")
                for att in ver["attachments"]:
                    out = os.path.join(work, f"{att['id']}.out")
                    dala_run("attachment", "get", "--store", store, att["id"], "--out", out)
                    with open(out, "rb") as f:
                        check(hashlib.sha256(f.read()).hexdigest() == att["sha256"], f"{what}: attachment differs")
                    os.remove(out)
        held = json.loads(dala_run("receipts", "--store", store, "--json").stdout)
        check({(r["id"], r["version"]) for r in held} ==
              {(r["id"], v["version"]) for r in expected["reports"] for v in r["versions"]
               if (v.get("outbox") or {}).get("state") == "delivered"}, f"0.1 receipts kept: {len(held)}")
        check(dala_run("check", "--store", store).returncode == 0, "dala check")

        # 2. Its queued reports wait: nothing is sent to a 0.1 destination, and sync says why.
        out = dala_run("outbox", "--store", store, "--destination", legacy).stdout
        check(out.startswith(f"{legacy}: 2 pending"), f"0.1 outbox: {out.strip()}")
        synced = dala_run("sync", "--store", store, check=False)
        check(synced.returncode == 5 and "2 left" in (synced.stdout + synced.stderr) and "0.1 invite" in (synced.stdout + synced.stderr),
              f"sync before joining: exit {synced.returncode}: {(synced.stdout + synced.stderr).strip()}")

        # A report sealed now is not queued for the 0.1 destination either.
        new_id = dala_run("report", "add", "--store", store, "--form", "fixture/2",
                          "--text", "sealed after the upgrade", "--seal").stdout.strip()
        out = dala_run("outbox", "--store", store, "--destination", legacy).stdout
        check(out.startswith(f"{legacy}: 2 pending"), f"0.1 outbox after a new seal: {out.strip()}")

        # 3. The organisation, on this protocol.
        org_key, server = harness.new_server(dala, server_bin, work)
        server.start()
        try:
            # Joined without --include-existing: the organisation gets only what is sealed from then on.
            other = phone(work, "other")
            dala_run("join", "--store", other, server.invite(uses=2))
            synced = dala_run("sync", "--store", other, check=False)
            check(synced.returncode == 5 and "0 delivered" in (synced.stdout + synced.stderr),
                  f"sync without include-existing: exit {synced.returncode}: {(synced.stdout + synced.stderr).strip()}")
            check(run(server_bin, "export", "--data", server.data, "--out", os.path.join(work, "none.dala"),
                      check=False).returncode == 4, "the organisation received 0.1 reports it was not given")

            # With --include-existing: every sealed version is delivered, and the desk verifies each.
            dala_run("join", "--store", store, "--include-existing", server.invite())
            synced = dala_run("sync", "--store", store, check=False)
            check(synced.returncode == 0 and "0 left" in (synced.stdout + synced.stderr),
                  f"sync with include-existing: exit {synced.returncode}: {(synced.stdout + synced.stderr).strip()}")
            out = dala_run("outbox", "--store", store, "--destination", legacy).stdout
            check(out.startswith(f"{legacy}: 0 pending"), f"0.1 outbox after the handover: {out.strip()}")
            sealed = {(r["id"], v["version"]) for r in expected["reports"] for v in r["versions"] if v["sealed"]}
            sealed.add((new_id, 1))
            export = os.path.join(work, "export.dala")
            run(server_bin, "export", "--data", server.data, "--out", export)
            desk = os.path.join(work, "desk")
            opened = run(dala, "desk", "open", "--key", org_key, "--from", export, "--out", desk, check=False)
            check(opened.returncode == 0, f"desk open: exit {opened.returncode}: {opened.stdout.strip()}")
            with open(os.path.join(desk, "summary.json")) as f:
                summary = json.load(f)
            check({(i["id"], i["version"]) for i in summary["items"]} == sealed,
                  f"the organisation holds {sorted((i['id'], i['version']) for i in summary['items'])}")
            check(summary["verified"] == len(sealed) and summary["failed"] == 0, f"desk: {opened.stdout.strip()}")
            for rep in expected["reports"]:
                for ver in rep["versions"]:
                    if not ver["sealed"]:
                        continue
                    folder = os.path.join(desk, f"{rep['id']}-v{ver['version']}-attachments")
                    got = set()
                    if os.path.isdir(folder):
                        for name in os.listdir(folder):
                            with open(os.path.join(folder, name), "rb") as f:
                                got.add(hashlib.sha256(f.read()).hexdigest())
                    check(got == {a["sha256"] for a in ver["attachments"]},
                          f"{rep['name']} v{ver['version']}: the desk decrypted {len(got)} attachments")
            mine = {(r["id"], r["version"]) for r in
                    json.loads(dala_run("receipts", "--store", store, "--json").stdout) if r["verified"]}
            check(sealed <= mine, f"verified receipts missing for {sorted(sealed - mine)}")
            draft = [r for r in expected["reports"] if not r["versions"][-1]["sealed"]][0]
            shown = json.loads(dala_run("report", "show", "--store", store, draft["id"], "--json").stdout)
            check(shown["state"] == "draft", f"the draft is now {shown['state']}")
        finally:
            server.stop()

    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print("a 0.1 store: everything reads back; its queued reports waited; delivered and verified after "
          f"joining its organisation with --include-existing ({len(sealed)} versions)")


if __name__ == "__main__":
    main()
