#!/usr/bin/env python3
"""Copies a README code block into a source file so that the tests compile and run exactly what the README
shows. Usage: extract_sample.py README LANGUAGE MARKER OUT: the first ```LANGUAGE block that contains
MARKER is written to OUT (unchanged files are not rewritten)."""
import re
import sys

readme, lang, marker, out = sys.argv[1:5]
blocks = re.findall(r"```" + re.escape(lang) + r"\n(.*?)```", open(readme, encoding="utf-8").read(), re.S)
block = next((b for b in blocks if marker in b), None)
if block is None:
    sys.exit(f"no ```{lang} block with '{marker}' in {readme}")
try:
    if open(out, encoding="utf-8").read() == block:
        sys.exit(0)
except OSError:
    pass
open(out, "w", encoding="utf-8").write(block)
