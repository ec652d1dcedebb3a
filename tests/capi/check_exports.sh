#!/usr/bin/env bash
# libdala.so exports dala_* only and no desk code; libdala_desk.so exports dala_desk_* only. Both link
# SQLCipher only through libdala, and never plain libsqlite3; libdala links no QR or PNG library.
set -euo pipefail
lib=$1 desk=$2
symbols=$(nm -D --defined-only "$lib" | awk '{print $3}')
deps=$(ldd "$lib")
bad=$(grep -v '^dala_' <<<"$symbols" || true)
if [ -n "$bad" ]; then echo "libdala exports non-dala symbols:"; head -20 <<<"$bad"; exit 1; fi
if grep -q '^dala_desk_' <<<"$symbols"; then echo "libdala carries desk code:"; grep '^dala_desk_' <<<"$symbols" | head; exit 1; fi
count=$(grep -c '^dala_' <<<"$symbols")
if grep -q 'libsqlite3\.so' <<<"$deps"; then echo "libdala links libsqlite3"; exit 1; fi
# Invite QR codes are the dala CLI's (tools/cli/qr_code.cc): a phone makes none.
if grep -Eq 'libqrencode|libpng' <<<"$deps"; then echo "libdala links libqrencode or libpng"; exit 1; fi
grep -q 'libsqlcipher' <<<"$deps" || { echo "libdala does not link SQLCipher"; exit 1; }
dsym=$(nm -D --defined-only "$desk" | awk '{print $3}')
dbad=$(grep -v '^dala_desk_' <<<"$dsym" || true)
if [ -n "$dbad" ]; then echo "libdala_desk exports non-desk symbols:"; head -20 <<<"$dbad"; exit 1; fi
dcount=$(grep -c '^dala_desk_' <<<"$dsym")
if grep -q 'libsqlite3\.so' <<<"$(ldd "$desk")"; then echo "libdala_desk links libsqlite3"; exit 1; fi
echo "ok: libdala exports $count dala_* symbols (no dala_desk_*), libdala_desk $dcount dala_desk_*; SQLCipher linked; libsqlite3, libqrencode and libpng not"
