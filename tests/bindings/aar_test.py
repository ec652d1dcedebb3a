#!/usr/bin/env python3
"""The Android library archive as tools/package_aar.py assembles it (issue 17, item 6), from this build's
dala.jar and this machine's libraries packed as the x86_64 ABI (the Android emulator's; no NDK is obtainable
here, so a real AAR is assembled the same way from NDK builds): its exact list of entries; a manifest for
package org.dala; classes.jar with every org.dala class, none newer than Java 8 (class version 52), and
every class the JNI glue looks up by name; the consumer rules (proguard.txt) as written in the repository,
keeping org.dala and native methods; each library an x86-64 ELF shared object. Refused, writing nothing: a
library of another architecture under an ABI's name, an unknown ABI, a missing library, and libraries that
would not load on Android (this machine's: a versioned SONAME, glibc's libraries needed, 4 KiB segments).

    aar_test.py BUILD_DIR SOURCE_DIR
"""
import os
import re
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile


def main():
    build, src = (os.path.abspath(x) for x in sys.argv[1:3])
    tool = os.path.join(src, "tools", "package_aar.py")
    jar, lib = os.path.join(build, "lib", "dala.jar"), os.path.join(build, "lib")
    problems = []

    def check(ok, what):
        if not ok:
            problems.append(what)

    def package(*args):
        return subprocess.run([sys.executable, tool, "--jar", jar, *args], capture_output=True, text=True, timeout=120)

    with tempfile.TemporaryDirectory(prefix="dala-aar-") as tmp:
        out = os.path.join(tmp, "dala.aar")
        # This machine's libraries need glibc's and Debian's: refused as they are, packed with --unchecked.
        p = package("--abi", f"x86_64={lib}", "--out", out)
        check(p.returncode == 1 and "libdala.so.0" in p.stderr and "libstdc++.so.6" in p.stderr
              and "16 KiB" in p.stderr and not os.path.exists(out),
              f"this machine's libraries were not refused for Android: exit {p.returncode}, {p.stderr.strip()!r}")
        p = package("--abi", f"x86_64={lib}", "--unchecked", "--out", out)
        check(p.returncode == 0, f"package_aar.py exited {p.returncode}: {p.stderr.strip()}")
        if p.returncode == 0:
            with zipfile.ZipFile(out) as aar:
                names = sorted(aar.namelist())
                want = sorted(["AndroidManifest.xml", "classes.jar", "proguard.txt", "R.txt",
                               "jni/x86_64/libdala_jni.so", "jni/x86_64/libdala.so"])
                check(names == want, f"entries {names}, want {want}")
                manifest = ET.fromstring(aar.read("AndroidManifest.xml"))
                ns = "{http://schemas.android.com/apk/res/android}"
                check(manifest.get("package") == "org.dala", f"manifest package {manifest.get('package')}")
                sdk = manifest.find("uses-sdk")
                check(sdk is not None and sdk.get(ns + "minSdkVersion") == "24", "manifest minSdkVersion is not 24")
                with open(os.path.join(src, "bindings", "jni", "android", "consumer-rules.pro"), "rb") as f:
                    check(aar.read("proguard.txt") == f.read(), "proguard.txt is not bindings/jni/android/consumer-rules.pro")
                rules = aar.read("proguard.txt").decode()
                check("-keep class org.dala.** { *; }" in rules, "the rules do not keep org.dala")
                check("native <methods>" in rules, "the rules do not keep native methods")
                with open(os.path.join(tmp, "classes.jar"), "wb") as f:
                    f.write(aar.read("classes.jar"))
                for so in ("libdala_jni.so", "libdala.so"):
                    head = aar.read(f"jni/x86_64/{so}")[:20]
                    check(head[:4] == b"\x7fELF" and head[4] == 2 and struct.unpack("<H", head[18:20])[0] == 62,
                          f"{so} is not an x86-64 ELF object")
            with zipfile.ZipFile(os.path.join(tmp, "classes.jar")) as classes:
                listed = set(classes.namelist())
                sources = os.listdir(os.path.join(src, "bindings", "jni", "java", "org", "dala"))
                for s in sources:
                    if s.endswith(".java"):
                        check(f"org/dala/{s[:-5]}.class" in listed, f"classes.jar lacks org/dala/{s[:-5]}.class")
                for name in listed:
                    if name.endswith(".class"):
                        major = struct.unpack(">H", classes.read(name)[6:8])[0]
                        check(major <= 52, f"{name} is class version {major}, newer than Java 8")
                glue = "".join(open(os.path.join(src, "bindings", "jni", f), encoding="utf-8").read()
                               for f in os.listdir(os.path.join(src, "bindings", "jni")) if f.endswith((".cc", ".h")))
                looked_up = set(re.findall(r'"(org/dala/[A-Za-z0-9_$/]+)"', glue))
                check(looked_up, "no class names found in the JNI glue")
                for cls in looked_up:
                    check(f"{cls}.class" in listed, f"the glue looks up {cls}, which classes.jar lacks")
                # Each rule that keeps an app's implementation of a callback names a method the interface
                # declares (a stale rule keeps nothing, and R8 then renames the method the glue calls by name).
                kept = re.findall(r"-keepclassmembers class \* implements (org\.dala\.[\w$]+) \{(.*?)\}", rules, re.S)
                check(len(kept) >= 4, f"expected the callback rules, found {len(kept)}")
                for iface, members in kept:
                    shown = subprocess.run(["javap", "-cp", os.path.join(tmp, "classes.jar"), iface],
                                           capture_output=True, text=True).stdout
                    declared = {re.sub(r"\s+throws .*$", "",
                                       re.sub(r"^(public |abstract |default |static )+", "", line.strip().rstrip(";")))
                                for line in shown.splitlines() if "(" in line}
                    for member in (m.strip() for m in members.split(";") if m.strip()):
                        check(" ".join(member.split()) in declared,
                              f"the rule for {iface} keeps '{member}', which it does not declare: {sorted(declared)}")

        # Libraries made as an NDK build makes them (SONAME = file name, 16 KiB pages, nothing needed but each
        # other) pass the load checks; the same with 4 KiB pages or a versioned SONAME do not.
        fake = os.path.join(tmp, "fake")
        os.makedirs(fake)
        src_c = os.path.join(tmp, "f.c")
        with open(src_c, "w") as f:
            f.write("int dala_fake(void) { return 7; }\n")

        def cc(out_name, soname, page, *extra):
            subprocess.run(["cc", "-shared", "-fPIC", "-nostdlib", f"-Wl,-soname,{soname}", f"-Wl,-z,max-page-size={page}",
                            "-o", os.path.join(fake, out_name), src_c, *extra], check=True, timeout=60)

        cc("libdala.so", "libdala.so", 16384)
        cc("libdala_jni.so", "libdala_jni.so", 16384, "-L" + fake, "-ldala")
        p = package("--abi", f"x86_64={fake}", "--out", os.path.join(tmp, "ndk-like.aar"))
        check(p.returncode == 0, f"libraries made as the NDK makes them were refused: {p.stderr.strip()!r}")
        cc("libdala.so", "libdala.so.0", 4096)
        p = package("--abi", f"x86_64={fake}", "--out", os.path.join(tmp, "bad-soname.aar"))
        check(p.returncode == 1 and "SONAME" in p.stderr and "16 KiB" in p.stderr,
              f"a versioned SONAME and 4 KiB pages were not refused: {p.stderr.strip()!r}")

        # Refusals: nothing written.
        for what, args in [
            ("this machine's libraries as arm64-v8a", ["--abi", f"arm64-v8a={lib}"]),
            ("an unknown ABI", ["--abi", f"mips={lib}"]),
            ("a directory without the libraries", ["--abi", f"x86_64={tmp}"]),
        ]:
            bad = os.path.join(tmp, "bad.aar")
            p = package(*args, "--out", bad)
            check(p.returncode == 1 and p.stderr.strip(), f"{what}: exit {p.returncode}, stderr {p.stderr.strip()!r}")
            check(not os.path.exists(bad) and not os.path.exists(bad + ".part"), f"{what}: something was written")

    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("the AAR holds the manifest, classes.jar (Java 8), the consumer rules and each ABI's libraries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
