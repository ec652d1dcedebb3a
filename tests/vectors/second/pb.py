# minimal protobuf wire reader
def varint(b, i):
    v = s = 0
    while True:
        if i >= len(b): raise ValueError("trunc")
        x = b[i]; i += 1; v |= (x & 0x7f) << s; s += 7
        if not x & 0x80: return v, i
        if s > 63: raise ValueError("long varint")
def fields(b):
    i = 0; out = []
    while i < len(b):
        tag, i = varint(b, i); num, wt = tag >> 3, tag & 7
        if num == 0: raise ValueError("field 0")
        if wt == 0: v, i = varint(b, i)
        elif wt == 2:
            n, i = varint(b, i)
            if i + n > len(b): raise ValueError("trunc")
            v = b[i:i+n]; i += n
        elif wt == 1: v = b[i:i+8]; i += 8
        elif wt == 5: v = b[i:i+4]; i += 4
        else: raise ValueError("wt")
        out.append((num, wt, v))
    return out
def msg(b, schema):
    """schema: {num: (name, kind, repeated)} kind in bytes,str,u,i64,msg(schema). proto3 semantics: last wins."""
    d = {n: ([] if r else (b"" if k in ("bytes",) else "" if k=="str" else 0)) for (n,k,r) in schema.values()}
    for num, wt, v in fields(b):
        if num not in schema: continue
        name, kind, rep = schema[num]
        if kind in ("bytes", "str"):
            if wt != 2: raise ValueError("wt mismatch")
            val = v if kind == "bytes" else v.decode("utf-8")
        else:
            if wt != 0: raise ValueError("wt mismatch")
            val = v
            if kind == "i64" and val >= 1 << 63: val -= 1 << 64
            if kind == "u32": val &= 0xffffffff
        if rep: d[name].append(val)
        else: d[name] = val
    return d
def S(**kw):
    return {num: (name, kind, rep) for name, (num, kind, rep) in kw.items()}
