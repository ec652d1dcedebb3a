#!/usr/bin/env bash
# What libdala carries: without its HTTP transport, no OpenSSL and no Beast (nothing linked, no symbol or
# string of them inside); either way only dala_* exported. Prints the stripped size (docs/c-api.md, "Builds").
set -euo pipefail
lib=$1 variant=$2
deps=$(readelf -d "$lib" | awk '/NEEDED/ {print $5}' | tr -d '[]')
exported=$(nm -D --defined-only "$lib" | awk '{print $3}')
[ -n "$exported" ] || { echo "no exported symbols in $lib"; exit 1; }
bad=$(grep -v '^dala_' <<<"$exported" || true)
if [ -n "$bad" ]; then echo "libdala exports non-dala symbols:"; head -5 <<<"$bad"; exit 1; fi
# Every symbol, local ones too (the build keeps its symbol table): captured first, so that a grep that stops
# at its first match cannot end the pipeline with SIGPIPE (and pipefail) and pass for "none found".
symbols=$(nm -C "$lib")
[ -n "$symbols" ] || { echo "no symbol table in $lib"; exit 1; }
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
"${STRIP:-strip}" --strip-all -o "$stripped" "$lib"  # STRIP: the cross build's (llvm-strip)
if [ "$variant" = without-transport ]; then
  if grep -Eq 'libssl|libcrypto' <<<"$deps"; then echo "libdala links OpenSSL: $deps"; exit 1; fi
  # Beast's and OpenSSL's marks: their namespaces in (local) symbols and their error strings.
  if grep -Eq 'boost::(beast|asio)|SSL_' <<<"$symbols"; then echo "libdala carries Beast/Asio or SSL code"; exit 1; fi
  if grep -acE 'boost\.beast|beast\.http|SSL_CTX|asio\.(ssl|misc|netdb)' "$stripped" >/dev/null; then
    echo "libdala carries Beast, Asio or OpenSSL strings"; exit 1
  fi
else
  grep -Eq 'libssl' <<<"$deps" || { echo "libdala with its transport should link OpenSSL"; exit 1; }
  grep -Eq 'boost::(beast|asio)' <<<"$symbols" || { echo "libdala with its transport should carry Beast"; exit 1; }
fi
machine=$(readelf -h "$lib" | sed -n 's/^ *Machine: *//p')
echo "libdala ($variant, $machine): $(stat -c %s "$stripped") bytes stripped; needs: $(tr '\n' ' ' <<<"$deps")"
