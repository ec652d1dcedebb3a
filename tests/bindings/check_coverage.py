#!/usr/bin/env python3
"""Every public C function has a binding in Java and in Swift, or is listed here with its reason.

A function of core/include/dala/dala.h is bound in Java when the JNI glue (bindings/jni/*.cc) calls it, and
in Swift when bindings/swift/Sources/Dala/*.swift does. Two lists name the rest:
- DELIBERATE: not bound on purpose, with the reason (the binding gets the same thing another way);
- NOT_YET: gaps that are still to close (issue 17, item 4). The list only shrinks: a new C function
  without a binding fails this check, and so does a listed function that has been bound since (remove it
  from the list), or one that no longer exists.
Usage: check_coverage.py REPO_ROOT. Exit 1 with what is wrong."""
import glob
import os
import re
import sys

JSON = "Swift reads a report whole through dala_report_to_json into its Codable Report"
HEX = "ids are 16 bytes shown as hex by the language's own code"
STATUS = "the status is the call's own return value"

DELIBERATE = {
    "java": {
        "dala_report_id_parse": HEX + " (ReportId.parse, Hex.java)",
        "dala_report_id_to_string": HEX + " (Id16.toString)",
        "dala_attachment_id_parse": HEX + " (Id16)",
        "dala_attachment_id_to_string": HEX + " (Id16.toString)",
        "dala_report_state_name": "ReportState is a Java enum with its own names",
        "dala_error_status": STATUS,
    },
    "swift": {
        "dala_report_id_to_string": HEX + " (hex() in Store.swift)",
        "dala_attachment_id_to_string": HEX + " (hex() in Store.swift)",
        "dala_report_get_text": JSON,
        "dala_report_get_integer": JSON,
        "dala_report_get_decimal": JSON,
        "dala_report_get_boolean": JSON,
        "dala_report_get_timestamp": JSON,
        "dala_report_get_narrative": JSON,
        "dala_report_get_created_ms": JSON,
        "dala_report_get_seal_info": JSON + " (device_key, content_hash, previous_hash)",
        "dala_report_get_field_type": JSON,
        "dala_report_get_geo": JSON,
        "dala_report_get_people": JSON,
        "dala_report_is_purged": JSON + " (Report.isPurged)",
        "dala_status_name": "DalaError.Code names each status itself (check_status_map.py keeps them in step)",
        "dala_error_status": STATUS,
    },
}

NOT_YET = {
    "java": set(),
    "swift": set(),
}


def read(pattern):
    return "".join(open(f, encoding="utf-8").read() for f in sorted(glob.glob(pattern)))


def code(text):
    """The text without comments: a function named in a comment is not bound."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


root = sys.argv[1]
header = read(os.path.join(root, "core/include/dala/dala.h"))
functions = sorted(set(re.findall(r"DALA_API\s+[^;(]*?\b(dala_\w+)\s*\(", header)))
sources = {
    "java": code(read(os.path.join(root, "bindings/jni/*.cc")) + read(os.path.join(root, "bindings/jni/*.h"))),
    "swift": code(read(os.path.join(root, "bindings/swift/Sources/Dala/*.swift"))),
}
problems = []
if len(functions) < 50:
    problems.append(f"only {len(functions)} functions found in dala.h: the pattern no longer matches the header")
for lang, src in sources.items():
    bound = {f for f in functions if re.search(r"\b" + f + r"\b", src)}
    for f in functions:
        if f in bound:
            if f in DELIBERATE[lang]:
                problems.append(f"{lang}: {f} is bound but listed as deliberately not bound: remove it from the list")
            if f in NOT_YET[lang]:
                problems.append(f"{lang}: {f} is bound now: remove it from NOT_YET")
        elif f not in DELIBERATE[lang] and f not in NOT_YET[lang]:
            problems.append(f"{lang}: {f} has no binding (bind it, or list it in DELIBERATE with the reason)")
    for f in sorted(set(DELIBERATE[lang]) & NOT_YET[lang]):
        problems.append(f"{lang}: {f} is in both lists")
    for f in sorted(set(DELIBERATE[lang]) | NOT_YET[lang]):
        if f not in functions:
            problems.append(f"{lang}: {f} is listed but not in dala.h")
    print(f"{lang}: {len(bound)} of {len(functions)} functions bound, {len(DELIBERATE[lang])} deliberately not, "
          f"{len(NOT_YET[lang])} not yet")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
