#!/usr/bin/env bash
# The dala CLI contract: output and exit codes that docs and later tests rely on.
set -uo pipefail
DALA=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
S=$T/store
FAST=(--kdf-ops 1 --kdf-mem-mib 8)
# The store records no Argon2id cost: every command on these stores is given the same one.
export DALA_KDF_OPS=1 DALA_KDF_MEM_MIB=8
export DALA_PASSPHRASE="cli test passphrase"
unset DALA_NEW_PASSPHRASE
pass=0 fail=0

check() {  # check NAME EXPECTED_EXIT ACTUAL_EXIT
  if [ "$2" = "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1 (exit $3, expected $2)"; fi
}
expect() {  # expect NAME CONDITION...
  if "${@:2}"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi
}

$DALA init --store "$S" "${FAST[@]}" 2>/dev/null; check "init" 0 $?
$DALA init --store "$S" "${FAST[@]}" 2>"$T/err"; check "init twice" 1 $?
expect "init twice says why" grep -q "already holds a Dala store" "$T/err"

id=$($DALA report add --store "$S" --form detention/1 --field place=Oral --field hours:int=3 \
      --field "detained:person=Roza Kariyeva|detained" --field "detained:person=Marua Eskendirova|detained" \
      --field when:time=2025-08-17T09:30Z --field fine:dec=0.00 --field released:bool=true \
      --field where:geo=51.23,51.37,20 --text "Detained during a run; no grounds given." --seal)
check "report add --seal" 0 $?
expect "report add prints the id alone" bash -c "[[ '$id' =~ ^[0-9a-f]{32}$ ]]"

draft=$($DALA report add --store "$S" --form detention/1 --text-file /dev/null); check "add draft" 0 $?
$DALA report list --store "$S" --json >"$T/list.json"; check "list --json" 0 $?
python3 - "$T/list.json" "$id" "$draft" <<'PY'; check "list JSON contract" 0 $?
import json, sys
items = json.load(open(sys.argv[1]))
by_id = {i["id"]: i for i in items}
assert set(by_id) == {sys.argv[2], sys.argv[3]}, items
for i in items:
    assert {"id", "form", "state", "created"} <= set(i), i
    assert i["form"] == "detention/1"
assert by_id[sys.argv[2]]["state"] == "sealed", by_id
assert by_id[sys.argv[3]]["state"] == "draft", by_id
PY

# A page at a time: --limit 1 gives the newest (the draft) and a cursor; --after it gives the other, no cursor.
$DALA report list --store "$S" --json --limit 1 >"$T/p1.json"; check "list --limit" 0 $?
after=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); assert len(p["reports"])==1 and p["reports"][0]["id"]==sys.argv[2], p; print(p["next"])' "$T/p1.json" "$draft")
check "first page: the newest, and a cursor" 0 $?
$DALA report list --store "$S" --json --limit 1 --after "$after" >"$T/p2.json"; check "list --after" 0 $?
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); assert [r["id"] for r in p["reports"]]==[sys.argv[2]] and p["next"] is None, p' "$T/p2.json" "$id"
check "second page: the other, and no cursor" 0 $?
$DALA report list --store "$S" --limit 1 2>"$T/more" >/dev/null; check "list --limit (text)" 0 $?
expect "the next page's cursor on stderr" grep -q "^more: --after $after\$" "$T/more"
n=$($DALA report list --store "$S" --json --state sealed | python3 -c 'import json,sys; l=json.load(sys.stdin); print(len(l), l[0]["id"])')
expect "--state sealed" test "$n" = "1 $id"
n=$($DALA report list --store "$S" --json --form incident | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
expect "--form another name: none" test "$n" = "0"
$DALA report list --store "$S" --state lost >/dev/null 2>&1; check "--state unknown" 2 $?
$DALA report list --store "$S" --limit 0 >/dev/null 2>&1; check "--limit 0" 2 $?
$DALA report list --store "$S" --after nonsense >/dev/null 2>&1; check "--after not a cursor" 2 $?

$DALA report show --store "$S" "$id" --json >"$T/show.json"; check "show --json" 0 $?
python3 - "$T/show.json" <<'PY'; check "show JSON content" 0 $?
import json, sys
r = json.load(open(sys.argv[1]))
f = r["fields"]
assert r["state"] == "sealed" and r["version"] == 1
assert f["place"] == {"type": "text", "value": "Oral"}
assert f["hours"] == {"type": "integer", "value": 3}
assert f["detained"]["value"][1] == {"name": "Marua Eskendirova", "role": "detained"}
assert f["when"]["value"] == 1755423000000
assert f["released"]["value"] is True and f["fine"]["value"] == "0.00"
assert r["narrative"] == "Detained during a run; no grounds given."
assert len(r["content_hash"]) == 64 and len(r["device_key"]) == 64
PY
$DALA report show --store "$S" "$id" | grep -q "Roza Kariyeva — detained"; check "show (text)" 0 $?
$DALA report retry --store "$S" "$id" 2>"$T/err"; check "retry a report that was not rejected" 4 $?
expect "retry says why" grep -q "no version of that report was rejected" "$T/err"

# Edit a sealed report: a new version linked to the first.
$DALA report edit --store "$S" "$id" --field hours:int=4 --seal >/dev/null 2>&1; check "edit sealed" 0 $?
$DALA report show --store "$S" "$id" --json | python3 -c '
import json,sys; r=json.load(sys.stdin); assert r["version"]==2 and r["fields"]["hours"]["value"]==4 and r["previous_hash"]'
check "edit made version 2 with previous hash" 0 $?
$DALA report show --store "$S" "$id" --version 1 --json | python3 -c '
import json,sys; r=json.load(sys.stdin); assert r["fields"]["hours"]["value"]==3'
check "version 1 unchanged" 0 $?
$DALA report seal --store "$S" "$draft" 2>/dev/null; check "seal draft" 0 $?

# Exit codes.
DALA_PASSPHRASE=wrong $DALA report list --store "$S" 2>"$T/err"; check "wrong passphrase" 3 $?
expect "wrong passphrase message" grep -q "wrong passphrase" "$T/err"
$DALA report list --store "$T/nothing" 2>/dev/null; check "no such store" 4 $?
$DALA report show --store "$S" 0123456789abcdef0123456789abcdef 2>/dev/null; check "no such report" 4 $?
$DALA report show --store "$S" not-an-id 2>/dev/null; check "bad id" 2 $?
$DALA report add --store "$S" 2>/dev/null; check "missing --form" 2 $?
$DALA frobnicate 2>/dev/null; check "unknown command" 2 $?
$DALA report add --store "$S" --form detention/1 --bogus 2>/dev/null; check "unknown option" 2 $?
$DALA report add --store "$S" --form "bad form" 2>/dev/null; check "bad form" 2 $?
$DALA report add --store "$S" --form detention/1 --field "k=$(printf 'bad \xff utf8')" 2>"$T/err"; check "invalid UTF-8" 2 $?
expect "invalid UTF-8 message" grep -q "UTF-8" "$T/err"
head -c 70000 /dev/zero | tr '\0' 'x' >"$T/big"
$DALA report add --store "$S" --form detention/1 --field "k=$(cat "$T/big")" 2>"$T/err"; check "oversized field" 2 $?
expect "oversized message names the limit" grep -q "65536 bytes" "$T/err"
expect "oversized message has no content" bash -c "! grep -q xxxx '$T/err'"
count=$($DALA report list --store "$S" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
expect "failed adds left nothing behind" [ "$count" = 2 ]

# Passphrase prompt refused without a terminal.
(unset DALA_PASSPHRASE; setsid -w $DALA report list --store "$S" </dev/null >/dev/null 2>"$T/err"); check "no terminal" 2 $?
expect "no terminal says what to do" grep -q "DALA_PASSPHRASE" "$T/err"
echo -n "cli test passphrase" >"$T/pf"
(unset DALA_PASSPHRASE; $DALA report list --store "$S" --passphrase-file "$T/pf" >/dev/null); check "--passphrase-file" 0 $?

# Passphrase change.
DALA_NEW_PASSPHRASE="new one" $DALA passphrase change --store "$S" "${FAST[@]}" 2>/dev/null; check "passphrase change" 0 $?
$DALA report list --store "$S" >/dev/null 2>&1; check "old passphrase refused" 3 $?
DALA_PASSPHRASE="new one" $DALA report list --store "$S" >/dev/null; check "new passphrase works" 0 $?
cp "$S/dala.key" "$T/old.key"
DALA_PASSPHRASE="new one" DALA_NEW_PASSPHRASE="re-keyed" $DALA passphrase change --rekey --store "$S" 2>"$T/err"; check "passphrase change --rekey" 0 $?
expect "--rekey says what it did" grep -q "re-keyed" "$T/err"
DALA_PASSPHRASE="re-keyed" $DALA report list --store "$S" >/dev/null; check "the re-keyed store opens with the new passphrase" 0 $?
cp "$S/dala.key" "$T/new.key"; cp "$T/old.key" "$S/dala.key"
DALA_PASSPHRASE="new one" $DALA report list --store "$S" >/dev/null 2>"$T/err"; check "the old key file with the old passphrase opens nothing" 1 $?
expect "  (the database does not match that key)" grep -q "does not match its key" "$T/err"
cp "$T/new.key" "$S/dala.key"
DALA_PASSPHRASE="re-keyed" DALA_NEW_PASSPHRASE="new one" $DALA passphrase change --store "$S" 2>/dev/null; check "and back, instantly" 0 $?

# Duress (issue 14, item 4): on a store of its own.
D=$T/duress
$DALA init --store "$D" 2>/dev/null
$DALA report add --store "$D" --form detention/1 --text "REAL-CLI-5e1f" --seal >/dev/null; check "duress: a report" 0 $?
DALA_DURESS_PASSPHRASE="cli test passphrase" $DALA duress set --store "$D" 2>"$T/err"; check "duress: the store's own passphrase refused" 2 $?
DALA_DURESS_PASSPHRASE="let me go" $DALA duress set --store "$D" 2>/dev/null; check "duress set" 0 $?
DALA_PASSPHRASE="let me go" $DALA report list --store "$D" >"$T/dl" 2>"$T/derr"; check "duress open answers as any open" 0 $?
expect "duress open shows an empty store" bash -c "! grep -q . '$T/dl'"
$DALA report list --store "$D" >/dev/null 2>&1; check "after duress the real passphrase is wrong" 3 $?

# Conventions (CLI11): versions, help per command, misplaced options refused and named.
$DALA --version >"$T/v"; check "--version" 0 $?
expect "--version names Dala, SQLCipher and libsodium" bash -c "grep -q '^dala [0-9]' '$T/v' && grep -q '^SQLCipher [0-9]' '$T/v' && grep -q '^libsodium [0-9]' '$T/v'"
$DALA -h >/dev/null; check "-h" 0 $?
$DALA report add --help >"$T/h1"; check "report add --help" 0 $?
$DALA sync --help >"$T/h2"; check "sync --help" 0 $?
expect "each command has its own help" bash -c "grep -q -- --form '$T/h1' && ! grep -q -- --form '$T/h2' && grep -q -- --timeout '$T/h2'"
DALA_PASSPHRASE="new one" $DALA report list --store "$S" --yes --attach x >/dev/null 2>"$T/err"; check "misplaced options" 2 $?
expect "misplaced options are named" bash -c "grep -q -- --yes '$T/err' && grep -q -- --attach '$T/err'"
$DALA report list --store "$S" --store2 x >/dev/null 2>&1; check "unknown option" 2 $?

# --json is valid JSON whatever the content: quotes, backslashes, control characters, emoji, invalid UTF-8.
export DALA_PASSPHRASE="new one"
hostile=$(printf 'quote " backslash \\ tab\t ctrl \001 emoji \360\237\223\267 end')
hid=$($DALA report add --store "$S" --form detention/1 --text "$hostile" --field "k=$hostile"); check "hostile report" 0 $?
$DALA report show --store "$S" "$hid" --json | python3 -c '
import json,sys; r=json.load(sys.stdin); n=r["narrative"]; assert "\U0001F4F7" in n and "\"" in n and "\x01" in n and "\\" in n, n'
check "show --json with hostile content" 0 $?
$DALA outbox --store "$S" --destination "$hostile" --json | python3 -c '
import json,sys; d=json.load(sys.stdin); assert "\U0001F4F7" in d["destination"] and "\x01" in d["destination"]'
check "outbox --json with a hostile destination" 0 $?
$DALA outbox --store "$S" --destination "$(printf 'bad \377 utf8')" --json >/dev/null 2>&1
check "invalid UTF-8 in an argument is refused, not echoed" 2 $?
$DALA receipts --store "$S" --json | python3 -c 'import json,sys; assert json.load(sys.stdin) == []'; check "receipts --json" 0 $?

# With a real dala-server: the desk's key (named with characters JSON and shells treat specially, but
# nothing that moves text on a screen: a name is read beside the fingerprint), the server made for it, URLs
# checked at invite (by the desk), join/sync --json, a rejected report fails sync (exit 6), and an empty
# export is said to be empty.
SRV=$(dirname "$DALA")/dala-server
orgname=$(printf 'quote " backslash \\ emoji \360\237\223\267 end')
org=$($DALA desk keygen --out "$T/org.key" --name "$orgname" "${FAST[@]}" 2>"$T/err"); check "desk keygen" 0 $?
expect "desk keygen prints the organisation identity alone" bash -c "[[ '$org' =~ ^DALA-ORG1-[A-Za-z0-9_-]+$ ]]"
expect "desk keygen tells where the key went and its fingerprint" grep -q "fingerprint" "$T/err"
$DALA desk keygen --out "$T/org.key" "${FAST[@]}" >/dev/null 2>&1; check "desk keygen over an existing key file" 1 $?
$DALA desk keygen --out "$T/bad-name.key" --name "$(printf 'bad \377')" "${FAST[@]}" >/dev/null 2>&1
check "desk keygen refuses a name that is not UTF-8" 2 $?
expect "... and writes no key file" test ! -e "$T/bad-name.key"
# A name that could paint another fingerprint over its own: escapes, line breaks, tabs, a right-to-left override.
for bad in "$(printf 'KIBHR\033[8m')" "$(printf 'KIBHR\nfingerprint 00000')" "$(printf 'a\tb')" "$(printf 'KIBHR \342\200\256')"; do
  $DALA desk keygen --out "$T/bad-name.key" --name "$bad" "${FAST[@]}" >/dev/null 2>"$T/err"
  check "desk keygen refuses a name that moves text on a screen" 2 $?
done
expect "... and says why" grep -q "text-direction" "$T/err"
skey=$($SRV init --data "$T/srv" --organisation "$org" 2>/dev/null | tail -1); check "server init" 0 $?
expect "server init prints its key alone on the last line" bash -c "[[ '$skey' =~ ^[0-9a-f]{64}$ ]]"
$SRV init --data "$T/srv2" --organisation "not-an-identity" >/dev/null 2>&1; check "server init for a bad identity" 2 $?
invite() { $DALA desk invite --key "$T/org.key" --server-key "$skey" "$@"; }
for bad in http://host:notaport http://host:0 http://host:99999 ftp://host host:8443 'http://user@host:1'; do
  invite --url "$bad" >/dev/null 2>"$T/err"; check "invite --url $bad refused" 2 $?
done
expect "a bad URL is explained" grep -q "not a server address" "$T/err"
invite --url http://127.0.0.1:1 --url ftp://host >/dev/null 2>&1; check "invite: every --url is checked" 2 $?
$DALA desk invite --key "$T/org.key" --server-key "${skey:0:63}" --url http://127.0.0.1:1 >/dev/null 2>"$T/err"
check "invite --server-key that is not 64 hex refused" 2 $?
expect "a bad server key is explained" grep -q -- "--server-key" "$T/err"
invite --url http://127.0.0.1:1 --expires 7 >/dev/null 2>&1; check "invite --expires without a unit refused" 2 $?
DALA_PASSPHRASE=wrong $DALA desk invite --key "$T/org.key" --server-key "$skey" --url http://127.0.0.1:1 >/dev/null 2>&1
check "invite with a wrong desk passphrase" 3 $?
$SRV export --data "$T/srv" --out "$T/empty.bin" 2>"$T/err"; check "empty export" 4 $?
expect "an empty export says so" grep -qi "nothing to export" "$T/err"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
inv=$(invite --url "http://127.0.0.1:$port" --uses 2); check "invite" 0 $?
expect "invite prints the invite alone" bash -c "[[ '$inv' =~ ^DALA2-[A-Za-z0-9_-]+$ ]]"
$SRV run --data "$T/srv" --listen "127.0.0.1:$port" --quiet --max-envelope-mib 1 >"$T/srv.out" 2>&1 &
srv_pid=$!
for _ in $(seq 100); do grep -q listening "$T/srv.out" 2>/dev/null && break; sleep 0.05; done
P=$T/phone
$DALA init --store "$P" "${FAST[@]}" 2>/dev/null
$DALA join --store "$P" >/dev/null 2>&1; check "join without an invite" 2 $?
$DALA join --store "$P" "$inv" --invite-file /dev/null >/dev/null 2>&1; check "join: an invite and --invite-file" 2 $?
printf '%s\n' "$inv" >"$T/invite.txt"
$DALA join --store "$P" --invite-file "$T/invite.txt" >/dev/null 2>&1; check "join --invite-file" 0 $?
printf '%s\n' "$inv" | $DALA join --store "$P" --invite-file - --json >"$T/join.json"; check "join --invite-file - --json" 0 $?
python3 -c '
import json,sys; j=json.load(open(sys.argv[1])); assert j["organisation"].endswith("end") and "\U0001F4F7" in j["organisation"], j' "$T/join.json"
check "join JSON names the organisation, whatever its characters" 0 $?
head -c 1048576 /dev/zero | tr '\0' 'n' >"$T/long.txt"
$DALA report add --store "$P" --form detention/1 --text-file "$T/long.txt" --seal >/dev/null; check "1 MiB report" 0 $?
$DALA sync --store "$P" --json >"$T/sync.json" 2>/dev/null; check "sync with a rejected report" 6 $?
python3 -c '
import json,sys; r=json.load(open(sys.argv[1])); assert r["rejected"] == 1 and r["remaining"] == 0 and len(r["servers"]) == 1, r' "$T/sync.json"
check "sync --json says what was rejected" 0 $?
$DALA report add --store "$P" --form detention/1 --text small --seal >/dev/null
$DALA sync --store "$P" 2>"$T/err"; check "a later sync delivers the rest (exit 0)" 0 $?
kill "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null
$SRV --version >"$T/v"; check "dala-server --version" 0 $?
expect "dala-server --version names SQLCipher and libsodium" bash -c "grep -q '^dala-server [0-9]' '$T/v' && grep -q '^SQLCipher [0-9]' '$T/v' && grep -q '^libsodium [0-9]' '$T/v'"
# run --config FILE: the same names as the flags, in a [run] section; unknown keys refused.
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '[run]\ndata = "%s"\nlisten = "127.0.0.1:%s"\nquiet = true\n' "$T/srv" "$port2" >"$T/run.toml"
$SRV run --config "$T/run.toml" >"$T/srv2.out" 2>&1 &
srv_pid=$!
for _ in $(seq 100); do grep -q listening "$T/srv2.out" 2>/dev/null && break; sleep 0.05; done
expect "run --config listens where the file says" grep -q "listening on 127.0.0.1:$port2" "$T/srv2.out"
kill "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null
expect "a quiet = true in the file logs no requests" bash -c "! grep -q '\"event\":\"request\"' '$T/srv2.out'"
printf '[run]\ndata = "%s"\nlisten_on = "x"\n' "$T/srv" >"$T/bad.toml"
$SRV run --config "$T/bad.toml" >/dev/null 2>"$T/err"; check "run --config with an unknown key" 2 $?

# Wipe.
unset DALA_PASSPHRASE
$DALA wipe --store "$S" 2>/dev/null; check "wipe without --yes" 2 $?
$DALA wipe --store "$S" --yes 2>/dev/null; check "wipe" 0 $?
DALA_PASSPHRASE="new one" $DALA report list --store "$S" 2>/dev/null; check "after wipe: no store" 4 $?

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
