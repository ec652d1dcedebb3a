#!/usr/bin/env bash
# What libdala carries: without its HTTP transport, no OpenSSL and no Beast (nothing linked, no symbol or
# string of them inside); either way only dala_* exported. Prints the stripped size (docs/c-api.md, "Builds").
set -euo pipefail
lib=$1 variant=$2
deps=$(readelf -d "$lib" | awk '/NEEDED/ {print $5}' | tr -d '[]')
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^dala_' || true)
if [ -n "$bad" ]; then echo "libdala exports non-dala symbols:"; head -5 <<<"$bad"; exit 1; fi
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
strip --strip-all -o "$stripped" "$lib"
if [ "$variant" = without-transport ]; then
  if grep -Eq 'libssl|libcrypto' <<<"$deps"; then echo "libdala links OpenSSL: $deps"; exit 1; fi
  # Beast's and OpenSSL's marks: their namespaces in (local) symbols and their error strings.
  if nm -C "$lib" 2>/dev/null | grep -Eq 'boost::(beast|asio)|SSL_'; then echo "libdala carries Beast/Asio or SSL code"; exit 1; fi
  if grep -aqE 'beast\.http|SSL_CTX|asio\.ssl' "$stripped"; then echo "libdala carries Beast or OpenSSL strings"; exit 1; fi
else
  grep -Eq 'libssl' <<<"$deps" || { echo "libdala with its transport should link OpenSSL"; exit 1; }
fi
echo "libdala ($variant, $(uname -m)): $(stat -c %s "$stripped") bytes stripped; needs: $(tr '\n' ' ' <<<"$deps")"
