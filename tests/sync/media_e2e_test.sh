#!/usr/bin/env bash
# Media end to end with real processes over loopback: a phone (dala) uploads attachments to dala-server
# through a proxy that cuts the connection at random byte offsets (tools/faultproxy.py cut), over HTTPS too;
# the server's storage fills up; the desk decrypts and verifies. Usage: media_e2e_test.sh BIN_DIR
set -uo pipefail
BIN=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
cd "$T"
export DALA_PASSPHRASE="media e2e"
F=(--kdf-ops 1 --kdf-mem-mib 8)
# The store records no Argon2id cost: every command on these stores is given the same one.
export DALA_KDF_OPS=1 DALA_KDF_MEM_MIB=8
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { if [ "$2" = "$3" ]; then ok; else bad "$1 (got '$3', expected '$2')"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 200); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "no start: $1"; return 1; }
start_server() {  # start_server PORT [extra...]
  "$BIN/dala-server" run --data srv --listen "127.0.0.1:$1" --quiet "${@:2}" >"$T/server-$1.out" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_for "$T/server-$1.out"
}
start_proxy() {  # start_proxy LISTEN TARGET CUTS...
  python3 "$ROOT/tools/faultproxy.py" cut "$@" 2>"$T/proxy-$1.out" &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_for "$T/proxy-$1.out"
}
stop() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
stored() { "$BIN/dala-server" devices --data srv --json | python3 -c 'import json,sys; print(sum(d["reports"] for d in json.load(sys.stdin)))'; }
# sync_until STORE RUNS: sync until nothing is left (exit 0), at most RUNS times
sync_until() {
  for _ in $(seq "$2"); do "$BIN/dala" sync --store "$1" --timeout 60 2>>"$T/sync.err" && return 0; sleep 0.2; done
  return 1
}

# The desk's key, the server made for it (its key alone on init's last line), invites signed by the desk.
ORG=$("$BIN/dala" desk keygen --out org.key "${F[@]}" 2>/dev/null); check "desk keygen" 0 $?
# The storage the run asks for (DALA_TEST_BACKEND, DALA_TEST_BLOBS: tests/support/harness.py), else the embedded one.
ARGS=$(python3 "$ROOT/tests/support/harness.py" init-args) || exit 1
mapfile -t BACKEND <<<"$ARGS"
[ -n "$ARGS" ] || BACKEND=()
echo "server storage: ${BACKEND[*]:-embedded}"
SKEY=$("$BIN/dala-server" init --data srv --organisation "$ORG" "${BACKEND[@]}" 2>/dev/null | tail -1); check "server init" 0 $?
[[ "$SKEY" =~ ^[0-9a-f]{64}$ ]]; check "server init prints its key last" 0 $?
invite() { "$BIN/dala" desk invite --key org.key --server-key "$SKEY" "$@"; }
SPORT=$(free_port)
PPORT=$(free_port)
INVITE=$(invite --url "http://127.0.0.1:$PPORT" --uses 5); check "desk invite" 0 $?

# A 12 MB clip with a canary in its plaintext, and a photo.
CANARY="CANARY-media-e2e-Kulmanova-77ab"
python3 - <<PY
import os
with open("clip.mp4", "wb") as f:
    for i in range(12):
        f.write(b"$CANARY" * 100 + os.urandom(1000000 - 100 * len(b"$CANARY")))
open("photo.jpg", "wb").write(os.urandom(300000))
PY
"$BIN/dala" init --store a "${F[@]}" 2>/dev/null
"$BIN/dala" join --store a "$INVITE" 2>/dev/null
CLIP=$("$BIN/dala" report add --store a --form detention/1 --text "clip" --attach clip.mp4 --attach photo.jpg --seal)
check "report with two attachments" 0 $?
TEXT=$("$BIN/dala" report add --store a --form detention/1 --text "text only" --seal)
if grep -rqa "$CANARY" a; then bad "canary in plaintext on the phone"; else ok; fi
CIPHER=$(du -cb a/media/* | tail -1 | cut -f1)

# Ten cuts at random byte offsets (0.1 to 2 MB apart) during the upload.
CUTS=$(python3 -c 'import random; print(" ".join(str(random.randint(100000, 2000000)) for _ in range(10)))')
echo "cuts after: $CUTS"
start_server "$SPORT" || exit 1
start_proxy "$PPORT" "$SPORT" $CUTS || exit 1
sync_until a 15; check "delivered despite ten cuts" 0 $?
stop "$PROXY_PID"
NCUT=$(grep -c "cut the" "$T/proxy-$PPORT.out")
FORWARDED=$(sed -n 's/.*forwarded \([0-9]*\) bytes.*/\1/p' "$T/proxy-$PPORT.out")
echo "ciphertext $CIPHER bytes, forwarded $FORWARDED bytes, $NCUT cuts"
check "every cut happened" 10 "$NCUT"
# Within one chunk (1 MiB) per cut of the attachments' size, plus 64 KiB for the requests and reports.
python3 -c "import sys; sys.exit(0 if $FORWARDED <= $CIPHER + $NCUT * 1048576 + 65536 else 1)"
check "bytes sent within one chunk per cut" 0 $?
check "both reports stored" 2 "$(stored)"
"$BIN/dala" report show --store a "$CLIP" --json | python3 -c 'import json,sys; assert json.load(sys.stdin)["state"]=="delivered"'
check "the clip's report is delivered" 0 $?

# The desk: both attachments decrypted, hashes verified, identical to the originals; no canary on the server.
"$BIN/dala-server" export --data srv --out export.bin 2>/dev/null; check "export" 0 $?
if grep -rqa "$CANARY" srv export.bin export.bin.media; then bad "canary on the server"; else ok; fi
"$BIN/dala" desk open --key org.key --from export.bin --out desk >/dev/null; check "desk open" 0 $?
python3 - "$CLIP" <<'PY'; check "desk: attachments verified and identical" 0 $?
import hashlib, json, sys
d = json.load(open(f"desk/{sys.argv[1]}-v1.json"))
assert d["verified"], d["problems"]
files = {a["mime"]: a for a in d["attachments"]}
assert all(a["verified"] for a in d["attachments"])
for name, mime in (("clip.mp4", "video/mp4"), ("photo.jpg", "image/jpeg")):
    got = open("desk/" + files[mime]["file"], "rb").read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(open(name, "rb").read()).digest(), name
PY
# dala desk verify reads every attachment through and checks it, writing none: a flipped byte in one of
# the export's media files fails it.
"$BIN/dala" desk verify --key org.key --from export.bin >/dev/null; check "desk verify: attachments checked" 0 $?
cp export.bin flipped.bin && cp -r export.bin.media flipped.bin.media
python3 - <<'PY'
import glob
f = sorted(glob.glob("flipped.bin.media/*"), key=lambda p: -__import__("os").path.getsize(p))[0]
b = bytearray(open(f, "rb").read()); b[len(b) // 2] ^= 1; open(f, "wb").write(b)
PY
"$BIN/dala" desk verify --key org.key --from flipped.bin --json >flipped.out; check "desk verify: a damaged attachment fails" 1 $?
python3 -c "import json; s=json.load(open('flipped.out')); assert s['failed']==1, s"; check "... one report failed" 0 $?

# The server's storage is full: a clear error, the phone keeps everything and delivers later.
stop "$SERVER_PID"
start_server "$SPORT" --max-storage-mib 1 || exit 1
start_proxy "$PPORT" "$SPORT" || exit 1
BIG=$("$BIN/dala" report add --store a --form detention/1 --text "big" --attach clip.mp4 --seal)
"$BIN/dala" sync --store a --timeout 20 2>"$T/err"; check "storage full: work remains" 5 $?
grep -q "storage is full" "$T/err" || cat "$T/err"; grep -q "storage is full" "$T/err"; check "storage full: says so" 0 $?
"$BIN/dala" attachment get --store a "$("$BIN/dala" report show --store a "$BIG" | awk '/video\/mp4/{print $1}')" --out back.mp4
cmp -s back.mp4 clip.mp4; check "storage full: the phone still has the clip" 0 $?
stop "$SERVER_PID"
start_server "$SPORT" || exit 1
"$BIN/dala" sync --store a --timeout 20 2>/dev/null   # still in backoff: nothing is lost by trying
for _ in $(seq 30); do
  "$BIN/dala" sync --store a --timeout 20 2>/dev/null && break
  sleep 1
done
check "storage full, then room: delivered" 3 "$(stored)"
stop "$PROXY_PID"

# HTTPS (pinned self-signed certificate): the upload streams through TLS as well.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout tls.key -out tls.crt >/dev/null 2>&1
TPORT=$(free_port)
stop "$SERVER_PID"
start_server "$TPORT" --tls-cert tls.crt --tls-key tls.key || exit 1
PIN=$("$BIN/dala-server" pin --tls-cert tls.crt); check "dala-server pin" 0 $?
PINNED=$(invite --url "https://127.0.0.1:$TPORT" --tls-pin "$PIN")
"$BIN/dala" init --store b "${F[@]}" 2>/dev/null
"$BIN/dala" join --store b "$PINNED" 2>/dev/null
"$BIN/dala" report add --store b --form detention/1 --text "over tls" --attach clip.mp4 --seal >/dev/null
"$BIN/dala" sync --store b --timeout 30 2>/dev/null; check "upload over https" 0 $?
check "stored over https" 4 "$(stored)"

echo "media e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
