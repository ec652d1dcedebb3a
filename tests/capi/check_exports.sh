#!/usr/bin/env bash
# libdala.so exports dala_* only and never links plain libsqlite3.
set -euo pipefail
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^dala_' || true)
if [ -n "$bad" ]; then echo "exported non-dala symbols:"; echo "$bad" | head -20; exit 1; fi
count=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -c '^dala_')
if ldd "$lib" | grep -q 'libsqlite3\.so'; then echo "libdala links libsqlite3"; exit 1; fi
ldd "$lib" | grep -q 'libsqlcipher' || { echo "libdala does not link SQLCipher"; exit 1; }
echo "ok: $count dala_* symbols exported, SQLCipher linked, libsqlite3 not linked"
