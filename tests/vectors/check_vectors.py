#!/usr/bin/env python3
"""Checks `dala desk open` against the desk's test vectors: every export in tests/vectors/data (made by
dala_make_vectors, see docs/protocol.md, "Test vectors") must get exactly the verdicts in
tests/vectors/expected.json: exit code, counts, each report version verified or failed with the named
problem, versions absent, the export's own problems, and the attachments decrypted to the bytes sealed.
Then the same counts and verdicts from a second implementation (tests/vectors/second: Python and
libsodium through ctypes, written from docs/protocol.md and docs/storage-format.md, sharing no code with
the desk).

    check_vectors.py BIN_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


def receipt_files(vec):
    """A vector's phones' receipts: one file (`dala receipts --json`) or several, given to the desk in order."""
    r = vec.get("receipts", [])
    return [r] if isinstance(r, str) else r


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    dala = os.path.join(os.path.abspath(sys.argv[1]), "dala")
    with open(os.path.join(HERE, "expected.json")) as f:
        expected = json.load(f)
    with open(os.path.join(DATA, "keys.json")) as f:
        keys = json.load(f)
    env = dict(os.environ, DALA_PASSPHRASE=keys["passphrase"])
    problems = []
    for n, vec in enumerate(expected["vectors"]):
        name = vec["file"] + "".join(f" --receipts {r}" for r in receipt_files(vec))
        with tempfile.TemporaryDirectory(prefix="dala-vectors-") as out:
            cmd = [dala, "desk", "open", "--key", os.path.join(DATA, "desk.key"), "--from",
                   os.path.join(DATA, vec["file"]), "--out", os.path.join(out, "desk"), "--json"]
            for r in receipt_files(vec):
                cmd += ["--receipts", os.path.join(DATA, r)]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            if p.returncode != vec["exit"]:
                problems.append(f"{name}: exit {p.returncode}, expected {vec['exit']} ({p.stderr.strip()})")
            try:
                counts = json.loads(p.stdout)
                with open(os.path.join(out, "desk", "summary.json")) as f:
                    summary = json.load(f)
            except (ValueError, OSError) as e:
                problems.append(f"{name}: no summary ({e}): {p.stdout.strip()} {p.stderr.strip()}")
                continue
            for k, v in vec.get("counts", {}).items():
                if counts.get(k) != v:
                    problems.append(f"{name}: {k} = {counts.get(k)}, expected {v}")
            for k, v in vec.get("at_least", {}).items():
                if counts.get(k, 0) < v:
                    problems.append(f"{name}: {k} = {counts.get(k)}, expected at least {v}")
            ids = {keys["report_a"]: "A", keys["report_b"]: "B"}
            seen = {}
            for item in summary["items"]:
                role = ids.get(item["id"], "X") + str(item["version"])
                seen[role] = item
            for role, verdict in vec.get("items", {}).items():
                item = seen.get(role)
                if item is None:
                    problems.append(f"{name}: {role} is not in the desk's summary")
                elif verdict is True and (not item["verified"] or item["problems"]):
                    problems.append(f"{name}: {role} not verified: {item['problems']}")
                elif isinstance(verdict, str) and (item["verified"] or
                                                   not any(verdict in q for q in item["problems"])):
                    problems.append(f"{name}: {role} should fail with '{verdict}': verified={item['verified']}, "
                                    f"{item['problems']}")
            if set(seen) - set(vec.get("items", {})):
                problems.append(f"{name}: unexpected versions {sorted(set(seen) - set(vec['items']))}")
            for role in vec.get("absent", []):
                if role in seen:
                    problems.append(f"{name}: {role} should be absent")
            if "export_problem" in vec and not any(vec["export_problem"] in q for q in summary["problems"]):
                problems.append(f"{name}: no export problem with '{vec['export_problem']}': {summary['problems']}")
            if "export_problem" not in vec and summary["problems"] and vec["exit"] == 0:
                problems.append(f"{name}: unexpected export problems {summary['problems']}")
            for role, count in vec.get("attachments", {}).items():
                item = seen[role]
                folder = os.path.join(out, "desk", f"{item['id']}-v{item['version']}-attachments")
                files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
                if len(files) != count:
                    problems.append(f"{name}: {role} has {len(files)} attachments decrypted, expected {count}")
                for fn in files:
                    with open(os.path.join(folder, fn), "rb") as f:
                        if f.read().decode(errors="replace") != expected["attachment_text"]:
                            problems.append(f"{name}: {role}'s attachment {fn} is not what was sealed")
    problems += second_implementation(expected, keys)
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"desk test vectors: {len(expected['vectors'])} verdicts as docs/protocol.md requires, from the desk "
          "and from a second implementation")


def second_implementation(expected, keys):
    sys.path.insert(0, os.path.join(HERE, "second"))
    import verify  # noqa: E402 (tests/vectors/second/verify.py)
    problems = []
    org = verify.open_key(os.path.join(DATA, "desk.key"), passphrase=keys["passphrase"])
    if org["root"].hex() != keys["root_public_key"]:
        problems.append("second implementation: the key file gives another root")
    ids = {keys["report_a"]: "A", keys["report_b"]: "B"}
    for vec in expected["vectors"]:
        name = "second implementation: " + vec["file"] + "".join(" with " + r for r in receipt_files(vec))
        receipts = []
        for file in receipt_files(vec):
            with open(os.path.join(DATA, file)) as f:
                receipts += [bytes.fromhex(r["receipt"]) for r in json.load(f)]
        counts, items = verify.open_export(org, os.path.join(DATA, vec["file"]), receipts)
        counts["phone_receipts"] = len(receipts)  # the number given, as the desk prints it
        # docs/protocol.md, "Order of the work", 5: the exit code follows from the counts.
        exit_code = 4 if counts["reports"] == 0 else int(any(counts[k] for k in (
            "failed", "duplicates", "reordered", "unknown_fields", "missing", "phone_receipts_invalid", "log_problems")))
        if exit_code != vec["exit"]:
            problems.append(f"{name}: exit {exit_code} from its counts, expected {vec['exit']}")
        for k, v in vec.get("counts", {}).items():
            if counts.get(k, 0) != v:
                problems.append(f"{name}: {k} = {counts.get(k, 0)}, expected {v}")
        for k, v in vec.get("at_least", {}).items():
            if counts.get(k, 0) < v:
                problems.append(f"{name}: {k} = {counts.get(k, 0)}, expected at least {v}")
        got = {}
        for it in items:
            if it["body"]:
                got[ids.get(it["body"]["report_id"].hex(), "X") + str(it["body"]["version"])] = it["ok"]
        want = {role: verdict is True for role, verdict in vec.get("items", {}).items()}
        if got != want:
            problems.append(f"{name}: verdicts {got}, expected {want}")
    return problems


if __name__ == "__main__":
    main()
