#!/usr/bin/env python3
"""docs/mobile.md's code compiles (issue 17, item 7): every ```java block is a whole class, compiled with
javac --release 8 against this build's dala.jar and the compile-only Android stand-ins of
tests/mobile/android-stubs; every ```swift block that starts with "// compiled on Linux" is type-checked
against this build's Dala module (swift_bindings builds it). A wrong snippet, compiled the same way, must
fail: the check can fail. Without a Swift toolchain the Swift part is reported as not run.

    mobile_snippets_test.py BUILD_DIR SOURCE_DIR [--only java|swift]

With --only swift and no Swift toolchain: exit 77 (ctest: skipped), never a pass.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    build, src = (os.path.abspath(x) for x in sys.argv[1:3])
    only = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--only" else None
    doc = open(os.path.join(src, "docs", "mobile.md"), encoding="utf-8").read()
    jar = os.path.join(build, "lib", "dala.jar")
    stubs = sorted(glob.glob(os.path.join(src, "tests", "mobile", "android-stubs", "**", "*.java"), recursive=True))
    problems = []

    def javac(work, sources):
        return subprocess.run(["javac", "--release", "8", "-encoding", "UTF-8", "-Xlint:all", "-Xlint:-options",
                               "-Werror", "-cp", jar, "-d", os.path.join(work, "classes"), *sources],
                              capture_output=True, text=True, timeout=300)

    java_blocks = re.findall(r"```java\n(.*?)```", doc, re.S) if only != "swift" else []
    if only == "swift" and shutil.which("swiftc") is None:
        print("no Swift toolchain: the Swift snippets are not type-checked here")
        return 77
    with tempfile.TemporaryDirectory(prefix="dala-mobile-") as work:
        files = []
        for block in java_blocks:
            pkg = re.search(r"^package ([\w.]+);", block, re.M)
            cls = re.search(r"^public (?:final |abstract )?class (\w+)", block, re.M)
            if not pkg or not cls:
                problems.append(f"a java block is not a whole public class:\n{block[:200]}")
                continue
            d = os.path.join(work, "src", *pkg.group(1).split("."))
            os.makedirs(d, exist_ok=True)
            files.append(os.path.join(d, cls.group(1) + ".java"))
            with open(files[-1], "w", encoding="utf-8") as f:
                f.write(block)
        if only != "swift":
            if len(files) < 4:
                problems.append(f"{len(files)} Java snippets found in docs/mobile.md, expected at least 4")
            p = javac(work, files + stubs)
            if p.returncode != 0:
                problems.append("the Java snippets do not compile:\n" + p.stderr[-3000:])
            else:
                print(f"{len(files)} Java snippets compiled: " + ", ".join(os.path.basename(f) for f in files))
            # The check can fail: a snippet calling what org.dala does not have.
            wrong = os.path.join(work, "wrong", "Wrong.java")
            os.makedirs(os.path.dirname(wrong))
            with open(wrong, "w") as f:
                f.write("public class Wrong { void f(org.dala.Store s) { s.syncEverythingNow(); } }\n")
            if javac(work, [wrong]).returncode == 0:
                problems.append("a Java snippet calling a method org.dala lacks compiled")
        if only == "java":
            swift_blocks = None

        else:
            swift_blocks = [b for b in re.findall(r"```swift\n(.*?)```", doc, re.S) if b.startswith("// compiled on Linux")]
        swiftc = shutil.which("swiftc")
        modules = os.path.join(build, "swift", "debug", "Modules")
        if swift_blocks is None:
            pass
        elif len(swift_blocks) < 2:
            problems.append(f"{len(swift_blocks)} Swift snippets marked '// compiled on Linux', expected at least 2")
        if swift_blocks is None:
            pass
        elif swiftc is None:
            print("no Swift toolchain: the Swift snippets were not type-checked")
        elif not os.path.exists(os.path.join(modules, "Dala.swiftmodule")):
            problems.append(f"no Dala module in {modules} (swift_bindings builds it)")
        else:
            def typecheck(path):
                return subprocess.run([swiftc, "-typecheck", "-swift-version", "6", "-I", modules, "-Xcc",
                                       "-fmodule-map-file=" + os.path.join(src, "bindings", "swift", "Sources", "CDala",
                                                                          "module.modulemap"),
                                       "-Xcc", "-I" + os.path.join(src, "core", "include"), path],
                                      capture_output=True, text=True, timeout=300)
            for i, block in enumerate(swift_blocks):
                path = os.path.join(work, f"snippet{i}.swift")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(block)
                p = typecheck(path)
                if p.returncode != 0:
                    problems.append(f"Swift snippet {i + 1} does not type-check:\n{p.stderr[-3000:]}")
            bad = os.path.join(work, "wrong.swift")
            with open(bad, "w") as f:
                f.write("import Dala\nfunc f(_ s: Store) throws { try s.syncEverythingNow() }\n")
            if typecheck(bad).returncode == 0:
                problems.append("a Swift snippet calling a method Dala lacks type-checked")
            if not problems:
                print(f"{len(swift_blocks)} Swift snippets type-checked")

    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
