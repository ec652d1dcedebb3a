#!/usr/bin/env bash
# Delivery end to end over loopback with real processes: dala (phones), dala-server, the desk.
# Usage: e2e_test.sh BIN_DIR. Every server listens on 127.0.0.1 and is stopped by the trap.
set -uo pipefail
BIN=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
cd "$T"
export DALA_PASSPHRASE="e2e passphrase"
F=(--kdf-ops 1 --kdf-mem-mib 8)
# The store records no Argon2id cost: every command on these stores is given the same one.
export DALA_KDF_OPS=1 DALA_KDF_MEM_MIB=8
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { if [ "$2" = "$3" ]; then ok; else bad "$1 (got '$3', expected '$2')"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_server() {  # start_server DATA PORT [extra...]; waits until it listens
  "$BIN/dala-server" run --data "$1" --listen "127.0.0.1:$2" "${@:3}" >"$T/server-$2.out" 2>>"$T/server-$2.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 100); do grep -q listening "$T/server-$2.out" 2>/dev/null && return 0; sleep 0.05; done
  echo "server did not start"; cat "$T/server-$2.log"; return 1
}
stored() { "$BIN/dala-server" devices --data "$1" --json | python3 -c 'import json,sys; print(sum(d["reports"] for d in json.load(sys.stdin)))'; }
seal_many() {  # seal_many STORE N TEXT
  for i in $(seq "$2"); do "$BIN/dala" report add --store "$1" --form detention/1 --text "$3 $i" --seal >/dev/null || return 1; done
}

# The desk makes the organisation's key, the server is made for it, and the desk signs invites to it
# (naming the server's key, which init prints alone on its last line).
ORG=$("$BIN/dala" desk keygen --out org.key --name KIBHR "${F[@]}" 2>/dev/null); check "desk keygen" 0 $?
# The storage the run asks for (DALA_TEST_BACKEND, DALA_TEST_BLOBS: tests/support/harness.py), else the embedded one.
ARGS=$(python3 "$ROOT/tests/support/harness.py" init-args) || exit 1
mapfile -t BACKEND <<<"$ARGS"
[ -n "$ARGS" ] || BACKEND=()
echo "server storage: ${BACKEND[*]:-embedded}"
SKEY=$("$BIN/dala-server" init --data srv --organisation "$ORG" "${BACKEND[@]}" 2>/dev/null | tail -1); check "server init" 0 $?
[[ "$SKEY" =~ ^[0-9a-f]{64}$ ]]; check "server init prints its key last" 0 $?
invite() { "$BIN/dala" desk invite --key org.key --server-key "$SKEY" "$@"; }
PORT=$(free_port)
INVITE=$(invite --url "http://127.0.0.1:$PORT" --uses 3); check "desk invite" 0 $?

# Phones join while the server is down; reports queue; sync says "later" (5).
CANARY="CANARY-e2e-Zhumaniyazova-5d1e"
for p in a b; do
  "$BIN/dala" init --store $p "${F[@]}" 2>/dev/null
  "$BIN/dala" join --store $p "$INVITE" 2>/dev/null; check "join $p offline" 0 $?
done
seal_many a 20 "$CANARY a"
seal_many b 5 "$CANARY b"
"$BIN/dala" sync --store a --timeout 5 2>/dev/null; check "sync while server down" 5 $?

# Connectivity returns.
start_server srv "$PORT" || exit 1
"$BIN/dala" sync --store a 2>/dev/null; check "sync a" 0 $?
"$BIN/dala" sync --store b 2>/dev/null; check "sync b" 0 $?
check "stored once each" 25 "$(stored srv)"
"$BIN/dala" receipts --store a --json | python3 -c '
import json,sys; r=json.load(sys.stdin); assert len(r)==20 and all(x["verified"] for x in r), r'
check "a holds 20 verified receipts" 0 $?
"$BIN/dala" report list --store a --json | python3 -c '
import json,sys; assert all(r["state"]=="delivered" for r in json.load(sys.stdin))'
check "a: every report delivered" 0 $?

# The server killed (SIGKILL) in the middle of pushes, then restarted: exactly once, all receipts verified.
seal_many a 300 "burst"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
DALA_TEST_FAILPOINT_DELAY_MS=4 start_server srv "$PORT" --quiet || exit 1   # ~0.25 s per 64-report push
"$BIN/dala" sync --store a --timeout 20 2>/dev/null &
SYNC=$!
for _ in $(seq 400); do [ "$(stored srv)" -gt 25 ] && break; sleep 0.01; done  # a first batch is in
kill -9 "$SERVER_PID"
wait "$SYNC"
AT_KILL=$(stored srv)
if [ "$AT_KILL" -gt 25 ] && [ "$AT_KILL" -lt 325 ]; then ok; else bad "the kill did not land mid-push (stored $AT_KILL)"; fi
start_server srv "$PORT" || exit 1
for _ in 1 2 3 4 5 6 7 8; do  # items cut off mid-push wait out a short backoff
  "$BIN/dala" sync --store a --timeout 10 2>/dev/null && break
  sleep 3
done
check "after kill -9: all of a delivered" 0 "$("$BIN/dala" sync --store a 2>/dev/null; echo $?)"
check "after kill -9: stored exactly once" 325 "$(stored srv)"
"$BIN/dala" receipts --store a --json | python3 -c '
import json,sys; r=json.load(sys.stdin); assert len(r)==320 and all(x["verified"] for x in r), len(r)
seqs=[x["sequence"] for x in r]; assert len(set(seqs))==len(seqs), "duplicate sequence numbers"'
check "after kill -9: 320 distinct verified receipts" 0 $?

# A revoked device is refused; its reports stay queued and say why.
BKEY=$("$BIN/dala-server" devices --data srv --json | python3 -c 'import json,sys; print([d["device"] for d in json.load(sys.stdin) if d["reports"]==5][0])')
"$BIN/dala-server" revoke --data srv "$BKEY" 2>/dev/null; check "revoke" 0 $?
seal_many b 1 "after revocation"
"$BIN/dala" sync --store b 2>"$T/err"; check "revoked: work remains" 5 $?
grep -q "revoked" "$T/err"; check "revoked: says why" 0 $?

# Invites: used up, tampered, expired.
ONE=$(invite --url "http://127.0.0.1:$PORT" --uses 1)
for p in c d; do "$BIN/dala" init --store $p "${F[@]}" 2>/dev/null; "$BIN/dala" join --store $p "$ONE" 2>/dev/null; seal_many $p 1 "x"; done
"$BIN/dala" sync --store c 2>/dev/null; check "first use of a one-use invite" 0 $?
"$BIN/dala" sync --store d 2>"$T/err"; check "used-up invite" 5 $?
grep -q "used up" "$T/err"; check "used up: says why" 0 $?
TAMPERED="${ONE:0:40}$( [ "${ONE:40:1}" = A ] && echo B || echo A )${ONE:41}"
"$BIN/dala" join --store c "$TAMPERED" 2>"$T/err"; check "tampered invite refused" 1 $?
grep -q "altered" "$T/err"; check "tampered: says so" 0 $?
SHORT=$(invite --url "http://127.0.0.1:$PORT" --expires 1s)
sleep 1.2
"$BIN/dala" join --store c "$SHORT" 2>"$T/err"; check "expired invite refused" 1 $?
grep -q "expired" "$T/err"; check "expired: says so" 0 $?

# The canary appears nowhere under the server's data directory (nor in the export).
"$BIN/dala-server" export --data srv --out export.bin 2>/dev/null; check "export" 0 $?
if grep -rqa "$CANARY" srv export.bin; then bad "canary found on the server"; else ok; fi

# The desk opens the export and verifies every report.
"$BIN/dala" desk open --key org.key --from export.bin --out desk >/dev/null; check "desk open" 0 $?
python3 -c "
import json; s=json.load(open('desk/summary.json')); assert s['reports']==326 and s['verified']==326, (s['reports'], s['verified'])
import glob; r=json.load(open(glob.glob('desk/*-v1.json')[0])); assert r['verified'] and r['receipt']['verified']"
check "desk: 326 verified" 0 $?
# dala desk verify: the same checks, nothing decrypted written (the canary stays off the disk).
mkdir verify-cwd && (cd verify-cwd && "$BIN/dala" desk verify --key ../org.key --from ../export.bin \
  --summary ../verify-summary.json --json >../verify.out); check "desk verify" 0 $?
python3 -c "
import json; s=json.load(open('verify.out')); assert s['verified']==326 and s['clean'], s
t=json.load(open('verify-summary.json')); assert t['verified']==326 and all(i['file'] is None for i in t['items'])"
check "desk verify: 326 verified, no report files" 0 $?
if [ -n "$(ls -A verify-cwd)" ] || grep -qa "$CANARY" verify-summary.json verify.out; then bad "desk verify wrote contents"; else ok; fi

# The phones' receipts, cross-checked at the desk: all held; then a report delivered after the export is
# one a phone holds a receipt for and the export lacks (exit 1, "missing": 1).
"$BIN/dala" receipts --store a --json >receipts-a.json; check "receipts --json" 0 $?
python3 -c "
import json; r=json.load(open('receipts-a.json')); assert r and all(len(x['receipt']) > 200 for x in r), r[:1]"
check "receipts --json carries each signed receipt" 0 $?
"$BIN/dala" desk open --key org.key --from export.bin --out desk-r --receipts receipts-a.json >/dev/null
check "desk open --receipts: all held" 0 $?
seal_many a 1 "after the export"
"$BIN/dala" sync --store a 2>/dev/null; check "sync after the export" 0 $?
"$BIN/dala" receipts --store a --json >receipts-a2.json
"$BIN/dala" desk open --key org.key --from export.bin --out desk-r2 --receipts receipts-a2.json --json >desk-r2.out
check "desk open --receipts: a withheld report fails" 1 $?
"$BIN/dala" desk verify --key org.key --from export.bin --receipts receipts-a2.json >/dev/null
check "desk verify --receipts: a withheld report fails" 1 $?
# dala log verify: the log and the receipts, with the organisation's public identity alone (no key file).
env -u DALA_PASSPHRASE "$BIN/dala" log verify --organisation "$ORG" --from export.bin --receipts receipts-a.json >lv.out
check "log verify: the export's log and the phone's receipts" 0 $?
grep -q "^verified$" lv.out; check "... says verified" 0 $?
"$BIN/dala" log verify --organisation "$ORG" --from export.bin --receipts receipts-a2.json --json >lv2.out
check "log verify: a receipt beyond the export fails" 1 $?
python3 -c "import json; v=json.load(open('lv2.out')); assert not v['ok'] and v['receipts_in_log']==v['receipts']-1 and len(v['problems'])==1, v"
check "... naming it" 0 $?
"$BIN/dala-server" export --data srv --out export2.bin 2>/dev/null
"$BIN/dala" desk verify --key org.key --from export2.bin --since export.bin >/dev/null
check "desk verify --since: a later export extends the earlier one" 0 $?
"$BIN/dala" desk verify --key org.key --from export.bin --since export2.bin --json >since.out
check "desk verify --since: an export shorter than an earlier one fails" 1 $?
python3 -c "import json; s=json.load(open('since.out')); assert s['log_problems']==1, s"; check "... a log problem" 0 $?
python3 -c "
import json; s=json.load(open('desk-r2.out')); assert s['missing']==1 and not s['clean'], s"
check "... and says one is missing" 0 $?

# Server abuse: wrong content type, malformed body, oversized body, slow headers, many idle connections;
# meanwhile an enrolled phone is still served.
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null; check "SIGTERM: clean exit" 0 $?
start_server srv "$PORT" --max-body-mib 1 --header-timeout 1 --max-connections 300 --max-batch 2 || exit 1
python3 - "$PORT" <<'PY'; check "server under abuse" 0 $?
import socket, sys, time
port = int(sys.argv[1])
def req(body, ctype="application/x-protobuf", path="/v2/push"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
    s.sendall(body)   # the server may answer before the body is sent; it must still let us read the answer
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk: break
        data += chunk
    s.close()
    return int(data.split(b" ")[1])
assert req(b"x", "text/plain") == 415
assert req(b"\x0a\xff\xff\xff\x0fgarbage") == 400
assert req(b"A" * (2 << 20)) == 413
idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
slow = socket.create_connection(("127.0.0.1", port), timeout=5)
slow.sendall(b"POST /v2/push HTTP/1.1\r\nHost: x\r\n")   # headers never finished
t0 = time.time()
assert slow.recv(1) == b"", "slow client not dropped"
assert time.time() - t0 < 5, "slow client kept too long"
assert req(b"x", "text/plain") == 415   # others are still served
for s in idle: s.close()
PY
seal_many c 5 "while abused"
"$BIN/dala" sync --store c 2>/dev/null; check "phone served after abuse, in smaller pushes (--max-batch 2)" 0 $?

# HTTPS with a self-signed certificate pinned by the invite; without the pin the phone refuses it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout tls.key -out tls.crt >/dev/null 2>&1; check "openssl made a certificate" 0 $?
TPORT=$(free_port)
start_server srv "$TPORT" --tls-cert tls.crt --tls-key tls.key || exit 1
PIN=$("$BIN/dala-server" pin --tls-cert tls.crt); check "dala-server pin" 0 $?
[[ "$PIN" =~ ^[0-9a-f]{64}$ ]]; check "the pin is 64 hex alone" 0 $?
# (the unpinned one first: a phone refuses an invite older than the one it joined last)
UNPINNED=$(invite --url "https://127.0.0.1:$TPORT")
PINNED=$(invite --url "https://127.0.0.1:$TPORT" --tls-pin "$PIN")
"$BIN/dala" init --store e "${F[@]}" 2>/dev/null; "$BIN/dala" join --store e "$UNPINNED" 2>/dev/null; seal_many e 1 "tls"
"$BIN/dala" sync --store e --timeout 5 2>"$T/err"; check "self-signed without pin refused" 5 $?
grep -qi "tls" "$T/err"; check "TLS failure says so" 0 $?
"$BIN/dala" join --store e "$PINNED" 2>/dev/null
"$BIN/dala" sync --store e 2>/dev/null; check "https with pinned certificate" 0 $?
"$BIN/dala" receipts --store e --json | python3 -c '
import json,sys; r=json.load(sys.stdin); assert len(r)==1 and r[0]["verified"], r'
check "https: the report sealed before the pinned invite is delivered, receipt verified" 0 $?

echo "e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
