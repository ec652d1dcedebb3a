"""Pixels of an 8-bit PNG (greyscale, RGB or RGBA), read by hand: zlib and the five PNG filters. Tests read
images (a QR code the CLI wrote, a browser's screenshot) independently of libpng, with no imaging library."""
import struct
import zlib

_CHANNELS = {0: 1, 2: 3, 6: 4}  # colour type: bytes a pixel


def rows(data):
    """(width, height, bytes a pixel, rows of bytes) of the PNG `data`; AssertionError if it is not an
    8-bit greyscale, RGB or RGBA PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("not a PNG")
    pos, idat, width, height, bpp = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if depth != 8 or colour not in _CHANNELS:
                raise AssertionError(f"a PNG of depth {depth}, colour type {colour}: not read here")
            bpp = _CHANNELS[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    stride = width * bpp
    raw, out, prev = zlib.decompress(idat), [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a, b, c = (line[i - bpp] if i >= bpp else 0), prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append(bytes(line))
        prev = line
    return width, height, bpp, out
