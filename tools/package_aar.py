#!/usr/bin/env python3
"""Assembles the Android library archive (AAR) of the Java binding:

    AndroidManifest.xml   bindings/jni/android/AndroidManifest.xml (package org.dala, minSdk 24)
    classes.jar           org.dala (javac --release 8: build/lib/dala.jar)
    jni/<abi>/*.so        libdala_jni.so and libdala.so for each ABI, plus --extra-lib (SQLCipher, libsodium...,
                          unless the app's build links them into libdala.so)
    proguard.txt          bindings/jni/android/consumer-rules.pro (what R8 must keep for JNI)
    R.txt                 empty: the library has no resources

    package_aar.py --jar build/lib/dala.jar --abi arm64-v8a=DIR [--abi armeabi-v7a=DIR ...]
                   [--extra-lib NAME ...] --out dala.aar

Each DIR holds that ABI's libraries, built with the Android NDK (docs/bindings.md: not verified here). Every
library is checked to be an ELF shared object for its ABI's machine and word size, so that a library of
another architecture (or this machine's) is never packed under an ABI's name; and to load on Android: its
SONAME is its file name (Android's loader finds libraries by file name), every library it needs is packed
for the same ABI or is one of Android's own (libc.so, liblog.so, ...), and on 64-bit ABIs its segments are
aligned for 16 KiB pages (Google Play requires it of apps targeting Android 15). --unchecked skips those load
checks (a layout check with libraries that will never load on Android). Exit 1 with what is wrong."""
import argparse
import os
import re
import struct
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ANDROID = os.path.join(HERE, "..", "bindings", "jni", "android")
# Android ABI -> (ELF e_machine, ELF class: 1 = 32-bit, 2 = 64-bit)
ABIS = {"arm64-v8a": (183, 2), "armeabi-v7a": (40, 1), "x86_64": (62, 2), "x86": (3, 1)}
LIBS = ["libdala_jni.so", "libdala.so"]
# Android's own libraries that an app's native code may link (the NDK's stable APIs).
SYSTEM = {"libc.so", "libm.so", "libdl.so", "liblog.so", "libz.so", "libandroid.so", "libjnigraphics.so",
          "libEGL.so", "libGLESv1_CM.so", "libGLESv2.so", "libGLESv3.so", "libOpenSLES.so", "libOpenMAXAL.so",
          "libmediandk.so", "libnativewindow.so", "libvulkan.so", "libamidi.so", "libaaudio.so", "libbinder_ndk.so",
          "libneuralnetworks.so", "libsync.so", "libcamera2ndk.so", "libicu.so", "libstdc++.so"}


def dynamic(path):
    """(SONAME or None, [NEEDED...], [PT_LOAD alignments]) through readelf, which reads any ELF."""
    d = subprocess.run(["readelf", "-dW", path], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", d)
    soname = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", d)
    l = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
    aligns = [int(line.split()[-1], 16) for line in l.splitlines() if line.strip().startswith("LOAD")]
    return (soname.group(1) if soname else None), needed, aligns


def elf_kind(path):
    """(e_machine, class) of an ELF shared object, or None."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    ei_class, ei_data = head[4], head[5]
    e_type, e_machine = struct.unpack("<HH" if ei_data == 1 else ">HH", head[16:20])
    return (e_machine, ei_class) if e_type == 3 else None  # ET_DYN


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jar", required=True, help="the org.dala classes (build/lib/dala.jar)")
    p.add_argument("--abi", action="append", required=True, metavar="ABI=DIR", help="an ABI and its libraries")
    p.add_argument("--extra-lib", action="append", default=[], metavar="NAME",
                   help="another library to pack from each ABI's directory")
    p.add_argument("--out", required=True)
    p.add_argument("--unchecked", action="store_true",
                   help="skip the checks that the libraries load on Android (SONAME, dependencies, 16 KiB pages)")
    a = p.parse_args()
    problems, entries = [], []
    with zipfile.ZipFile(a.jar) as jar:
        if "org/dala/Store.class" not in jar.namelist():
            problems.append(f"{a.jar} holds no org/dala/Store.class")
    seen = set()
    for spec in a.abi:
        abi, _, lib_dir = spec.partition("=")
        if abi not in ABIS or not lib_dir:
            problems.append(f"--abi {spec}: ABI=DIR, ABI one of {', '.join(ABIS)}")
            continue
        if abi in seen:
            problems.append(f"--abi {abi} given twice")
        seen.add(abi)
        for name in LIBS + a.extra_lib:
            path = os.path.join(lib_dir, name)
            if not os.path.isfile(path):
                problems.append(f"{abi}: no {path}")
                continue
            kind = elf_kind(path)
            if kind != ABIS[abi]:
                problems.append(f"{abi}: {path} is not a shared library for {abi} (ELF machine and class {kind}, "
                                f"want {ABIS[abi]})")
                continue
            entries.append((f"jni/{abi}/{name}", path))
        if a.unchecked:
            continue
        packed = {os.path.basename(path) for name, path in entries if name.startswith(f"jni/{abi}/")}
        for name in LIBS + a.extra_lib:
            path = os.path.join(lib_dir, name)
            if name not in packed:
                continue
            soname, needed, aligns = dynamic(path)
            if soname not in (None, name):
                problems.append(f"{abi}: {name}'s SONAME is {soname}: Android finds it by its file name")
            missing = [n for n in needed if n not in packed and n not in SYSTEM]
            if missing:
                problems.append(f"{abi}: {name} needs {', '.join(missing)}: neither packed (--extra-lib) nor Android's own")
            if ABIS[abi][1] == 2 and aligns and min(aligns) < 16384:
                problems.append(f"{abi}: {name}'s segments are aligned at {min(aligns)} bytes: 16 KiB pages need "
                                f"-Wl,-z,max-page-size=16384")
    if problems:
        print("package_aar.py: " + "\n  ".join(problems), file=sys.stderr)
        return 1
    tmp = a.out + ".part"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as aar:
        aar.write(os.path.join(ANDROID, "AndroidManifest.xml"), "AndroidManifest.xml")
        aar.write(a.jar, "classes.jar")
        aar.write(os.path.join(ANDROID, "consumer-rules.pro"), "proguard.txt")
        aar.writestr("R.txt", "")
        for name, path in entries:
            aar.write(path, name)
    os.replace(tmp, a.out)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
