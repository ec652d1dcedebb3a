#!/usr/bin/env bash
# cmake --install into a fresh prefix, then build and run a C and a C++ program against it twice: with
# find_package(Dala) and with pkg-config. Checks the soname links, the CLIs, and the pkg-config prefix.
# Usage: install_test.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
P=$WORK/prefix
cmake --install "$BUILD" --prefix "$P" >/dev/null
fail() { echo "FAIL: $*"; exit 1; }

LIB=$P/lib
[ -d "$P/lib/x86_64-linux-gnu" ] && LIB=$P/lib/x86_64-linux-gnu
version=$(sed -n 's/^Version: //p' "$LIB/pkgconfig/dala.pc")
major=${version%%.*}
for f in libdala.so libdala.so.$major libdala.so.$version libdala_desk.so libdala_desk.so.$major; do
  [ -e "$LIB/$f" ] || fail "$f is not installed"
done
[ -L "$LIB/libdala.so" ] && [ -L "$LIB/libdala.so.$major" ] || fail "libdala's soname links are not links"
soname=$(objdump -p "$LIB/libdala.so.$version" | awk '/SONAME/ {print $2}')
[ "$soname" = "libdala.so.$major" ] || fail "SONAME is '$soname'"
for h in dala.h dala.hh desk.h desk.hh; do [ -f "$P/include/dala/$h" ] || fail "include/dala/$h"; done
[ -f "$LIB/cmake/Dala/DalaConfig.cmake" ] && [ -f "$LIB/cmake/Dala/DalaConfigVersion.cmake" ] || fail "CMake package"
"$P/bin/dala" --version >/dev/null || fail "installed dala does not run"
"$P/bin/dala-server" --version >/dev/null || fail "installed dala-server does not run"
# The sources, built, or the build tree, must not be needed: move the build's libraries out of the way.
export PKG_CONFIG_PATH=$LIB/pkgconfig
[ "$(cd "$WORK" && pkg-config --variable=includedir dala)" -ef "$P/include" ] || fail "dala.pc includedir"
[ "$(pkg-config --variable=libdir dala)" -ef "$LIB" ] || fail "dala.pc libdir: $(pkg-config --variable=libdir dala)"
grep -q sqlcipher <<<"$(pkg-config --print-requires-private dala)" || fail "Requires.private lacks sqlcipher"

# 1. find_package(Dala)
cmake -S "$HERE" -B "$WORK/cm" -G Ninja -DCMAKE_PREFIX_PATH="$P" >/dev/null
cmake --build "$WORK/cm" >"$WORK/cm.log" 2>&1 || { tail -20 "$WORK/cm.log"; fail "building against the installed prefix (find_package)"; }
out=$("$WORK/cm/consumer_c" "$WORK/s1") || fail "C consumer (find_package): exit $?"
grep -q "^C: Dala $version, 1 report" <<<"$out" || fail "C consumer (find_package): $out"
out=$("$WORK/cm/consumer_cc" "$WORK/s2") || fail "C++ consumer (find_package): exit $?"
grep -q "^C++: Dala $version, report saved" <<<"$out" || fail "C++ consumer (find_package): $out"

# 2. pkg-config
mkdir "$WORK/pc"
cc -std=c99 -Wall -Werror -o "$WORK/pc/consumer_c" "$HERE/consumer.c" $(pkg-config --cflags --libs dala_desk) \
  -Wl,-rpath,"$LIB"
c++ -std=c++17 -Wall -Werror -o "$WORK/pc/consumer_cc" "$HERE/consumer.cc" $(pkg-config --cflags --libs dala_desk) \
  -Wl,-rpath,"$LIB"
out=$("$WORK/pc/consumer_c" "$WORK/s3") || fail "C consumer (pkg-config): exit $?"
grep -q "^C: Dala $version, 1 report" <<<"$out" || fail "C consumer (pkg-config): $out"
out=$("$WORK/pc/consumer_cc" "$WORK/s4") || fail "C++ consumer (pkg-config): exit $?"
grep -q "^C++: Dala $version" <<<"$out" || fail "C++ consumer (pkg-config): $out"
# They run on the installed library, not the build tree's.
linked=$(ldd "$WORK/pc/consumer_c")  # not piped into grep -q: with pipefail, an early exit is a SIGPIPE failure
grep -q "$LIB/libdala.so.$major" <<<"$linked" || fail "pkg-config consumer does not use the installed libdala"

# 3. The Swift package against the installed library (its CDala target finds it through pkg-config), when a
# Swift toolchain is here: the package copied out of the sources, built in a scratch directory of its own.
swift_note=""
if command -v swift >/dev/null 2>&1; then
  cp -r "$HERE/../../bindings/swift" "$WORK/swiftpkg"
  rm -rf "$WORK/swiftpkg/.build"
  swift build --package-path "$WORK/swiftpkg" --scratch-path "$WORK/swift" --product DalaBench >"$WORK/swift.log" 2>&1 ||
    { tail -20 "$WORK/swift.log"; fail "the Swift package against the installed prefix"; }
  linked=$(LD_LIBRARY_PATH=$LIB ldd "$WORK/swift/debug/DalaBench")
  grep -q "$LIB/libdala.so.$major" <<<"$linked" || fail "the Swift package does not link the installed libdala"
  swift_note="; the Swift package built against it"
fi
echo "ok: installed Dala $version into a fresh prefix; C and C++ consumers built with find_package and pkg-config ran$swift_note"
