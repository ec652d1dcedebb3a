#!/usr/bin/env bash
# The whole story: phones' encrypted stores, reports from the 17 August 2025 detentions described in
# ../shared/samples/ (KIBHR open letter), sealing, the organisation's key and server, joining while the
# server is down, delivery when it comes up, verified receipts, the desk opening the export, a passphrase
# change, a refused passphrase, and a panic wipe. Usage: tools/demo.sh BIN_DIR
set -euo pipefail
BIN=${1:?usage: demo.sh BIN_DIR}
DALA="$BIN/dala"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LETTER=$(ls "$ROOT"/../shared/samples/*.txt 2>/dev/null | head -1 || true)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PHONE=$WORK/phone-store

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$BIN/||; s|$WORK/||g"; "$@"; }

# The sentence of the letter that names a place, or a fallback when the sample is not beside the repo.
sentence() {
  if [ -n "$LETTER" ]; then
    tr '\n' ' ' <"$LETTER" | sed 's/\. /.\n/g' | grep -m1 "$1" || echo "$2"
  else
    echo "$2"
  fi
}

export DALA_PASSPHRASE="Run for Marat, 17 August"
say "1. An activist's phone creates its encrypted store (Argon2id-wrapped key, SQLCipher database, device key)"
run "$DALA" init --store "$PHONE"
ls -l "$PHONE" | sed "s|$WORK/||"

say "2. Reports from the detentions of 17 August 2025${LETTER:+ (from $(basename "$LETTER"))}, written offline and sealed"
add() {  # add PLACE WHEN NARRATIVE PERSON...
  local place=$1 when=$2 text=$3; shift 3
  local people=()
  for p in "$@"; do people+=(--field "detained:person=$p|detained"); done
  "$DALA" report add --store "$PHONE" --form detention/1 --field "place=$place" --field "when:time=$when" \
    --field "grounds=none given" "${people[@]}" --text "$text" --seal
}
ORAL=$(add "Oral (Uralsk)" 2025-08-17T07:00Z \
  "$(sentence 'In Oral' 'In Oral, civic activists Roza Kariyeva and Marua Eskendirova were detained during their run.')" \
  "Roza Kariyeva" "Marua Eskendirova")
echo "Oral:            $ORAL"
EK=$(add "East Kazakhstan" 2025-08-17T06:30Z \
  "$(sentence 'East Kazakhstan' 'Former political prisoner Serik Ydyryshev was detained while attempting to go for a run.')" \
  "Serik Ydyryshev")
echo "East Kazakhstan: $EK"
SHYM=$(add "Shymkent" 2025-08-17T08:00Z "$(sentence 'In Shymkent' 'In Shymkent, Yermek Konshbaev was detained.')" \
  "Yermek Konshbaev")
echo "Shymkent:        $SHYM"
ALA=$(add "Almaty" 2025-08-17T08:15Z \
  "$(sentence 'In Almaty' 'In Almaty, activists Ninagul Zhumaniyazova and Kumis Kulmanova were also detained.')" \
  "Ninagul Zhumaniyazova" "Kumis Kulmanova")
echo "Almaty:          $ALA"
# A short video recorded while running (generated here: 16 MiB of "frames"), encrypted as it is read in.
python3 - "$WORK/run-almaty.mp4" <<'PY'
import hashlib, sys
with open(sys.argv[1], "wb") as f:
    f.write(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")
    for i in range(2048):
        seed = hashlib.blake2b(b"frame %d" % i).digest()
        f.write((b"frame %05d of the run in Almaty, Zhumaniyazova filmed " % i).ljust(64, b".") + seed * 126)
PY
VIDEO=$("$DALA" report add --store "$PHONE" --form detention/1 --field "place=Almaty" \
  --field "when:time=2025-08-17T08:20Z" --text "Video filmed while running, just before the detentions in Almaty." \
  --attach "$WORK/run-almaty.mp4" --priority -1 --seal)
echo "Almaty video:    $VIDEO ($(du -h "$WORK/run-almaty.mp4" | cut -f1), encrypted on capture)"
SHORT=$("$DALA" report add --store "$PHONE" --form detention/1 --field "place=Shortandy" \
  --field "detained:person=Amangeldy Zhakhin|detained" --text "Amangeldy Zhakhin detained. Time not yet confirmed.")
echo "Shortandy:       $SHORT (a draft: the time is not confirmed yet)"

say "3. The store lists them; a sealed report is signed by this phone and immutable"
run "$DALA" report list --store "$PHONE"
run "$DALA" report show --store "$PHONE" "$ORAL"

say "4. The draft is completed and sealed; correcting a sealed report makes a new version linked by hash"
run "$DALA" report edit --store "$PHONE" "$SHORT" --field when:time=2025-08-17T09:00Z --seal >/dev/null
run "$DALA" report edit --store "$PHONE" "$ORAL" --field "released:bool=true" --field "hours_held:int=3" --seal >/dev/null
"$DALA" report show --store "$PHONE" "$ORAL" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("version %d, previous version hash %s..., state %s" % (r["version"], r["previous_hash"][:16], r["state"]))'

say "5. The organisation makes its root key (kept at the desk), a server for it, and an invite signed by the root"
export DALA_DESK_PASS="desk passphrase"
ORG=$(DALA_PASSPHRASE="$DALA_DESK_PASS" "$DALA" desk keygen --out "$WORK/org.key" --name KIBHR 2>/dev/null)
echo "organisation identity: $ORG"
SERVER_KEY=$("$BIN/dala-server" init --data "$WORK/server" --organisation "$ORG" 2>/dev/null | tail -1)
echo "server key:            $SERVER_KEY"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)    # what phones dial: a proxy that will cut the first upload (a bad network)
SPORT=$(free_port)   # the server itself
INVITE=$(DALA_PASSPHRASE="$DALA_DESK_PASS" "$DALA" desk invite --key "$WORK/org.key" --server-key "$SERVER_KEY" \
  --url "http://127.0.0.1:$PORT" --uses 2)
echo "invite (fits a QR code): ${INVITE:0:48}..."

say "6. Two phones join while the server is down; the first sends what it recorded before (--include-existing)"
run "$DALA" join --store "$PHONE" --include-existing "$INVITE"
PHONE2=$WORK/second-phone
DALA_PASSPHRASE="second phone" "$DALA" init --store "$PHONE2" 2>/dev/null
DALA_PASSPHRASE="second phone" "$DALA" join --store "$PHONE2" "$INVITE" 2>/dev/null
DALA_PASSPHRASE="second phone" "$DALA" report add --store "$PHONE2" --form detention/1 --field place=Astana \
  --text "$(sentence 'In Astana' 'In Astana, police officers and representatives of local authorities attempted to prevent running.')" \
  --seal >/dev/null
run "$DALA" report list --store "$PHONE"
set +e
run "$DALA" sync --store "$PHONE" --timeout 5
echo "exit code $? (5: nothing lost, everything stays queued for later)"
set -e

say "7. Nothing readable on the phone: no name from the reports appears in any file of its store"
for name in Kariyeva Konshbaev Zhakhin Zhumaniyazova "SQLite format 3"; do
  if grep -rqa "$name" "$PHONE"; then echo "FOUND '$name' in plaintext!"; exit 1; fi
  echo "'$name': not found in $(ls "$PHONE" | tr '\n' ' ')(nor in media/: $(ls "$PHONE/media" | wc -l) encrypted file)"
done

say "8. Connectivity returns (badly: the link drops once mid-video); the upload resumes; the receipts verify"
"$BIN/dala-server" run --data "$WORK/server" --listen "127.0.0.1:$SPORT" --quiet >"$WORK/server.out" 2>&1 &
SERVER=$!
python3 "$ROOT/tools/faultproxy.py" cut "$PORT" "$SPORT" 6000000 2>"$WORK/proxy.out" &
PROXY=$!
trap 'kill $SERVER $PROXY 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do grep -q listening "$WORK/server.out" && grep -q listening "$WORK/proxy.out" && break; sleep 0.05; done
run "$DALA" sync --store "$PHONE"
grep "cut the" "$WORK/proxy.out" | sed 's/^faultproxy: /network: /'
CIPHER=$(du -b "$PHONE"/media/* | cut -f1)
DALA_PASSPHRASE="second phone" "$DALA" sync --store "$PHONE2"
run "$DALA" receipts --store "$PHONE"
kill -TERM $PROXY; wait $PROXY 2>/dev/null || true
FORWARDED=$(sed -n 's/.*forwarded \([0-9]*\) bytes.*/\1/p' "$WORK/proxy.out")
echo "the proxy forwarded $FORWARDED bytes: the encrypted video once ($CIPHER bytes) plus $((FORWARDED - CIPHER)) (the reports,"
echo "the requests, and the part of one 1 MiB chunk that the cut interrupted: at most one chunk is ever sent twice)"
run "$BIN/dala-server" devices --data "$WORK/server"
echo "the server holds only ciphertext: $(grep -rqaE 'Kariyeva|Zhumaniyazova' "$WORK/server" && echo 'NAME FOUND!' || echo 'no name from the reports or the video under its data directory')"

say "9. The desk opens the server's export and verifies every report"
"$BIN/dala-server" export --data "$WORK/server" --out "$WORK/export.bin"
DALA_PASSPHRASE="$DALA_DESK_PASS" run "$DALA" desk open --key "$WORK/org.key" --from "$WORK/export.bin" --out "$WORK/desk"
python3 - "$WORK/desk" "$WORK/run-almaty.mp4" <<'PY'
import glob, hashlib, json, os, sys
original = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
for f in sorted(glob.glob(sys.argv[1] + "/*-v*.json")):
    d = json.load(open(f))
    r = d["report"]
    who = "; ".join(p["name"] for p in r["fields"].get("detained", {}).get("value", []))
    place = r["fields"].get("place", {}).get("value", "?")
    print(f'{"verified" if d["verified"] else "FAILED  "}  v{r["version"]}  {place:16} {who}')
    for a in d["attachments"]:
        path = os.path.join(sys.argv[1], a["file"]) if a["file"] else None
        same = path and hashlib.sha256(open(path, "rb").read()).hexdigest() == original
        print(f'          attachment {a["mime"]} {a["size"] / 1048576:.1f} MiB: '
              f'{"decrypted, plaintext hash verified" if a["verified"] else "FAILED"}'
              f'{", identical to the file filmed on the phone" if same else ""}')
PY

say "10. The passphrase is changed (the key is re-wrapped; the database is not rewritten)"
DB_HASH=$(sha256sum "$PHONE/dala.db" | cut -c1-16)
DALA_NEW_PASSPHRASE="a new passphrase" run "$DALA" passphrase change --store "$PHONE"
echo "database hash before: $DB_HASH, after: $(sha256sum "$PHONE/dala.db" | cut -c1-16)"
set +e
run "$DALA" report list --store "$PHONE"
echo "exit code $? (3: the old passphrase is refused)"
DALA_PASSPHRASE="guess" "$DALA" report list --store "$PHONE"
echo "exit code $? (3: a wrong passphrase is refused)"
set -e
export DALA_PASSPHRASE="a new passphrase"

say "11. The phone is about to be taken: panic wipe (no passphrase needed; the key is destroyed first)"
start=$(date +%s%N)
run "$DALA" wipe --store "$PHONE" --yes
echo "wipe took $(( ($(date +%s%N) - start) / 1000000 )) ms (including process start)"
set +e
run "$DALA" report list --store "$PHONE"
echo "exit code $? (4: no store)"
set -e
say "Done: written offline, sealed, delivered exactly once with verified receipts, read only by the organisation."
