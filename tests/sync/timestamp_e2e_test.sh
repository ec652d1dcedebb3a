#!/usr/bin/env bash
# Trusted time end to end: dala-server gets RFC 3161 tokens for its log heads from a real time-stamping
# authority over HTTP (openssl ts behind tests/support/tsa.py, on 127.0.0.1), the export carries them, the
# desk checks them against the TSA certificate the organisation trusts (docs/protocol.md, "Trusted time").
# Usage: timestamp_e2e_test.sh BIN_DIR SOURCE_TESTS_DIR. Every process is stopped by the trap.
set -uo pipefail
BIN=$(cd "$1" && pwd)
TSA="$2/support/tsa.py"
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
cd "$T"
export DALA_PASSPHRASE="tsa e2e passphrase"
F=(--kdf-ops 1 --kdf-mem-mib 8)
# The store records no Argon2id cost: every command on these stores is given the same one.
export DALA_KDF_OPS=1 DALA_KDF_MEM_MIB=8
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { if [ "$2" = "$3" ]; then ok; else bad "$1 (got '$3', expected '$2')"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_file() { for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }

# The time-stamping authority the organisation trusts, and another one.
python3 "$TSA" init tsa "Trusted Time"; check "TSA made" 0 $?
python3 "$TSA" init other "Other Time"; check "other TSA made" 0 $?
python3 "$TSA" serve tsa tsa.port & PIDS+=($!)
wait_file tsa.port; check "TSA serving" 0 $?
TSA_URL="http://127.0.0.1:$(cat tsa.port)/tsa"

ORG=$("$BIN/dala" desk keygen --out org.key --name KIBHR "${F[@]}" 2>/dev/null)
SKEY=$("$BIN/dala-server" init --data srv --organisation "$ORG" 2>/dev/null | tail -1)
PORT=$(free_port)
INVITE=$("$BIN/dala" desk invite --key org.key --server-key "$SKEY" --url "http://127.0.0.1:$PORT" --uses 2)

"$BIN/dala-server" run --data srv --listen "127.0.0.1:$PORT" --tsa-url "https://127.0.0.1:1/" 2>err.txt
check "an https TSA URL is refused" 2 $?
"$BIN/dala-server" run --data srv --listen "127.0.0.1:$PORT" --quiet --tsa-url "$TSA_URL" --tsa-interval 1 \
  >server.out 2>server.log & SERVER_PID=$!; PIDS+=($SERVER_PID)
for _ in $(seq 100); do grep -q listening server.out 2>/dev/null && break; sleep 0.05; done

"$BIN/dala" init --store a "${F[@]}" 2>/dev/null
"$BIN/dala" join --store a "$INVITE" >/dev/null 2>&1; check "join" 0 $?
"$BIN/dala" report add --store a --form detention/1 --text "stamped" --seal >/dev/null
"$BIN/dala" sync --store a 2>/dev/null; check "sync" 0 $?

# Within a few intervals the server holds a token over its newest head.
stamped=1
for _ in $(seq 40); do
  "$BIN/dala-server" export --data srv --out export.bin 2>/dev/null
  if "$BIN/dala" desk verify --key org.key --from export.bin --tsa-cert tsa/ca.crt --json >verify.out 2>/dev/null; then
    stamped=0; break
  fi
  sleep 0.25
done
check "the server stamped its head through the TSA (desk verify --tsa-cert: clean)" 0 $stamped
python3 -c "import json; s=json.load(open('verify.out')); assert s['timestamps']>=1 and s['timestamp_problems']==0, s"
check "... with a verified time-stamp" 0 $?
"$BIN/dala" desk open --key org.key --from export.bin --out desk --tsa-cert tsa/ca.crt >/dev/null; check "desk open" 0 $?
python3 -c "
import glob, json; r=json.load(open(glob.glob('desk/*-v1.json')[0])); t=r['timestamp']
assert t and t['no_later_than_ms'] > 0 and 'Trusted Time TSA' in t['tsa'], r"
check "the report was received no later than the TSA's time" 0 $?

# Another TSA's certificate: the tokens are not trusted (exit 1).
"$BIN/dala" desk verify --key org.key --from export.bin --tsa-cert other/ca.crt --json >other.out 2>/dev/null
check "desk verify: a TSA the organisation does not trust" 1 $?
python3 -c "import json; s=json.load(open('other.out')); assert s['timestamp_problems']>=1 and not s['clean'], s"
check "... is a time-stamp problem" 0 $?

# dala-server timestamp: nothing new once the newest head is stamped; a TSA that is down changes nothing
# else, and the server keeps serving.
kill -TERM $SERVER_PID; wait $SERVER_PID 2>/dev/null
check "dala-server timestamp: nothing new" 0 "$("$BIN/dala-server" timestamp --data srv --tsa-url "$TSA_URL" 2>/dev/null)"
"$BIN/dala-server" run --data srv --listen "127.0.0.1:$PORT" --quiet --tsa-url "http://127.0.0.1:$(free_port)/" \
  --tsa-interval 1 >server2.out 2>server2.log & SERVER_PID=$!; PIDS+=($SERVER_PID)
for _ in $(seq 100); do grep -q listening server2.out 2>/dev/null && break; sleep 0.05; done
"$BIN/dala" report add --store a --form detention/1 --text "while the TSA is down" --seal >/dev/null
"$BIN/dala" sync --store a 2>/dev/null; check "sync while the TSA is down" 0 $?
for _ in $(seq 40); do grep -q timestamp_failed server2.log && break; sleep 0.1; done
grep -q timestamp_failed server2.log; check "a failed stamp is logged" 0 $?
kill -TERM $SERVER_PID; wait $SERVER_PID 2>/dev/null
# An export taken before the stamp: the next incremental one (--since its size) must carry the stamp that
# came late over the head it ended at, or the desk never gets it.
"$BIN/dala-server" export --data srv --out before.bin 2>before.err
SINCE=$(sed -n 's/.*--since \([0-9]*\).*/\1/p' before.err)
SIZE=$("$BIN/dala-server" timestamp --data srv --tsa-url "$TSA_URL" 2>/dev/null); check "dala-server timestamp" 0 $?
[ "$SIZE" -gt 0 ] 2>/dev/null; check "... stamps the newer head" 0 $?
"$BIN/dala-server" export --data srv --out export2.bin 2>/dev/null
"$BIN/dala" desk verify --key org.key --from export2.bin --tsa-cert tsa/ca.crt --since export.bin --json >v2.out
check "desk verify: both stamps, and the earlier export held" 0 $?
python3 -c "import json; s=json.load(open('v2.out')); assert s['timestamps']>=2, s"; check "... two stamps" 0 $?

"$BIN/dala-server" export --data srv --out late.bin --since "$SINCE" 2>/dev/null
check "an incremental export after a late stamp" 0 $?
check "... starts at the head the late stamp covers" "$SIZE" "$SINCE"
check "... and carries that stamp" 1 "$(python3 -c "
import sys; sys.path.insert(0, '$(dirname "$TSA")')
from harness import pb_fields
d, old = open('late.bin', 'rb').read(), open('export.bin', 'rb').read()
print(sum(1 for n, a, b in pb_fields(d) if n == 7 and d[a:b] not in old))")"

# An evidence package carries each version's stamp; dala verify checks it with the TSA's certificate and the
# organisation's identity alone, and says when the report was received at the latest.
"$BIN/dala" desk import --key org.key --data deskstore --from export2.bin >/dev/null; check "desk import" 0 $?
"$BIN/dala" desk export --key org.key --data deskstore --format evidence --out case.zip >/dev/null
check "evidence package" 0 $?
"$BIN/dala" verify case.zip --organisation "$ORG" --tsa-cert tsa/ca.crt --json >pkg.out
check "dala verify --tsa-cert" 0 $?
python3 -c "
import json; v=json.load(open('pkg.out')); assert v['ok'] and v['timestamps'] == 2, v
assert any('received no later than' in c and 'Trusted Time TSA' in c for c in v['checked']), v['checked']"
check "... dates both reports by the trusted authority's stamps" 0 $?
"$BIN/dala" verify case.zip --organisation "$ORG" --tsa-cert other/ca.crt >/dev/null
check "dala verify: a TSA the verifier does not trust" 1 $?
"$BIN/dala" verify case.zip --organisation "$ORG" --json >nopem.out
check "dala verify without --tsa-cert" 0 $?
python3 -c "import json; v=json.load(open('nopem.out')); assert v['timestamps'] == 0 and v['timestamps_unchecked'] == 2, v"
check "... claims no time" 0 $?

echo "timestamp e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
