#!/usr/bin/env python3
"""One source of truth for errors: every dala_status in the C header must appear, with the same number,
in the Java binding (org.dala.Status) and in the Swift binding (DalaError), and neither may have extra
ones. Usage: check_status_map.py REPO_ROOT. Exit 1 with the differences."""
import os
import re
import sys

root = sys.argv[1]
header = open(os.path.join(root, "core/include/dala/dala.h"), encoding="utf-8").read()
enum = re.search(r"typedef enum dala_status \{(.*?)\} dala_status;", header, re.S).group(1)
c = {name: int(num) for name, num in re.findall(r"\b(DALA_(?:OK|ERR_[A-Z_]+))\s*=\s*(\d+)", enum)}
problems = []


def compare(lang, mapped, what):
    for name, num in c.items():
        if name not in mapped:
            problems.append(f"{lang}: {name} ({num}) has no {what}")
        elif mapped[name] != num:
            problems.append(f"{lang}: {name} is {mapped[name]}, the C header says {num}")
    for name in mapped:
        if name not in c:
            problems.append(f"{lang}: {name} is not in the C header")


java_src = open(os.path.join(root, "bindings/jni/java/org/dala/Status.java"), encoding="utf-8").read()
compare("Java", {cname: int(num) for _, num, cname in re.findall(r"\b([A-Z_]+)\((\d+), \"(DALA_[A-Z_]+)\"\)", java_src)},
        "org.dala.Status")
checked = ["Java"]
swift_path = os.path.join(root, "bindings/swift/Sources/Dala/DalaError.swift")
if os.path.exists(swift_path):
    swift_src = open(swift_path, encoding="utf-8").read()
    # case wrongKey = 3  // DALA_ERR_WRONG_KEY
    compare("Swift", {cname: int(num) for num, cname in re.findall(r"case \w+ = (\d+)\s*//\s*(DALA_[A-Z_]+)", swift_src)},
            "DalaError.Code")
    checked.append("Swift")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"{len(c)} status codes; {' and '.join(checked)} agree with the C header"
      + ("" if "Swift" in checked else " (no Swift binding yet)"))
