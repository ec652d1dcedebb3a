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

java_src = open(os.path.join(root, "bindings/jni/java/org/dala/Status.java"), encoding="utf-8").read()
java = {cname: int(num) for _, num, cname in re.findall(r"\b([A-Z_]+)\((\d+), \"(DALA_[A-Z_]+)\"\)", java_src)}
for name, num in c.items():
    if name not in java:
        problems.append(f"Java: {name} ({num}) has no org.dala.Status")
    elif java[name] != num:
        problems.append(f"Java: {name} is {java[name]}, the C header says {num}")
for name in java:
    if name not in c:
        problems.append(f"Java: {name} is not in the C header")

swift_path = os.path.join(root, "bindings/swift/Sources/Dala/DalaError.swift")
checked = ["Java"]
if os.path.exists(swift_path):
    swift_src = open(swift_path, encoding="utf-8").read()
    # case wrongKey = 3 // DALA_ERR_WRONG_KEY
    swift = {cname: int(num) for num, cname in re.findall(r"case \w+ = (\d+)\s*//\s*(DALA_[A-Z_]+)", swift_src)}
    for name, num in c.items():
        if name not in swift:
            problems.append(f"Swift: {name} ({num}) has no DalaError.Code")
        elif swift[name] != num:
            problems.append(f"Swift: {name} is {swift[name]}, the C header says {num}")
    for name in swift:
        if name not in c:
            problems.append(f"Swift: {name} is not in the C header")
    checked.append("Swift")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"{len(c)} status codes; {' and '.join(checked)} agree with the C header"
      + ("" if "Swift" in checked else " (no Swift binding yet)"))
