#!/usr/bin/env python3
"""The secure-core benchmark (dala_bench) for another architecture under qemu-user, beside the same benchmark
built for this machine, in the same run: each figure for both and their ratio (issue 17, for the record
only: qemu emulates the other CPU, so the ratio says how much slower the emulation is, not a phone).

Usage: arch_ratio.py NATIVE_BENCH [ARGS...] -- EMULATOR... OTHER_BENCH
ARGS (--reports N, --seal-samples N) go to both. Both take their invite from the dala and dala-server beside
NATIVE_BENCH.
"""
import os
import re
import subprocess
import sys

ROW = re.compile(r"^(\S.*?)\s{2,}(-?[0-9.]+) (ms|/s|us)\b")
PRIMITIVES = re.compile(r"(Ed25519 sign 2 KiB|sealed box|XChaCha20-Poly1305 2 KiB|BLAKE2b 2 KiB|"
                        r"4 KiB append\+fdatasync) ([0-9.]+) ms")


def figures(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        sys.exit(f"{' '.join(cmd)} ran for over an hour")
    if r.returncode not in (0, 1):  # 1: a target missed, which is still a run
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    out = {}
    for line in r.stdout.splitlines():
        for name, value in PRIMITIVES.findall(line):
            out["primitive: " + name] = (float(value), "ms")
        m = ROW.match(line)
        if m:
            out[m.group(1).strip()] = (float(m.group(2)), m.group(3))
    if not out:
        sys.exit(f"no figures from {' '.join(cmd)}:\n{r.stdout[-2000:]}")
    return out


def main():
    if "--" not in sys.argv:
        sys.exit(__doc__)
    split = sys.argv.index("--")
    native, args, other = sys.argv[1], sys.argv[2:split], sys.argv[split + 1:]
    tools = ["--tools", os.path.dirname(os.path.abspath(native))]
    mine = figures([native] + args + tools)
    theirs = figures(other + args + tools)
    print(f"dala_bench {' '.join(args)}: this machine's build beside the other one under {other[0]}, same run; "
          "ratio = emulated time / native time (for rates: native rate / emulated rate)")
    print(f"{'figure':56} {'native':>12} {'emulated':>12} {'ratio':>8}")
    for name, (value, unit) in mine.items():
        if name not in theirs:
            continue
        other_value = theirs[name][0]
        if value <= 0 or other_value <= 0:
            continue
        ratio = value / other_value if unit == "/s" else other_value / value
        print(f"{name[:56]:56} {value:10.3f}{unit:>2} {other_value:10.3f}{unit:>2} {ratio:7.1f}x")
    return 0


sys.exit(main())
