#!/usr/bin/env python3
"""Keeps README code samples and the code the tests compile and run the same. Usage:
  extract_sample.py README LANGUAGE MARKER OUT           writes the first ```LANGUAGE block containing MARKER
                                                         to OUT (not rewritten when unchanged)
  extract_sample.py README LANGUAGE MARKER --check FILE  exit 1 unless that block is exactly FILE's text"""
import re
import sys

readme, lang, marker, out = sys.argv[1:5]
check = out == "--check"
if check:
    out = sys.argv[5]
blocks = re.findall(r"```" + re.escape(lang) + r"\n(.*?)```", open(readme, encoding="utf-8").read(), re.S)
block = next((b for b in blocks if marker in b), None)
if block is None:
    sys.exit(f"no ```{lang} block with '{marker}' in {readme}")
try:
    same = open(out, encoding="utf-8").read() == block
except OSError:
    same = False
if check:
    if not same:
        sys.exit(f"the ```{lang} sample in {readme} differs from {out}: keep them the same")
    print(f"the README's {lang} sample is {out}")
elif not same:
    open(out, "w", encoding="utf-8").write(block)
