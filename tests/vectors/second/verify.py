# A second implementation of the desk's checks (docs/protocol.md, "What the desk checks"), written from the
# docs (and, where they fell short, the code: docs/protocol.md, "Exact rules for a verifier", now says what it
# needed): Python with libsodium through ctypes and a small protobuf reader, sharing no code with tools/desk.
# tests/vectors/check_vectors.py runs it on the vectors.
import sys, json, os, struct, hmac
sys.path.insert(0, os.path.dirname(__file__))
import sodium as na, pb
from pb import S, msg, fields
B, STR, U, U32, I64 = "bytes", "str", "u", "u32", "i64"
F = False; T = True
OrgStatement = S(organisation_key=(1,B,F), version=(2,U,F), issued_ms=(3,I64,F), name=(4,STR,F), recipients=(5,B,T), servers=(6,B,T))
ServerAuth = S(server_key=(1,B,F), not_before_ms=(2,I64,F), not_after_ms=(3,I64,F), revoked_ms=(4,I64,F))
Signed2 = S(a=(1,B,F), sig=(2,B,F))
Invite = S(urls=(1,STR,T), server_key=(2,B,F), uses=(5,U32,F), expires_ms=(6,I64,F), tls_pin=(8,B,F), organisation_key=(9,B,F), enrol_key=(10,B,F), statement=(11,B,F), issued_ms=(12,I64,F))
Receipt = S(report_id=(1,B,F), version=(2,U32,F), content_hash=(3,B,F), server_time_ms=(4,I64,F), sequence=(5,U,F), server_key=(6,B,F), device_key=(7,B,F))
Export = S(server_key=(1,B,F), reports=(2,B,T), enrolments=(3,B,T), statement=(4,B,F), log=(5,B,T), log_head=(6,B,F))
SignedHead = S(head=(1,B,F), sig=(2,B,F))
PhoneReceipt = S(receipt=(1,B,F), sig=(2,B,F), leaf_index=(3,U,F), inclusion_proof=(4,B,T), log_head=(5,B,F))
Entry = S(envelope=(1,B,F), receipt=(2,B,F))
Enrolment = S(device_key=(1,B,F), invite=(2,B,F), proof=(3,B,F), enrolled_ms=(4,I64,F))
EnvBody = S(report_id=(1,B,F), version=(2,U32,F), device_key=(3,B,F), keys=(4,B,T), nonce=(5,B,F), ciphertext=(6,B,F), attachments=(7,B,T), key_commitment=(8,B,F), padded=(9,U,F))
Wrapped = S(recipient=(1,B,F), sealed_key=(2,B,F))
Manifest = S(attachment_id=(1,B,F), size=(2,U,F), chunk_size=(3,U32,F), root=(4,B,F), chunk_hashes=(5,B,F))
Content = S(report_id=(1,B,F), version=(2,U32,F), form=(3,STR,F), form_version=(4,U32,F), previous_hash=(8,B,F), attachments=(9,B,T), created_ms=(10,I64,F), sealed_ms=(11,I64,F), device_key=(12,B,F))
AttRef = S(attachment_id=(1,B,F), mime_type=(2,STR,F), size=(3,U,F), plaintext_hash=(4,B,F), ciphertext_hash=(5,B,F), key=(6,B,F), ciphertext_size=(7,U,F))

def log(*a): print(*a, file=sys.stderr)

# docs/protocol.md, "Padding": Padmé (PURBs): keep the top floor(log2(floor(log2 L))) + 1 bits of L, round up.
def padme(n, minimum):
    if n <= minimum: return minimum
    e = n.bit_length() - 1
    last = e - e.bit_length()
    if last <= 0: return n
    mask = (1 << last) - 1
    return (n + mask) & ~mask

def unpad_iso7816(b):
    """0x80 then zeros at the end (sodium_pad); None if not so."""
    i = len(b) - 1
    while i >= 0 and b[i] == 0: i -= 1
    return b[:i] if i >= 0 and b[i] == 0x80 else None

# (1) key file
def open_key(path, passphrase=None, master=None):
    f = open(path, "rb").read()
    kf = f[:148]
    assert kf[:8] == b"DALAKEY1" and kf[8] == 1 and kf[9] == 3
    assert na.blake2b(kf[:116]) == kf[116:148]
    if master is None:
        assert kf[10] == 1
        salt = kf[12:28]; ops = int.from_bytes(kf[28:36], "little"); mem = int.from_bytes(kf[36:44], "little")
        kek = na.pwhash(passphrase.encode(), salt, ops, mem)
        master = na.aead_dec(kf[68:116], kf[:68], kf[44:68], kek)
        assert master is not None, "wrong passphrase"
    tag, st_bytes = f[148:180], f[180:]
    tkey = na.kdf(master, "dalastmt", 0)
    assert hmac.compare_digest(na.blake2b(st_bytes, key=tkey), tag), "statement tag"
    root_pk, _ = na.seed_keypair(na.kdf(master, "dalaroot", 0))
    st = verify_statement(st_bytes, root_pk)
    assert st is not None
    # recipients: 0..newest the statement names. DOC GAP: how far to search for g?
    recips = []
    newest = -1
    for g in range(64):
        sk = na.kdf(master, "dalarcpt", g); pk = na.scalarmult_base(sk)
        recips.append((pk, sk))
        if pk in st["recipients"]: newest = g
    return dict(master=master, root=root_pk, statement=st, recipients=recips[:newest+1])

def verify_statement(b, root):
    ss = msg(b, Signed2); st = msg(ss["a"], OrgStatement)
    if st["organisation_key"] != root or not na.verify(root, "dala/v2/statement", ss["a"], ss["sig"]): return None
    if st["version"] == 0 or not (1 <= len(st["recipients"]) <= 64): return None
    if any(len(r) != 32 for r in st["recipients"]): return None
    servers = [msg(s, ServerAuth) for s in st["servers"]]
    keys = [s["server_key"] for s in servers]
    if any(len(k) != 32 for k in keys) or len(set(keys)) != len(keys): return None
    st["servers"] = {s["server_key"]: s for s in servers}
    return st

def authorised_at(st, key, t):
    s = st["servers"].get(key)
    return bool(s) and s["not_before_ms"] <= t and (s["not_after_ms"] == 0 or t < s["not_after_ms"]) and (s["revoked_ms"] == 0 or t < s["revoked_ms"])

def check_invite(b, root):
    si = msg(b, Signed2); inv = msg(si["a"], Invite)
    if inv["organisation_key"] != root or not na.verify(root, "dala/v2/invite", si["a"], si["sig"]): return None
    st = verify_statement(inv["statement"], root)
    if st is None or not authorised_at(st, inv["server_key"], inv["issued_ms"]): return None
    if not inv["urls"] or inv["uses"] == 0 or len(inv["server_key"]) != 32 or len(inv["enrol_key"]) != 32: return None
    return inv

def chunk_root(chunk_size, size, hashes):
    return na.blake2b(b"dala/v1/attachment-chunks\0" + struct.pack(">IQ", chunk_size, size) + hashes)

def open_envelope(env, recips):
    """returns (header, content, content_hash, problem)"""
    se = msg(env, Signed2); body = msg(se["a"], EnvBody)
    if len(body["device_key"]) != 32 or not na.verify(body["device_key"], "dala/v2/envelope", se["a"], se["sig"]):
        return None, None, None, "outer signature"
    if len(body["key_commitment"]) != 32: return body, None, None, "commitment size"
    body["manifests"] = [msg(m, Manifest) for m in body["attachments"]]
    for (pk, sk) in recips:
        for w in body["keys"]:
            wk = msg(w, Wrapped)
            if wk["recipient"] != pk: continue
            key = na.seal_open(wk["sealed_key"], pk, sk)
            if key is None: return body, None, None, "sealed key"
            if not hmac.compare_digest(na.blake2b(b"dala/v2/envelope-key" + key), body["key_commitment"]):
                return body, None, None, "not the one it commits to"
            ad = b"dala/v2/envelope-aead" + body["report_id"] + struct.pack("<I", body["version"]) + body["device_key"]
            plain = na.aead_dec(body["ciphertext"], ad, body["nonce"], key)
            if plain is None: return body, None, None, "aead"
            if body["padded"]:
                plain = unpad_iso7816(plain)
                if plain is None: return body, None, None, "padding"
            sr = msg(plain, Signed2); c = msg(sr["a"], Content)
            if not na.verify(body["device_key"], "dala/v1/report", sr["a"], sr["sig"]): return body, None, None, "inner sig"
            if (c["report_id"], c["version"], c["device_key"]) != (body["report_id"], body["version"], body["device_key"]):
                return body, None, None, "inner/outer disagree"
            c["attachments"] = [msg(a, AttRef) for a in c["attachments"]]
            return body, c, na.blake2b(plain), None
    return body, None, None, "not sealed to us"

def strict(b):
    bad = 0
    def ok(fl, rules):
        seen = {}
        for num, wt, v in fl:
            if num not in rules or rules[num][0] != wt: return False
            if not rules[num][1]:
                seen[num] = seen.get(num, 0) + 1
                if seen[num] > 1: return False
        return True
    top = fields(b)
    bad += 0 if ok(top, {1:(2,F),2:(2,T),3:(2,T),4:(2,F),5:(2,T),6:(2,F),7:(2,T)}) else 1
    for num, wt, v in top:
        if wt == 2 and num in (2, 7): bad += 0 if ok(fields(v), {1:(2,F),2:(2,F)}) else 1
        if wt == 2 and num == 3: bad += 0 if ok(fields(v), {1:(2,F),2:(2,F),3:(2,F),4:(0,F)}) else 1
    return bad

def attachment_check(path, ref, man):
    if man is None: return "not declared"
    if man["root"] != ref["ciphertext_hash"]: return "root differs"
    if not os.path.exists(path): return "missing file"
    data = open(path, "rb").read()
    # chunk root over the whole file (header included?) DOC: "every 1 MiB chunk of the ciphertext file"
    cs = man["chunk_size"]
    hashes = b"".join(na.blake2b(data[i:i+cs]) for i in range(0, len(data), cs))
    if chunk_root(cs, len(data), hashes) != man["root"]: return "ciphertext root"
    ss = na.SecretStream(data[:24], ref["key"])
    if not ss.ok: return "header"
    pos = 24; plain = b""; PIECE = 65536
    # Padded with zeros to padme(size, 4096) (docs/storage-format.md); files written before padding are not.
    def ct_size(p): return 24 + p + max(1, -(-p // PIECE)) * 17
    total = padme(ref["size"], 4096) if len(data) > ct_size(ref["size"]) else ref["size"]
    while True:
        left = total - len(plain)
        last = left <= PIECE
        n = (left if last else PIECE) + 17
        piece = data[pos:pos+n]; pos += n
        if len(piece) < n: return "truncated"
        r = ss.pull(piece)
        if r is None: return "auth"
        m, tag = r
        if (tag == na.TAG_FINAL) != last: return "final tag"
        plain += m
        if last: break
    if pos != len(data): return "trailing"
    if any(plain[ref["size"]:]): return "padding"
    plain = plain[:ref["size"]]
    if na.blake2b(plain) != ref["plaintext_hash"]: return "plaintext hash"
    return None

# The log (docs/protocol.md, "The log"): RFC 9162 over SHA-256.
import hashlib
def mth(leaves):
    if not leaves: return hashlib.sha256(b"").digest()
    if len(leaves) == 1: return hashlib.sha256(b"\0" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves): k *= 2
    return hashlib.sha256(b"\1" + mth(leaves[:k]) + mth(leaves[k:])).digest()

def leaf_hash(leaf): return hashlib.sha256(b"\0" + leaf).digest()

def inclusion_ok(leaf, index, size, proof, root):
    """RFC 9162 2.1.3.2: the leaf is leaf `index` of the tree of `size` leaves whose root is `root`."""
    if index >= size or any(len(p) != 32 for p in proof): return False
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in proof:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\1" + p + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0: fn >>= 1; sn >>= 1
        else:
            r = hashlib.sha256(b"\1" + r + p).digest()
        fn >>= 1; sn >>= 1
    return sn == 0 and r == root

def parse_head(b):
    """SignedLogHead -> (size, root, time_ms, server_key, head bytes, signature), or None."""
    try: sh = msg(b, SignedHead)
    except ValueError: return None
    h = sh["head"]
    if len(h) != 80: return None
    return int.from_bytes(h[:8], "big"), h[8:40], int.from_bytes(h[40:48], "big", signed=True), h[48:80], h, sh["sig"]

# docs/protocol.md, "Exact rules for a verifier", "Phone receipts": a phone receipt of this export's server
# that carries log_head counts 1 in log_problems unless all of these hold.
def phone_receipt_in_log(pr, r, leaf, ex, st):
    sr = msg(pr, PhoneReceipt)
    if not sr["log_head"]: return True  # no log_head (proto3: empty is absent): from before the log, not looked at
    present = {num for num, wt, v in fields(pr)}  # leaf_index is `optional`: present or not, even when 0
    head = parse_head(sr["log_head"])
    if head is None: return False
    size, root, t, key, h, sig = head
    if key != r["server_key"] or not na.verify(key, "dala/v2/log-head", h, sig) or not authorised_at(st, key, t): return False
    if 3 not in present or not inclusion_ok(leaf, sr["leaf_index"], size, sr["inclusion_proof"], root): return False
    if size > len(ex["log"]): return False       # the server logged more than the export shows (or forked)
    if mth(ex["log"][:size]) != root: return False  # another log shown to that phone: a fork
    return ex["log"][sr["leaf_index"]] == leaf

# docs/protocol.md, "Receipts are proven by the log": a phone receipt with a signature holds if it verifies;
# one without (as phones keep them) if its log head is its server's, verifies, and shows its report leaf at
# leaf_index. Either way its server key is authorised at the receipt's time (and at the head's).
def kept_receipt_ok(pr, r, canon, st):
    sr = msg(pr, PhoneReceipt)
    if (len(r["report_id"]), len(r["content_hash"]), len(r["device_key"]), len(r["server_key"])) != (16, 32, 32, 32): return False
    if not authorised_at(st, r["server_key"], r["server_time_ms"]): return False
    if sr["sig"]: return na.verify(r["server_key"], "dala/v2/receipt", canon, sr["sig"])
    present = {num for num, wt, v in fields(pr)}
    head = parse_head(sr["log_head"]) if sr["log_head"] else None
    if head is None or 3 not in present: return False
    size, root, t, key, h, sig = head
    if sr["log_head"] != b"\x0a\x50" + h + b"\x12\x40" + sig: return False  # exactly the 148 bytes {head, signature}
    return (key == r["server_key"] and na.verify(key, "dala/v2/log-head", h, sig) and authorised_at(st, key, t)
            and inclusion_ok(b"\1" + canon, sr["leaf_index"], size, sr["inclusion_proof"], root))

# Returns whether the log verified (head and leaves): phones' heads are held against it only then.
def audit_log(ex, st, items, summ, withheld):
    if not ex["log_head"]:
        summ["log_problems"] += 1; return False
    sh = msg(ex["log_head"], SignedHead); h = sh["head"]
    if len(h) != 80:
        summ["log_problems"] += 1; return False
    size, root, t, key = int.from_bytes(h[:8], "big"), h[8:40], int.from_bytes(h[40:48], "big", signed=True), h[48:80]
    if not na.verify(key, "dala/v2/log-head", h, sh["sig"]) or key != ex["server_key"] or not authorised_at(st, key, t):
        summ["log_problems"] += 1; return False
    if size != len(ex["log"]) or mth(ex["log"]) != root:
        summ["log_problems"] += 1; return False
    leaves = set(ex["log"]); entries = set()
    for it in items:
        if not it["rok"]: continue
        entries.add(it["leaf"])
        if it["leaf"] not in leaves: summ["log_problems"] += 1
    for leaf in leaves:
        if len(leaf) == 133 and leaf[0] == 1 and leaf not in entries:
            withheld.add(int.from_bytes(leaf[61:69], "big"))
    for e in ex["enrolments"]:
        e = msg(e, Enrolment)
        leaf = b"\2" + e["device_key"] + na.blake2b(e["invite"]) + na.blake2b(e["proof"]) + struct.pack(">q", e["enrolled_ms"])
        if leaf not in leaves: summ["log_problems"] += 1
    return True

def open_export(org, path, phone_receipts=()):
    b = open(path, "rb").read()
    ex = msg(b, Export)
    st = org["statement"]
    summ = dict(reports=0, verified=0, failed=0, duplicates=0, reordered=0, unknown_fields=strict(b), missing=0, phone_receipts_invalid=0, log_problems=0)
    # enrolments
    enrolled = {}; used = {}
    ens = sorted((msg(e, Enrolment) for e in ex["enrolments"]), key=lambda e: e["enrolled_ms"])
    for e in ens:
        inv = check_invite(e["invite"], org["root"])
        if inv is None or e["device_key"] in enrolled: continue
        if not na.verify(inv["enrol_key"], "dala/v2/enrol", e["device_key"] + inv["server_key"], e["proof"]): continue
        if e["enrolled_ms"] >= inv["expires_ms"] or used.get(inv["enrol_key"], 0) >= inv["uses"]: continue
        used[inv["enrol_key"]] = used.get(inv["enrol_key"], 0) + 1
        enrolled[e["device_key"]] = e
    items = []; seen = {}; last_seq = 0
    for raw in ex["reports"]:
        en = msg(raw, Entry)
        envh = na.blake2b(en["envelope"])
        body, c, chash, prob = open_envelope(en["envelope"], org["recipients"])
        probs = [prob] if prob else []
        if body is not None and prob != "outer signature":
            k = (body["device_key"], body["report_id"], body["version"])
            if k in seen:
                summ["duplicates"] += 1
                if seen[k]["envh"] != envh: seen[k]["problems"].append("another envelope")
                continue
        else: k = None
        it = dict(key=k, envh=envh, body=body, c=c, chash=chash, problems=probs, rok=False, seq=0)
        if k: seen[k] = it
        if k and body["device_key"] not in enrolled: probs.append("not enrolled")
        # receipt
        try:
            sr = msg(en["receipt"], Signed2); r = msg(sr["a"], Receipt)
        except Exception: r = None
        if r is None or len(r["server_key"]) != 32: probs.append("receipt malformed")
        elif r["server_key"] not in st["servers"]: probs.append("receipt never authorised")
        else:
            canon = r["report_id"] + struct.pack(">I", r["version"]) + r["content_hash"] + struct.pack(">qQ", r["server_time_ms"], r["sequence"]) + r["server_key"] + r["device_key"]
            if not na.verify(r["server_key"], "dala/v2/receipt", canon, sr["sig"]): probs.append("receipt signature")
            elif not authorised_at(st, r["server_key"], r["server_time_ms"]): probs.append("receipt not authorised then")
            elif r["content_hash"] != envh: probs.append("receipt other bytes")
            elif not k or (r["device_key"], r["report_id"], r["version"]) != k: probs.append("receipt other report")
            elif r["server_key"] != ex["server_key"]: probs.append("receipt other server")
            else:
                it["rok"] = True; it["seq"] = r["sequence"]; it["leaf"] = b"\1" + canon
                if r["sequence"] <= last_seq: summ["reordered"] += 1
                last_seq = max(last_seq, r["sequence"])
        items.append(it)
    seqs = {i["seq"] for i in items if i["rok"]}
    withheld = set(n for n in range(1, max(seqs) + 1) if n not in seqs) if seqs else set()
    log_ok = audit_log(ex, st, items, summ, withheld)
    for pr in phone_receipts:
        sr = msg(pr, Signed2); r = msg(sr["a"], Receipt)
        canon = r["report_id"] + struct.pack(">I", r["version"]) + r["content_hash"] + struct.pack(">qQ", r["server_time_ms"], r["sequence"]) + r["server_key"] + r["device_key"]
        if not kept_receipt_ok(pr, r, canon, st):
            summ["phone_receipts_invalid"] += 1; continue
        if r["server_key"] != ex["server_key"]: continue
        if log_ok and not phone_receipt_in_log(pr, r, b"\1" + canon, ex, st): summ["log_problems"] += 1
        k = (r["device_key"], r["report_id"], r["version"])
        held = seen.get(k)
        if held is None: withheld.add(r["sequence"])
        elif held["envh"] != r["content_hash"]: summ["missing"] += 1
    summ["missing"] += len(withheld)
    # chains
    for it in items:
        c = it["c"]
        if c is None: continue
        if c["version"] == 1:
            if c["previous_hash"]: it["problems"].append("v1 names previous")
            continue
        p = seen.get((c["device_key"], c["report_id"], c["version"] - 1))
        if p is None or p["c"] is None: it["problems"].append("version %d is missing" % (c["version"] - 1)); continue
        pc = p["c"]
        if c["previous_hash"] != p["chash"]: it["problems"].append("prev hash")
        if (pc["form"], pc["form_version"], pc["created_ms"]) != (c["form"], c["form_version"], c["created_ms"]): it["problems"].append("form/created")
    media = path + ".media"
    for it in items:
        c = it["c"]
        if c is None: continue
        mans = {m["attachment_id"]: m for m in it["body"]["manifests"]}
        ids = [a["attachment_id"] for a in c["attachments"]]
        if len(set(ids)) != len(ids): it["problems"].append("listed twice")
        for mid in mans:
            if mid not in ids: it["problems"].append("declared not listed")
        for a in c["attachments"]:
            fn = os.path.join(media, it["body"]["device_key"].hex() + "-" + a["attachment_id"].hex())
            p = attachment_check(fn, a, mans.get(a["attachment_id"]))
            if p: it["problems"].append("attachment " + p)
    for it in items:
        summ["reports"] += 1
        ok = it["c"] is not None and not it["problems"]
        summ["verified" if ok else "failed"] += 1
        it["ok"] = ok
    return summ, items

if __name__ == "__main__":
    data = sys.argv[1]
    keys = json.load(open(os.path.join(data, "keys.json")))
    org = open_key(os.path.join(data, "desk.key"), master=bytes.fromhex(keys["master_secret"]))
    assert org["root"].hex() == keys["root_public_key"]
    assert org["recipients"][-1][0].hex() == keys["recipient_public_key"], (org["recipients"][-1][0].hex())
    pr = [bytes.fromhex(x["receipt"]) for x in json.load(open(os.path.join(data, "phone-receipts.json")))]
    ida = {keys["report_a"]: "A", keys["report_b"]: "B"}
    for f in sorted(os.listdir(data)):
        if not f.endswith(".dala"): continue
        for rec in ((), pr):
            s, items = open_export(org, os.path.join(data, f), rec)
            tags = ["%s%d:%s" % (ida.get(i["body"]["report_id"].hex() if i["body"] else "", "X"), i["body"]["version"] if i["body"] else 0, "ok" if i["ok"] else ",".join(i["problems"])) for i in items]
            print(f, "R" if rec else "-", {k: v for k, v in s.items() if v}, tags)
