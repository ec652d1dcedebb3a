#!/usr/bin/env bash
# A sysroot for cross-compiling libdala and its tests (cmake/cross-linux.cmake): Debian's own packages for
# another architecture, downloaded with a private apt state (nothing installed, no foreign architecture added
# to this machine, no root needed) and unpacked with dpkg-deb -x. Kept until its package list changes.
#   tools/sysroot.sh ARCH DIR      ARCH: arm64, armhf or s390x
set -euo pipefail
arch=$1 dir=$2
case "$arch" in arm64|armhf|s390x) ;; *) echo "tools/sysroot.sh: ARCH is arm64, armhf or s390x" >&2; exit 2 ;; esac
# What libdala (with its HTTP transport) and its tests link: the C and C++ runtimes, libsodium, SQLCipher 4
# (bookworm-backports, as on the build machine), protobuf-lite, OpenSSL, GoogleTest. Boost is header-only
# and the same on every architecture: the build machine's headers are linked in.
PACKAGES=(libc6 libc6-dev linux-libc-dev libgcc-s1 libgcc-12-dev libstdc++6 libstdc++-12-dev libatomic1 libcrypt1
          libcrypt-dev zlib1g libsodium23 libsodium-dev libsqlcipher1/bookworm-backports
          libsqlcipher-dev/bookworm-backports libprotobuf-lite32 libprotobuf-dev libssl3 libssl-dev libgtest-dev
          libgmock-dev)
stamp="$arch ${PACKAGES[*]}"
[ -f "$dir/.dala-sysroot" ] && [ "$(cat "$dir/.dala-sysroot")" = "$stamp" ] && exit 0

state=$dir.apt
rm -rf "$dir" "$state"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs" "$dir"
apt=(apt-get -q -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o Dir::State::status=/dev/null
     -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
# The machine's own sources (bookworm, -updates, -security, -backports: tools/dev deps lists backports); a
# source without packages for ARCH is only noted by apt. Three tries, for a network that drops a request.
fetched=0
for try in 1 2 3; do
  if "${apt[@]}" update >/dev/null && (cd "$state/debs" && "${apt[@]}" download "${PACKAGES[@]}" >/dev/null); then
    fetched=1
    break
  fi
  echo "tools/sysroot.sh: downloading $arch packages failed (try $try of 3)" >&2
  sleep $((try * 5))
done
[ $fetched -eq 1 ] || { echo "tools/sysroot.sh: could not download Debian's $arch packages (network?)" >&2; exit 1; }
for deb in "$state/debs"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
# Merged as Debian's own systems are (/lib -> usr/lib): qemu-arm's loader otherwise stops searching /lib's
# multiarch directory after the first library it does not find there.
if [ -d "$dir/lib" ] && [ ! -L "$dir/lib" ]; then
  cp -a "$dir/lib/." "$dir/usr/lib/" && rm -rf "$dir/lib" && ln -s usr/lib "$dir/lib"
fi
# Debian's absolute symlinks (libm.so -> /lib/...) would point at this machine's files: made relative.
find "$dir" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
  ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$dir$(readlink "$link")")" "$link"
done
ln -sfn /usr/include/boost "$dir/usr/include/boost"
rm -rf "$state"
printf '%s' "$stamp" >"$dir/.dala-sysroot"
