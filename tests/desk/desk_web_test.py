#!/usr/bin/env python3
"""The web desk (`dala desk serve`, docs/desk.md) as a case worker and as an attacker meet it.

Over plain HTTP: every request needs the session the one-time login address opens (a second use, a wrong
token, no cookie: refused); a foreign Host is refused (DNS rebinding); a change without the session's CSRF
token or from another Origin is refused; every page carries a strict Content-Security-Policy and nosniff;
phone-written text (script tags, javascript: links, right-to-left overrides, a 1 MB narrative) comes back
escaped; SVG and HTML attachments are served only as downloads; ranges past the end are 416; the custody
log's hash chain and Ed25519 signatures check out with an implementation of their own (Python's hashlib and
cryptography) against the organisation's root key, and a changed entry does not.

In a real browser (Debian's Chromium through Selenium, tests/support/browser.py): log in, search, filter,
open a report, read its verification panel, play a video and seek in it (decrypted on the fly by ranges),
set a case status and a note, export CSV; hostile content never executes (nothing sets window.__pwned, no
dialog opens) and the page keeps its layout. Screenshots go to BIN_DIR/../desk-screenshots.

tests/fixtures/desk/clip.webm (6 s, 160x120, VP8 + Vorbis) was made with
    ffmpeg -f lavfi -i testsrc=size=160x120:rate=10:duration=6 -f lavfi -i sine=frequency=440:duration=6 \\
           -c:v libvpx -b:v 60k -g 10 -c:a libvorbis -shortest clip.webm

Usage: desk_web_test.py BIN_DIR
"""
import base64
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
import png_pixels  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLIP = os.path.join(HERE, "..", "fixtures", "desk", "clip.webm")
FAILED = []
HOSTILE = ('<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
           '<a href="javascript:window.__pwned=3">click</a> \u202eesrever\u202c detained at the stadium')
EVIL_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=5">'
            b'<script>window.__pwned=6</script></svg>')
EVIL_HTML = b'<html><body><script>window.__pwned=7</script>hello</body></html>'


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  ({str(detail)[:600]})"))
    if not ok:
        FAILED.append(what)


class Desk:
    """A running `dala desk serve` and an HTTP client for it."""

    def __init__(self, dala, key, data, *extra):
        self.proc = subprocess.Popen([dala, "desk", "serve", "--key", key, "--data", data, *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=harness.ENV)
        self.url = self.proc.stdout.readline().strip()
        parsed = urllib.parse.urlparse(self.url)
        self.host, self.port = parsed.hostname, parsed.port
        self.origin = f"http://{self.host}:{self.port}"
        self.base = parsed.path[: -len("login")] if parsed.path.endswith("/login") else "/"
        self.cookie = ""

    def request(self, method, path, body=None, headers=None, cookie=True, raw=False):
        """path: under the desk's secret path (BASE/path), or with raw, as it is."""
        if not raw:
            path = self.base + path.lstrip("/")
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        h = dict(headers or {})
        if cookie and self.cookie:
            h["Cookie"] = self.cookie
        if body is not None:
            body = urllib.parse.urlencode(body)
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    def login(self):
        r, _ = self.request("GET", urllib.parse.urlparse(self.url)._replace(scheme="", netloc="").geturl(), cookie=False,
                            raw=True)
        cookie = r.getheader("Set-Cookie") or ""
        self.cookie = cookie.split(";")[0]
        return r, cookie

    def csrf(self, page):
        m = re.search(rb'name="csrf" value="([^"]+)"', page)
        return m.group(1).decode() if m else ""

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def png(rgb):
    """A valid 256x256 PNG of one colour (zlib only)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(rgb) * 256 for _ in range(256))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def colour_count(png_bytes, colours):
    """How many pixels of an 8-bit RGB or RGBA PNG (as Chromium's screenshots are) have one of `colours`
    (RGB triples)."""
    _, _, bpp, pixels = png_pixels.rows(png_bytes)
    if bpp < 3:
        raise AssertionError("not a colour PNG")
    wanted = set(map(tuple, colours))
    return sum(tuple(line[i:i + 3]) in wanted for line in pixels for i in range(0, len(line), bpp))


def tile_of(lat, lon, z):
    """The XYZ tile holding a point (Web Mercator), written here independently of the desk's own code."""
    n = 2 ** z
    r = math.radians(lat)
    return int((lon + 180.0) / 360.0 * n), int((1.0 - math.asinh(math.tan(r)) / math.pi) / 2.0 * n)


def pdf_checks(dala, org_key, data, work, identity):
    """The evidence package's verification report as a person reads it: verification.pdf (read back with
    poppler's pdftotext and pdfinfo) and verification.html say what was checked, with the hashes; what a
    phone wrote is there as text, never as markup; a long narrative is cut and says where the whole is; the
    PDF's pages are numbered "N of M"; and both are covered by the manifest the root signed."""
    rows = os.path.join(work, "all.jsonl")
    harness.run(dala, "desk", "export", "--key", org_key, "--data", data, "--format", "jsonl", "--out", rows,
                env=harness.ENV)
    ids = {}
    for line in open(rows, encoding="utf-8"):
        row = json.loads(line)
        for key, needle in (("video", "detentions"), ("hostile", "stadium"), ("long", "Long account")):
            if needle in row.get("narrative", ""):
                ids[key] = row["id"]
    check("pdf: the three reports are found by their narratives", len(ids) == 3, ids)
    package = os.path.join(work, "three.zip")
    harness.run(dala, "desk", "export", "--key", org_key, "--data", data, "--format", "evidence", "--out", package,
                *[a for rid in ids.values() for a in ("--report", rid)], env=harness.ENV, timeout=300)
    import zipfile
    with zipfile.ZipFile(package) as z:
        pdf = z.read("verification.pdf")
        html = z.read("verification.html").decode("utf-8")
        listed = [f["path"] for f in json.loads(z.read("manifest.json"))["files"]]
    check("pdf: the package holds verification.pdf and .html, both in the signed manifest",
          pdf.startswith(b"%PDF-") and "verification.pdf" in listed and "verification.html" in listed, listed[-6:])
    pdf_path = os.path.join(work, "verification.pdf")
    open(pdf_path, "wb").write(pdf)
    info = subprocess.run(["pdfinfo", pdf_path], capture_output=True, text=True, timeout=60)
    pages = re.search(r"^Pages:\s+(\d+)", info.stdout, re.M)
    pages = int(pages.group(1)) if pages else 0
    check("pdf: poppler reads it; its title and creator are the desk's; a 1 MB narrative keeps it short",
          info.returncode == 0 and "Evidence package: verification report" in info.stdout and
          re.search(r"^Creator:\s+Dala desk", info.stdout, re.M) and 3 <= pages <= 40, (info.stdout, info.stderr))
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", pdf_path, "-"], capture_output=True, timeout=60).stdout.decode()
    flat = re.sub(r"\s+", "", text)
    clip_sha = hashlib.sha256(open(CLIP, "rb").read()).hexdigest()
    clip_b2 = hashlib.blake2b(open(CLIP, "rb").read(), digest_size=32).hexdigest()
    check("pdf: each report is named, with what the desk checked",
          all(rid in flat for rid in ids.values()) and text.count("decrypted end to end and matched the hash") >= 4 and
          "through an invite the organisation's root signed" in re.sub(r"\s+", " ", text), text[:600])
    check("pdf: the video's SHA-256 and BLAKE2b-256 are printed in full", clip_sha in flat and clip_b2 in flat)
    check("pdf: how to check it without a secret key", ("dalaverifyPACKAGE.zip--organisation" + identity) in flat)
    markup = re.sub(r"\s+", "", HOSTILE.split("click</a>")[0] + "click</a>")
    check("pdf: phone-written markup is printed as text, not interpreted",
          markup in flat and "Задержанустадиона" in flat,
          [ln for ln in text.splitlines() if "pwned" in ln or "bold" in ln][:4])
    check("pdf: a 1 MB narrative is cut, saying how much and where the whole is",
          "more characters are left out here: the whole text is in" in re.sub(r"\s+", " ", text))
    check("pdf: every page says 'page N of M'",
          all(f"page {n} of {pages}" in text for n in range(1, pages + 1)) and pages > 0, pages)
    check("html: the same report, escaped, its own style the only one allowed",
          "<script" not in html and "<b>bold" not in html and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html and
          "style-src 'sha256-" in html and clip_sha in html, html[:300])
    r = subprocess.run([dala, "verify", package, "--organisation", identity], capture_output=True, text=True, timeout=120)
    check("pdf: dala verify accepts the package", r.returncode == 0, (r.stdout[-400:], r.stderr))
    # A verification report changed after the package was made is caught like any other file.
    changed = os.path.join(work, "changed.zip")
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(changed, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "verification.pdf":
                body = body.replace(b"/Creator (Dala desk)", b"/Creator (Dala_desk)")
            dst.writestr(item, body)
    r = subprocess.run([dala, "verify", changed, "--organisation", identity], capture_output=True, text=True, timeout=120)
    check("pdf: a changed verification.pdf fails dala verify", r.returncode == 1 and "verification.pdf" in r.stdout,
          (r.returncode, r.stdout[-400:]))


# The colours of the test's tiles (tile_checks): a map drawn on them shows these.
TILE_COLOURS = [(200, 220, 200 + 10 * dx) for dx in (-1, 0, 1)]


def tile_checks(dala, org_key, data, work):
    """dala desk serve --tiles: maps drawn on the organisation's own tiles, served by the desk alone, only
    real images, only in a session; an attribution shown escaped."""
    tiles = os.path.join(work, "tiles")
    almaty = (43.2380, 76.9450)
    for z in (9, 10, 11):
        x, y = tile_of(*almaty, z)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                os.makedirs(os.path.join(tiles, str(z), str(x + dx)), exist_ok=True)
                with open(os.path.join(tiles, str(z), str(x + dx), f"{y + dy}.png"), "wb") as f:
                    f.write(png(TILE_COLOURS[dx + 1]))
    x11, y11 = tile_of(*almaty, 11)
    with open(os.path.join(tiles, "11", str(x11), f"{y11 + 1}.png"), "wb") as f:
        f.write(EVIL_SVG)  # an SVG named as a PNG: never served
    with open(os.path.join(tiles, "attribution.txt"), "w") as f:
        f.write("<b>Test tiles</b> of the organisation\n")
    r = subprocess.run([dala, "desk", "serve", "--key", org_key, "--data", data, "--tiles",
                        os.path.join(work, "no-such-dir")], capture_output=True, text=True, env=harness.ENV, timeout=60)
    check("serve --tiles with no such directory exits non-zero, saying so", r.returncode != 0 and "tile" in r.stderr,
          (r.returncode, r.stderr))
    tiled = Desk(dala, org_key, data, "--tiles", tiles)
    try:
        r, _ = tiled.request("GET", f"/tiles/10/{tile_of(*almaty, 10)[0]}/{tile_of(*almaty, 10)[1]}")
        check("tiles: without a session, a tile is refused (401)", r.status == 401, r.status)
        tiled.login()
        r, page = tiled.request("GET", "/overview")
        images = re.findall(rb'<image href="tiles/(\d+)/(\d+)/(\d+)"', page)
        check("tiles: the overview map is drawn on the organisation's tiles", r.status == 200 and len(images) > 0,
              page[:200])
        check("tiles: only tiles the directory holds as images are named (not the SVG named as one)",
              all(os.path.exists(os.path.join(tiles, z.decode(), x.decode(), y.decode() + ".png")) for z, x, y in images)
              and (b"11", str(x11).encode(), str(y11 + 1).encode()) not in images, images)
        check("tiles: the attribution is shown, escaped", b"&lt;b&gt;Test tiles&lt;/b&gt;" in page and
              b"<b>Test tiles" not in page)
        z, x, y = (v.decode() for v in images[0])
        r, body = tiled.request("GET", f"/tiles/{z}/{x}/{y}")
        check("tiles: a tile is served from the desk as a PNG, not to be sniffed",
              r.status == 200 and r.getheader("Content-Type") == "image/png" and body.startswith(b"\x89PNG") and
              r.getheader("X-Content-Type-Options") == "nosniff", (r.status, r.getheader("Content-Type")))
        r, body = tiled.request("GET", f"/tiles/11/{x11}/{y11 + 1}")
        check("tiles: an SVG named as a tile is not served", r.status == 404 and b"onload" not in body, r.status)
        for bad in ("/tiles/10/../../attribution.txt", "/tiles/99/0/0", "/tiles/10/x/1", "/tiles/1/5/0", "/tiles/10"):
            r, _ = tiled.request("GET", bad)
            check(f"tiles: {bad} is not served", r.status == 404, r.status)
        r, page = tiled.request("GET", "/reports?q=" + urllib.parse.quote("Video filmed"))
        m = re.search(rb'href="report/(\d+)"', page)
        r, page = tiled.request("GET", f"/report/{m.group(1).decode() if m else 0}")
        check("tiles: a report's map is drawn on the tiles too", b'<image href="tiles/' in page)
    finally:
        tiled.stop()


def custody_checks(entries, root):
    """Problems with a custody log (JSON Lines entries), checked as docs/desk.md says, with Python's own
    BLAKE2b and Ed25519."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    key = Ed25519PublicKey.from_public_bytes(root)
    prev = bytes(32)
    for i, e in enumerate(entries):
        field = lambda s: struct.pack(">I", len(s.encode())) + s.encode()  # noqa: E731
        msg = prev + struct.pack(">Q", e["seq"]) + struct.pack(">q", e["time_ms"]) + field(e["action"]) + \
            field(e["report"]) + field(e["detail"])
        h = hashlib.blake2b(msg, digest_size=32).digest()
        if e["seq"] != i + 1 or bytes.fromhex(e["prev"]) != prev or bytes.fromhex(e["hash"]) != h:
            return f"entry {i + 1} does not link or hash"
        try:
            key.verify(bytes.fromhex(e["signature"]), b"dala/v2/custody\x00" + h)
        except Exception:  # noqa: BLE001
            return f"entry {i + 1}: the signature does not verify"
        prev = h
    return ""


def root_key(identity):
    """The root public key in an organisation identity (DALA-ORG1-<base64url of key || check>)."""
    raw = identity[len("DALA-ORG1-"):]
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))[:32]


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    shots = os.path.join(bin_dir, "..", "desk-screenshots")
    os.makedirs(shots, exist_ok=True)
    work = tempfile.mkdtemp(prefix="dala-desk-web-")
    env = harness.ENV
    desk = None
    try:
        org_key, server = harness.new_server(dala, server_bin, work)
        server.start()
        phone = harness.new_phone(dala, os.path.join(work, "phone"), server.invite())
        svg = os.path.join(work, "evil.svg")
        html = os.path.join(work, "page.html")
        fake_png = os.path.join(work, "fake.png")
        open(svg, "wb").write(EVIL_SVG)
        open(html, "wb").write(EVIL_HTML)
        open(fake_png, "wb").write(EVIL_SVG)
        clip = os.path.join(work, "clip.webm")
        shutil.copy(CLIP, clip)
        add = lambda *a: harness.run(dala, "report", "add", "--store", phone, "--form", "detention/1", *a,  # noqa: E731
                                     "--seal", env=env).stdout.strip().split()[-1]
        add("--field", "place=Almaty", "--field", "where:geo=43.2380,76.9450", "--field",
            "detained:person=Roza Kariyeva|detained", "--text", "Video filmed while running, just before the detentions.",
            "--attach", clip)
        add("--field", "place=\u202eytamlA <b>bold</b>", "--field", "link=javascript:window.__pwned=4",
            "--field", "witness=Задержан у стадиона · شاهد عيان",
            "--text", HOSTILE, "--attach", svg, "--attach", html, "--attach", fake_png)
        long_text = os.path.join(work, "long.txt")
        open(long_text, "w").write("Long account. " + ("word " * 200_000)[:1_000_000])
        add("--field", "place=Astana", "--text-file", long_text)
        for i in range(60):
            add("--field", f"place=Town {i % 7}", "--text", f"Report number {i} about a search of homes")
        harness.run(dala, "sync", "--store", phone, env=env)
        server.stop()
        export = os.path.join(work, "e.export")
        harness.run(server_bin, "export", "--data", server.data, "--out", export)
        data = os.path.join(work, "desk")
        harness.run(dala, "desk", "import", "--key", org_key, "--data", data, "--from", export, env=env)
        identity = server.desk.identity

        desk = Desk(dala, org_key, data)
        check("serve prints a loopback address with a one-time token",
              desk.url.startswith("http://127.0.0.1:") and "/login?token=" in desk.url, desk.url)
        # Nothing without the session.
        for path in ("/reports", "/report/1", "/overview", "/custody", "/static/desk.css", "/media/1/00"):
            r, _ = desk.request("GET", path)
            check(f"without a session, {path} is refused (401)", r.status == 401, r.status)
        r, _ = desk.request("GET", "/login?token=wrong" + "A" * 38)
        check("a wrong token is refused", r.status == 403, r.status)
        r, cookie = desk.login()
        check("the one-time address opens a session (HttpOnly, SameSite=Strict, scoped to the desk's secret path)",
              r.status == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and
              f"Path={desk.base};" in cookie and len(desk.base) > 20, (r.status, cookie, desk.base))
        for path in ("/reports", "/static/desk.css", "/login"):
            r, _ = desk.request("GET", path, raw=True)
            check(f"outside the secret path, {path} does not exist even with the cookie (404)", r.status == 404, r.status)
        kept = desk.cookie
        desk.cookie = ""
        r, _ = desk.login()
        check("the same address a second time (stale token) is refused", r.status == 403, r.status)
        desk.cookie = kept
        r, page = desk.request("GET", "/reports", headers={"Host": f"attacker.example:{desk.port}"})
        check("a request for another host name (DNS rebinding) is refused", r.status == 421, r.status)

        r, page = desk.request("GET", "/reports?per_page=50")
        csp = r.getheader("Content-Security-Policy") or ""
        check("pages carry a strict CSP (no script at all) and nosniff",
              r.status == 200 and "default-src 'none'" in csp and "script-src" not in csp and
              r.getheader("X-Content-Type-Options") == "nosniff", (r.status, csp))
        total = re.search(rb'id="total">(\d+)<', page)
        check("the list counts every report", total and int(total.group(1)) == 63, total and total.group(1))
        r, page = desk.request("GET", "/reports?q=" + urllib.parse.quote("search homes") + "&place=Town+3")
        total = re.search(rb'id="total">(\d+)<', page)
        check("search and a place filter narrow the list", total and int(total.group(1)) == 9,
              total and total.group(1))

        # The hostile report, as HTML.
        r, page = desk.request("GET", "/reports?q=stadium")
        rid = re.search(rb'href="report/(\d+)"', page)
        rid = rid.group(1).decode() if rid else "0"
        r, page = desk.request("GET", f"/report/{rid}")
        text = page.decode("utf-8", "replace")
        check("phone-written markup comes back escaped, never as tags",
              "<script" not in text.lower() and "onerror=" not in text.split("&lt;img")[0] and
              "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text, text[:300])
        check("no javascript: URL becomes a link", not re.search(r'href="\s*javascript:', text, re.I))
        check("right-to-left overrides stay inside isolated text", "<bdi>\u202eytamlA &lt;b&gt;bold&lt;/b&gt;</bdi>" in text)
        media = re.findall(r'"media/\d+/([0-9a-f]{32})\?download=1', text)
        check("the three attachments are listed", len(media) == 3, media)
        types = []
        for att in media:
            r, body = desk.request("GET", f"/media/{rid}/{att}")
            types.append((r.getheader("Content-Type"), (r.getheader("Content-Disposition") or "").split(";")[0],
                          r.getheader("Content-Security-Policy")))
        check("SVG and HTML attachments are served only as downloads of bytes",
              sum(1 for t in types if t[0] == "application/octet-stream" and t[1] == "attachment") == 2, types)
        check("an 'image' that is really SVG is served as its declared passive type, sandboxed, nosniff",
              any(t[0] == "image/png" and "sandbox" in (t[2] or "") for t in types), types)

        # The video: ranges.
        r, page = desk.request("GET", "/reports?q=detentions")
        vrid = re.search(rb'href="report/(\d+)"', page).group(1).decode()
        r, page = desk.request("GET", f"/report/{vrid}")
        vid = re.search(rb'<video controls preload="metadata" src="media/\d+/([0-9a-f]{32})"', page)
        check("a video is shown in the page", vid is not None)
        vid = vid.group(1).decode() if vid else "00"
        clip_bytes = open(CLIP, "rb").read()
        r, body = desk.request("GET", f"/media/{vrid}/{vid}", headers={"Range": "bytes=30000-30999"})
        check("a range is served exactly (206, decrypted on the fly)", r.status == 206 and body == clip_bytes[30000:31000] and
              r.getheader("Content-Range") == f"bytes 30000-30999/{len(clip_bytes)}", (r.status, len(body)))
        r, body = desk.request("GET", f"/media/{vrid}/{vid}", headers={"Range": "bytes=-500"})
        check("a suffix range is the file's end", r.status == 206 and body == clip_bytes[-500:], r.status)
        r, body = desk.request("GET", f"/media/{vrid}/{vid}", headers={"Range": f"bytes={len(clip_bytes)}-"})
        check("a range past the end is 416 with the size", r.status == 416 and
              r.getheader("Content-Range") == f"bytes */{len(clip_bytes)}", (r.status, r.getheader("Content-Range")))
        r, body = desk.request("GET", f"/media/{vrid}/{vid}")
        check("the whole video without a range is its exact bytes", r.status == 200 and body == clip_bytes, r.status)

        # CSRF.
        r, page = desk.request("GET", f"/report/{vrid}")
        token = desk.csrf(page)
        r, _ = desk.request("POST", f"/report/{vrid}/case", {"status": "escalated", "tags": "x"})
        check("a change without the CSRF token is refused (403)", r.status == 403, r.status)
        r, _ = desk.request("POST", f"/report/{vrid}/case", {"status": "escalated", "tags": "x", "csrf": token},
                            headers={"Origin": "http://evil.example"})
        check("a change from another Origin is refused (403)", r.status == 403, r.status)
        r, _ = desk.request("POST", f"/report/{vrid}/case", {"status": "escalated", "tags": "x", "csrf": "A" * len(token)})
        check("a change with a wrong CSRF token is refused (403)", r.status == 403, r.status)
        r, page = desk.request("GET", f"/report/{vrid}")
        check("  and nothing changed", b'id="case-status">new<' in page)
        r, _ = desk.request("POST", f"/report/{vrid}/case", {"status": "in review", "tags": "video almaty",
                                                              "csrf": token}, headers={"Origin": desk.origin})
        r2, page = desk.request("GET", f"/report/{vrid}")
        check("a change from the desk's own page is made", r.status == 303 and b'id="case-status">in review<' in page,
              r.status)

        # The custody log: views, media, the change; checked independently.
        r, body = desk.request("POST", "/custody/export", {"csrf": token}, headers={"Origin": desk.origin})
        entries = [json.loads(line) for line in body.decode().splitlines()]
        actions = [e["action"] for e in entries]
        check("the custody log holds the import, the login, views, media, the status change",
              all(a in actions for a in ("import", "login", "view", "media", "status")), actions)
        root = root_key(identity)
        problem = custody_checks(entries, root)
        check("the custody log checks out with an independent BLAKE2b and Ed25519", problem == "", problem)
        forged = [dict(e) for e in entries]
        forged[2]["detail"] = "nothing happened"
        check("  and a changed entry does not", custody_checks(forged, root) != "")
        dropped = entries[:3] + entries[4:]
        check("  nor a removed one", custody_checks(dropped, root) != "")

        # Export of the selection.
        r, body = desk.request("POST", "/export", {"csrf": token, "format": "csv", "place": "Town 3"},
                               headers={"Origin": desk.origin})
        check("CSV of the filtered selection downloads", r.status == 200 and
              (r.getheader("Content-Disposition") or "").startswith("attachment") and
              body.startswith(b"\xef\xbb\xbf") and body.count(b"\r\n") == 1 + 9, (r.status, body[:200]))

        # Connections that send nothing hold no thread for long: 32 of them (every worker), and the desk
        # answers again once the reaper has shut them (20 s without a request).
        import socket

        def dropped(sock):
            """Whether the desk has closed sock (without waiting)."""
            sock.setblocking(False)
            try:
                return sock.recv(1) == b""
            except BlockingIOError:
                return False
            except OSError:
                return True
            finally:
                sock.setblocking(True)

        # The desk refuses (closes at once) a connection beyond its 32: one of ours is refused while a
        # connection of an earlier request is still ending, so refused ones are opened again, until the
        # desk holds 32 of ours (bounded).
        idle = [socket.create_connection((desk.host, desk.port), timeout=5) for _ in range(32)]
        for _ in range(20):
            time.sleep(0.25)
            refused = [i for i, sock in enumerate(idle) if dropped(sock)]
            if not refused:
                break
            for i in refused:
                idle[i].close()
                idle[i] = socket.create_connection((desk.host, desk.port), timeout=5)
        start = time.time()
        answered = None
        while time.time() - start < 40:
            try:
                r, _ = desk.request("GET", "/reports")
                if r.status == 200:
                    answered = time.time() - start
                    break
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(1)
        closed = 0
        for sock in idle:  # shut by the desk: end of stream or a reset (a timeout is not)
            try:
                sock.settimeout(2)
                closed += sock.recv(1) == b""
            except ConnectionError:
                closed += 1
            except OSError:
                pass
            sock.close()
        check("32 idle connections are shut after 20 s and the desk answers again",
              answered is not None and answered >= 15 and closed == 32, (answered, closed))

        tile_checks(dala, org_key, data, work)
        pdf_checks(dala, org_key, data, work, identity)
        run_browser(desk, shots, work, vrid, rid, dala, identity)
    finally:
        if desk is not None:
            desk.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(FAILED)} failed" if FAILED else "all passed")
    return 1 if FAILED else 0


def run_browser(desk, shots, work, vrid, hostile_rid, dala, identity):
    import browser
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def click_and_wait(element):
        """Clicks something that loads a new page, and waits (bounded) until it has."""
        page = driver.find_element(By.TAG_NAME, "html")
        element.click()
        WebDriverWait(driver, 20).until(expected_conditions.staleness_of(page))
    # A new session for the browser: the first one-time address was used by the HTTP checks above, so
    # serve again and take its address.
    desk.stop()
    key, data = desk.proc.args[4], desk.proc.args[6]
    fresh = Desk(desk.proc.args[0], key, data)
    desk.proc = fresh.proc
    downloads = os.path.join(work, "downloads")
    os.makedirs(downloads)
    driver = browser.start(download_dir=downloads)
    try:
        driver.get(fresh.url)
        check("browser: the one-time address logs in and shows the reports",
              driver.current_url.endswith("/reports") and "Reports" in driver.title, driver.current_url)
        browser.screenshot(driver, os.path.join(shots, "reports.png"))
        box = driver.find_element(By.NAME, "q")
        box.send_keys("detentions")
        Select(driver.find_element(By.NAME, "form")).select_by_value("detention/1")
        click_and_wait(driver.find_element(By.CSS_SELECTOR, "form.filters button"))
        check("browser: search and filter", driver.find_element(By.ID, "total").text == "1",
              driver.find_element(By.ID, "total").text)
        click_and_wait(driver.find_element(By.CSS_SELECTOR, "table.reports a"))
        panel = driver.find_element(By.ID, "verification").text
        check("browser: the verification panel says who signed, the enrolment, the receipt and the log",
              "Signed by device" in panel and "enrolled" in panel and "Receipt signed by server key" in panel and
              "append-only log" in panel, panel[:400])
        # Play and seek: the browser fetches ranges, decrypted on the fly.
        video = driver.find_element(By.TAG_NAME, "video")
        driver.execute_script("arguments[0].muted = true; arguments[0].play();", video)
        deadline = time.time() + 20
        while time.time() < deadline and driver.execute_script("return arguments[0].currentTime", video) < 0.5:
            time.sleep(0.1)
        played = driver.execute_script("return arguments[0].currentTime", video)
        check("browser: the video plays", played >= 0.5, played)
        driver.execute_script("arguments[0].pause(); arguments[0].currentTime = 4.2;", video)
        deadline = time.time() + 20
        while time.time() < deadline and driver.execute_script("return arguments[0].seeking || arguments[0].readyState < 2",
                                                               video):
            time.sleep(0.1)
        at = driver.execute_script("return arguments[0].currentTime", video)
        err = driver.execute_script("return arguments[0].error && arguments[0].error.code", video)
        check("browser: seeking in the video lands where asked", abs(at - 4.2) < 0.6 and not err, (at, err))
        browser.screenshot(driver, os.path.join(shots, "report.png"))
        # Case work.
        Select(driver.find_element(By.NAME, "status")).select_by_value("escalated")
        click_and_wait(driver.find_element(By.CSS_SELECTOR, "#case-form button"))
        driver.find_element(By.NAME, "note").send_keys("Called the family; confirmed the time.")
        click_and_wait(driver.find_element(By.CSS_SELECTOR, "#note-form button"))
        check("browser: a status and a note are saved", driver.find_element(By.ID, "case-status").text == "escalated" and
              "Called the family" in driver.find_element(By.ID, "notes").text)
        # An evidence package of this report, checked with dala verify and the identity alone.
        driver.find_element(By.CSS_SELECTOR, "#evidence-form button").click()
        package = browser.wait_for_file(downloads, ".zip")
        verified = subprocess.run([dala, "verify", package or "/nonexistent", "--organisation", identity],
                                  capture_output=True, text=True, timeout=120)
        check("browser: an evidence package downloads and dala verify accepts it with the identity alone",
              package is not None and verified.returncode == 0 and "verified" in verified.stdout,
              (package, verified.returncode, verified.stdout[-500:], verified.stderr))
        # Export CSV from the list.
        driver.get(fresh.origin + fresh.base + "reports?place=Town+3")
        driver.find_element(By.CSS_SELECTOR, "form.export button[value=csv]").click()
        got = browser.wait_for_file(downloads, ".csv")
        check("browser: CSV export downloads", got is not None and open(got, "rb").read().count(b"\r\n") == 10, got)
        # Hostile content: nothing runs, the page holds.
        driver.get(f"{fresh.origin}{fresh.base}report/{hostile_rid}")
        time.sleep(0.5)
        pwned = driver.execute_script("return window.__pwned === undefined ? null : window.__pwned")
        check("browser: hostile narrative and fields never execute", pwned is None, pwned)
        check("browser: the hostile report's page still shows its panels",
              driver.find_element(By.ID, "verification").is_displayed() and
              "window.__pwned=1" in driver.find_element(By.ID, "narrative").text)
        for link in [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "figcaption a")]:
            driver.get(link.replace("?download=1", ""))
            time.sleep(0.3)
            pwned = driver.execute_script("return window.__pwned === undefined ? null : window.__pwned")
            check("browser: opening an attachment directly runs nothing", pwned is None, (link, pwned))
        browser.screenshot(driver, os.path.join(shots, "hostile.png"))
        driver.get(fresh.origin + fresh.base + "reports?q=Long+account")
        click_and_wait(driver.find_element(By.CSS_SELECTOR, "table.reports a"))
        check("browser: a 1 MB narrative keeps the page usable (the narrative scrolls in its box)",
              driver.find_element(By.ID, "narrative").size["height"] < 1000 and
              driver.find_element(By.ID, "verification").is_displayed())
        driver.get(fresh.origin + fresh.base + "overview")
        browser.screenshot(driver, os.path.join(shots, "overview.png"))
        check("browser: overview draws its charts and map", len(driver.find_elements(By.CSS_SELECTOR, "svg")) >= 3)
        untiled = colour_count(driver.find_element(By.CSS_SELECTOR, "svg.map").screenshot_as_png, TILE_COLOURS)
        errors = [e for e in browser.console_errors(driver) if "favicon" not in e.get("message", "")]
        check("browser: no console errors (no CSP violation, no failed load)", not errors, errors)
        # The organisation's own tiles (tile_checks made them): the browser draws them under the map's points,
        # under the desk's Content-Security-Policy.
        tiled = Desk(desk.proc.args[0], key, data, "--tiles", os.path.join(work, "tiles"))
        try:
            driver.get(tiled.url)
            driver.get(tiled.origin + tiled.base + "overview")
            deadline = time.time() + 20
            loaded = 0
            while time.time() < deadline:
                loaded = driver.execute_script(
                    "return performance.getEntriesByType('resource').filter(e => e.name.includes('/tiles/') && "
                    "e.decodedBodySize > 0).length")
                if loaded >= len(driver.find_elements(By.CSS_SELECTOR, "svg.map image")) > 0:
                    break
                time.sleep(0.2)
            time.sleep(0.3)
            tiled_shot = driver.find_element(By.CSS_SELECTOR, "svg.map").screenshot_as_png
            with open(os.path.join(shots, "overview-tiles.png"), "wb") as f:
                f.write(tiled_shot)
            drawn = colour_count(tiled_shot, TILE_COLOURS)
            errors = [e for e in browser.console_errors(driver) if "favicon" not in e.get("message", "")]
            check("browser: the overview map is drawn on the organisation's tiles (their colours fill the map in a "
                  "screenshot, and none without --tiles), with no console error",
                  loaded > 0 and drawn > 20000 and untiled == 0 and not errors, (loaded, drawn, untiled, errors))
        finally:
            tiled.stop()
    finally:
        driver.quit()
        fresh.stop()


if __name__ == "__main__":
    sys.exit(main())
