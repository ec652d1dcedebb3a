#!/usr/bin/env python3
"""Every reference in the Java binding's public API says whether it may be null.

Kotlin and Android's lint read org.jetbrains.annotations.@Nullable / @NotNull (class retention: nothing
needed at run time) and turn them into `T?` and `T`; without them a Kotlin app sees platform types and
finds out about null at run time. This reads the compiled classes (javap -v, as a Kotlin compiler reads
them) and lists every public or protected method, constructor and field of a public class whose reference
parameter, return type or type is not annotated, or is annotated both ways. It also checks that a wrong
class fails the check (a method left unannotated, and one annotated both ways).

Usage: java_nullability_test.py CLASSES_DIR_OR_JAR ANNOTATIONS_JAR
"""
import os
import re
import subprocess
import sys
import tempfile
import zipfile

NOT_NULL = "org.jetbrains.annotations.NotNull"
NULLABLE = "org.jetbrains.annotations.Nullable"


def class_names(where):
    if where.endswith(".jar"):
        names = zipfile.ZipFile(where).namelist()
    else:
        names = [os.path.relpath(os.path.join(d, f), where) for d, _, fs in os.walk(where) for f in fs]
    return sorted(n[:-6].replace("/", ".") for n in names if n.endswith(".class"))


def javap(cp, names):
    out = subprocess.run(["javap", "-v", "-p", "-cp", cp] + names, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"javap failed: {out.stderr[:500]}")
    return out.stdout


def reference_slots(descriptor):
    """(parameter indices that are references, whether the return is a reference) of a method descriptor."""
    params, ret = re.match(r"\((.*)\)(.*)", descriptor).groups()
    refs, i, n = [], 0, 0
    while i < len(params):
        j = i
        while params[j] == "[":
            j += 1
        if params[j] == "L":
            j = params.index(";", j)
        if params[i] in "[L":
            refs.append(n)
        i, n = j + 1, n + 1
    return refs, ret[0] in "[L"


def problems(text):
    """The unannotated or doubly annotated references of public classes in javap -v output."""
    found = []
    for cls in re.split(r"\n(?=(?:public |final |abstract |interface |class |enum )*(?:class|interface|enum) )", text):
        head = re.search(r"^((?:public |protected |private |static |final |abstract )*)(class|interface|enum) ([\w.$]+)",
                         cls, re.M)
        if not head or "public" not in head.group(1):
            continue
        name, kind = head.group(3), head.group(2)
        if re.search(r"^[^\n]*extends java\.lang\.Enum<", cls, re.M):
            kind = "enum"
        if re.search(r"flags: \(0x[0-9a-f]+\)[^\n]*ACC_SYNTHETIC", cls.split("\n  ", 1)[0]):
            continue
        for decl, body in members(cls):
            if not re.match(r"(public|protected) ", decl):
                continue
            flags = re.search(r"flags: \(0x[0-9a-f]+\) ([^\n]*)", body)
            if flags and ("ACC_SYNTHETIC" in flags.group(1) or "ACC_BRIDGE" in flags.group(1)):
                continue
            desc = re.search(r"descriptor: (\S+)", body)
            if not desc:
                continue
            desc = desc.group(1)
            own = re.search(r"RuntimeInvisibleAnnotations:\n((?:      [^\n]*\n)*)", body)
            own = own.group(1) if own else ""
            member = f"{name}: {decl}"
            if kind == "enum" and re.search(r" (values|valueOf)\(", decl):
                continue  # the compiler's own; Kotlin knows them
            if flags and "ACC_ENUM" in flags.group(1):
                continue  # an enum's constant: never null
            if not desc.startswith("("):  # a field
                if desc[0] in "[L":
                    found += check_one(member, "its type", own)
                continue
            refs, ret_ref = reference_slots(desc)
            if ret_ref:
                found += check_one(member, "its return", own)
            params = re.search(r"RuntimeInvisibleParameterAnnotations:\n((?:      [^\n]*\n)*)", body)
            per = {}
            if params:
                for p in re.finditer(r"parameter (\d+):\n((?:        [^\n]*\n)*)", params.group(1)):
                    per[int(p.group(1))] = p.group(2)
            # javac leaves out the synthetic outer-instance parameter of inner-class constructors: an offset.
            declared = count_params(desc)
            listed = max(per) + 1 if per else declared
            offset = declared - listed if listed < declared else 0
            for i in refs:
                if i < offset:
                    continue
                found += check_one(member, f"parameter {i}", per.get(i - offset, ""))
    return found


def members(cls):
    """(declaration, details) of each member in one class's javap -v output: a declaration is a line indented
    by exactly two spaces and ending in ';', its details the more indented lines after it."""
    out, decl, body = [], None, []
    for line in cls.split("\n"):
        m = re.match(r"  (\S.*);$", line)
        if m:
            if decl is not None:
                out.append((decl, "\n".join(body) + "\n"))
            decl, body = m.group(1), []
        elif decl is not None and (line.startswith("   ") or line == ""):
            body.append(line)
        elif decl is not None:
            out.append((decl, "\n".join(body) + "\n"))
            decl, body = None, []
    if decl is not None:
        out.append((decl, "\n".join(body) + "\n"))
    return out


def count_params(descriptor):
    params = re.match(r"\((.*)\)", descriptor).group(1)
    return len(re.findall(r"\[*(?:L[^;]+;|[BCDFIJSZ])", params))


def check_one(member, what, annotations):
    nn, nl = NOT_NULL in annotations, NULLABLE in annotations
    if nn and nl:
        return [f"{member}: {what} is annotated both @NotNull and @Nullable"]
    if not nn and not nl:
        return [f"{member}: {what} says nothing about null"]
    return []


def self_check(annotations_jar):
    """A class the check must refuse: one method unannotated, one annotated both ways."""
    work = tempfile.mkdtemp(prefix="dala-nullability-")
    src = os.path.join(work, "org", "dala", "Wrong.java")
    os.makedirs(os.path.dirname(src))
    with open(src, "w") as f:
        f.write("package org.dala;\nimport org.jetbrains.annotations.*;\npublic final class Wrong {\n"
                "  public @NotNull String fine(@Nullable String a, int b) { return \"\"; }\n"
                "  public String bare(@NotNull String a) { return a; }\n"
                "  public void both(@NotNull @Nullable String a) {}\n"
                "  public @Nullable Object field;\n  public Object plain;\n}\n")
    subprocess.run(["javac", "--release", "8", "-cp", annotations_jar, "-d", work, src], check=True, timeout=120)
    got = problems(javap(work, ["org.dala.Wrong"]))
    want = {"bare": "its return", "both": "both", "plain": "its type"}
    ok = len(got) == 3 and all(any(k in g and v in g for g in got) for k, v in want.items()) and \
        not any("fine" in g or " field" in g for g in got)
    return ok, got


def main():
    where, annotations_jar = sys.argv[1], sys.argv[2]
    ok, got = self_check(annotations_jar)
    print(("ok   " if ok else "FAIL ") + "the check refuses an unannotated return, a type, a double annotation")
    if not ok:
        print("  " + "\n  ".join(got))
    names = [n for n in class_names(where) if n.startswith("org.dala.")]
    found = problems(javap(where, names))
    for f in found:
        print("FAIL " + f)
    publics = len(re.findall(r"\n  (public|protected) ", javap(where, names)))
    print(f"{'ok  ' if not found else 'FAIL'} {publics} public members of {len(names)} classes: "
          f"{len(found)} references without a word on null")
    failed = (0 if ok else 1) + (1 if found else 0)
    print(f"{2 - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
