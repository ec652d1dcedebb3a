#!/usr/bin/env bash
# libdala.so exports dala_* only, links SQLCipher, and never links plain libsqlite3.
set -euo pipefail
lib=$1
symbols=$(nm -D --defined-only "$lib" | awk '{print $3}')
deps=$(ldd "$lib")
bad=$(grep -v '^dala_' <<<"$symbols" || true)
if [ -n "$bad" ]; then echo "exported non-dala symbols:"; head -20 <<<"$bad"; exit 1; fi
count=$(grep -c '^dala_' <<<"$symbols")
if grep -q 'libsqlite3\.so' <<<"$deps"; then echo "libdala links libsqlite3"; exit 1; fi
grep -q 'libsqlcipher' <<<"$deps" || { echo "libdala does not link SQLCipher"; exit 1; }
echo "ok: $count dala_* symbols exported, SQLCipher linked, libsqlite3 not linked"
