import ctypes, ctypes.util
S = ctypes.CDLL("libsodium.so.23")
assert S.sodium_init() >= 0
c = ctypes.c_char_p
def buf(n): return ctypes.create_string_buffer(n)
def blake2b(data, key=b"", n=32):
    out = buf(n)
    S.crypto_generichash(out, ctypes.c_size_t(n), c(data), ctypes.c_ulonglong(len(data)), c(key) if key else None, ctypes.c_size_t(len(key)))
    return out.raw
def verify(pk, domain, msg, sig):
    if len(pk) != 32 or len(sig) != 64: return False
    m = domain.encode() + b"\0" + msg
    return S.crypto_sign_verify_detached(c(sig), c(m), ctypes.c_ulonglong(len(m)), c(pk)) == 0
def kdf(master, ctx, idx, n=32):
    out = buf(n)
    assert S.crypto_kdf_derive_from_key(out, ctypes.c_size_t(n), ctypes.c_uint64(idx), c(ctx.encode()), c(master)) == 0
    return out.raw
def seed_keypair(seed):
    pk, sk = buf(32), buf(64)
    S.crypto_sign_seed_keypair(pk, sk, c(seed)); return pk.raw, sk.raw
def scalarmult_base(sk):
    pk = buf(32); S.crypto_scalarmult_base(pk, c(sk)); return pk.raw
def pwhash(pw, salt, ops, mem):
    out = buf(32)
    r = S.crypto_pwhash(out, ctypes.c_ulonglong(32), c(pw), ctypes.c_ulonglong(len(pw)), c(salt), ctypes.c_ulonglong(ops), ctypes.c_size_t(mem), ctypes.c_int(2))
    assert r == 0; return out.raw
def aead_dec(ct, ad, nonce, key):
    m = buf(max(1,len(ct))); ml = ctypes.c_ulonglong()
    r = S.crypto_aead_xchacha20poly1305_ietf_decrypt(m, ctypes.byref(ml), None, c(ct), ctypes.c_ulonglong(len(ct)), c(ad), ctypes.c_ulonglong(len(ad)), c(nonce), c(key))
    return None if r != 0 else m.raw[:ml.value]
def seal_open(ct, pk, sk):
    m = buf(max(1,len(ct)-48))
    r = S.crypto_box_seal_open(m, c(ct), ctypes.c_ulonglong(len(ct)), c(pk), c(sk))
    return None if r != 0 else m.raw[:len(ct)-48]
class SecretStream:
    def __init__(self, header, key):
        self.st = buf(S.crypto_secretstream_xchacha20poly1305_statebytes())
        self.ok = S.crypto_secretstream_xchacha20poly1305_init_pull(self.st, c(header), c(key)) == 0
    def pull(self, ct):
        m = buf(max(1,len(ct))); ml = ctypes.c_ulonglong(); tag = ctypes.c_ubyte()
        r = S.crypto_secretstream_xchacha20poly1305_pull(self.st, m, ctypes.byref(ml), ctypes.byref(tag), c(ct), ctypes.c_ulonglong(len(ct)), None, ctypes.c_ulonglong(0))
        return None if r != 0 else (m.raw[:ml.value], tag.value)
TAG_FINAL = S.crypto_secretstream_xchacha20poly1305_tag_final()
