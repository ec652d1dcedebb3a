#!/usr/bin/env python3
"""dala desk invite --qr FILE and --qr-terminal (docs/cli.md): the PNG and the half blocks drawn on stderr
both decode (zbarimg, an independent reader) to the invite printed on stdout, byte for byte, and a phone
joins with what was decoded. The PNG is replaced whole (a new file renamed over the old), mode 0600, with
its quiet zone; the terminal's code is light blocks on dark blanks, quiet zone included, and a terminal too
small to show it whole is said to be. A --qr path that
cannot be written, or a wrong passphrase, exits as docs/cli.md says, prints no invite and leaves no file.

    invite_qr_test.py BIN_DIR
"""
import fcntl
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import termios

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import png_pixels  # noqa: E402
import harness  # noqa: E402

SGR = re.compile(r"\x1b\[[0-9;]*m")
# What each character of the terminal's code shows: (upper module light, lower module light).
HALVES = {"\u2588": (True, True), "\u2580": (True, False), "\u2584": (False, True), " ": (False, False)}


def zbar(path):
    """The text zbarimg reads in the image at path (bytes, its one trailing newline removed), or None."""
    # QR codes only: another symbology (an EAN, a DataBar) can be "found" in a QR code's pattern by chance.
    p = subprocess.run(["zbarimg", "--raw", "-q", "-Sdisable", "-Sqrcode.enable", path], capture_output=True, timeout=60)
    if p.returncode != 0 or not p.stdout.endswith(b"\n"):
        return None
    return p.stdout[:-1]


def png_side(path):
    """The width and height of a PNG, from its IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise AssertionError(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def png_grey(path):
    """The pixels of an 8-bit greyscale PNG, rows of bytes (read by hand: tests/support/png_pixels.py)."""
    with open(path, "rb") as f:
        _, _, bpp, pixels = png_pixels.rows(f.read())
    if bpp != 1:
        raise AssertionError(f"{path} is not greyscale")
    return pixels


def terminal_modules(text):
    """The module grid (True: light) the half blocks of text draw, and the problems seen reading it."""
    problems, grid = [], []
    lines = [line for line in text.split("\n") if line]
    for n, line in enumerate(lines):
        if not (line.startswith("\x1b[97;40m") and line.endswith("\x1b[0m")):
            problems.append(f"line {n} does not set white on black and reset: {line[:12]!r}...{line[-8:]!r}")
        chars = SGR.sub("", line)
        if any(c not in HALVES for c in chars):
            problems.append(f"line {n} holds other characters than half blocks: {set(chars) - set(HALVES)}")
            continue
        grid.append([HALVES[c][0] for c in chars])
        grid.append([HALVES[c][1] for c in chars])
    if len({len(row) for row in grid}) > 1:
        problems.append("the lines have different widths")
    return grid, problems


def write_pgm(grid, path, scale=4):
    """grid (True: light) as a greyscale PGM, scale pixels a module."""
    rows = []
    for row in grid:
        line = b"".join((b"\xff" if light else b"\x00") * scale for light in row)
        rows += [line] * scale
    with open(path, "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (len(grid[0]) * scale, len(grid) * scale) + b"".join(rows))


def on_terminal(cmd, columns, lines, env):
    """Runs cmd with stderr on a pseudo-terminal of columns x lines: (exit code, stdout, what the terminal got)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    shown = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the program closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(master)
    out = proc.stdout.read()
    proc.wait(timeout=60)
    return proc.returncode, out, shown.replace(b"\r\n", b"\n")


def main():
    args = harness.parser(__doc__, seed=False).parse_args()
    dala, server_bin = harness.binaries(args.bin_dir)
    if shutil.which("zbarimg") is None:
        raise SystemExit("zbarimg is missing (zbar-tools; tools/dev deps installs it)")
    problems = []

    def check(ok, what):
        if not ok:
            problems.append(what)

    with tempfile.TemporaryDirectory(prefix="dala-qr-") as work:
        key, server = harness.new_server(dala, server_bin, work)
        out = os.path.join(work, "out")
        os.mkdir(out)

        def invite(*extra, env=None):
            return subprocess.run([dala, "desk", "invite", "--key", key, "--server-key", server.key,
                                   "--url", f"http://127.0.0.1:{server.port}", *extra],
                                  env=env or harness.ENV, capture_output=True, timeout=60)

        # 1. The PNG and the terminal's code, made with the invite.
        png = os.path.join(out, "invite.png")
        p = invite("--qr", png, "--qr-terminal")
        check(p.returncode == 0, f"invite --qr --qr-terminal exited {p.returncode}: {p.stderr[-300:]!r}")
        text = p.stdout[:-1] if p.stdout.endswith(b"\n") else p.stdout
        check(re.fullmatch(rb"DALA2-[A-Za-z0-9_-]+", text) is not None, f"stdout is not the invite alone: {p.stdout!r}")
        check(os.listdir(out) == ["invite.png"], f"left beside the PNG: {os.listdir(out)}")
        if os.path.exists(png):
            mode = stat.S_IMODE(os.stat(png).st_mode)
            check(mode == 0o600, f"the PNG's mode is {oct(mode)}, not 0o600 (it holds the enrolment secret)")
            width, height = png_side(png)
            modules = width // 8
            # 8 pixels a module, and a version's 17 + 4v modules plus a quiet zone of 4 on each side.
            check(width == height and width % 8 == 0 and (modules - 8 - 17) % 4 == 0 and modules - 8 <= 177,
                  f"the PNG is {width}x{height}: not 8 px modules of a QR code with its quiet zone")
            # Each module 8x8 pixels of black or white, and the 4 modules around the code white.
            pixels = png_grey(png)
            png_grid = [[pixels[y * 8][x * 8] == 255 for x in range(modules)] for y in range(modules)]
            check(all(pixels[y][x] in (0, 255) and pixels[y][x] == pixels[y - y % 8][x - x % 8]
                      for y in range(height) for x in range(width)), "the PNG's modules are not 8x8 black or white")
            check(all(png_grid[y][x] for y in range(modules) for x in range(modules)
                      if min(x, y, modules - 1 - x, modules - 1 - y) < 4), "the PNG has no quiet zone of 4 modules")
            decoded = zbar(png)
            check(decoded == text, f"zbarimg read {decoded!r} in the PNG, not the invite {text!r}")
        else:
            problems.append("no PNG written")
            decoded, modules, png_grid = None, 0, []

        # The terminal's code: light blocks (the foreground), with 4 modules of quiet zone, decodes too.
        grid, bad = terminal_modules(p.stderr.decode("utf-8", "replace"))
        problems += bad
        if grid and not bad:
            side = len(grid[0])
            check(side == modules and grid[:side] == png_grid, "the terminal's code is not the PNG's")
            quiet = [grid[y][x] for y in range(side) for x in range(side) if min(x, y, side - 1 - x, side - 1 - y) < 4]
            check(all(quiet), "the terminal's code has no light quiet zone of 4 modules")
            check(len(grid) in (side, side + 1), f"the terminal's code is {len(grid)} modules high, {side} wide")
            write_pgm(grid, os.path.join(work, "terminal.pgm"))
            from_terminal = zbar(os.path.join(work, "terminal.pgm"))
            check(from_terminal == text, f"zbarimg read {from_terminal!r} in the terminal's code, not the invite")
        elif not grid:
            problems.append(f"no QR code on stderr: {p.stderr[-300:]!r}")

        # 2. A phone joins with the text read from the PNG.
        phone = os.path.join(work, "phone")
        harness.run(dala, "init", "--store", phone, *harness.KDF)
        j = subprocess.run([dala, "join", "--store", phone, "--invite-file", "-", "--json"],
                           input=(decoded or b"") + b"\n", env=harness.ENV, capture_output=True, timeout=60)
        check(j.returncode == 0, f"join with the decoded invite exited {j.returncode}: {j.stderr[-300:]!r}")
        if j.returncode == 0:
            check(json.loads(j.stdout)["server_key"] == server.key, f"the phone joined another server: {j.stdout!r}")

        # 3. --qr over an existing file: a new file takes its name (renamed, never rewritten in place).
        with open(png, "wb") as f:
            f.write(b"an older invite")
        before = os.stat(png).st_ino
        p = invite("--qr", png)
        again = p.stdout.rstrip(b"\n")
        check(p.returncode == 0 and zbar(png) == again and again != text,
              f"--qr over an existing file: exit {p.returncode}, the PNG does not hold the new invite")
        check(os.stat(png).st_ino != before, "--qr rewrote the existing file in place")
        check(b"\x1b[" not in p.stderr, "without --qr-terminal, a QR code was drawn on stderr")

        # 4. Paths that cannot be written (exit 2, docs/cli.md), and a wrong passphrase (exit 3): no invite
        # printed, no file left, not even a temporary one.
        missing = os.path.join(work, "no-such-dir", "invite.png")
        p = invite("--qr", missing, "--qr-terminal")
        check(p.returncode == 2, f"--qr in a missing directory exited {p.returncode}")
        check(b"cannot write the QR code" in p.stderr and missing.encode() in p.stderr,
              f"--qr in a missing directory is not explained: {p.stderr!r}")
        check(p.stdout == b"", f"--qr in a missing directory printed {p.stdout!r}")
        check(not os.path.exists(os.path.dirname(missing)), "--qr made the missing directory")
        listing, work_listing = sorted(os.listdir(out)), sorted(os.listdir(work))
        p = invite("--qr", out)  # a directory
        check(p.returncode == 2 and b"cannot write the QR code" in p.stderr,
              f"--qr DIRECTORY exited {p.returncode}: {p.stderr!r}")
        check(p.stdout == b"", f"--qr DIRECTORY printed {p.stdout!r}")
        check(sorted(os.listdir(out)) == listing and sorted(os.listdir(work)) == work_listing,
              f"--qr DIRECTORY left files: {os.listdir(out)} {os.listdir(work)}")
        p = invite("--qr", os.path.join(out, "wrong.png"), env=dict(harness.ENV, DALA_PASSPHRASE="wrong"))
        check(p.returncode == 3 and p.stdout == b"", f"--qr with a wrong passphrase exited {p.returncode}")
        check(sorted(os.listdir(out)) == listing, f"--qr with a wrong passphrase left files: {os.listdir(out)}")

        # 5. On a terminal too small for the code, the operator is told; on one large enough, not, and the
        # code as the terminal got it decodes.
        cmd = [dala, "desk", "invite", "--key", key, "--server-key", server.key,
               "--url", f"http://127.0.0.1:{server.port}", "--qr-terminal"]
        rc, _, shown = on_terminal(cmd, 80, 24, harness.ENV)
        check(rc == 0 and b"the QR code needs" in shown,
              f"on an 80x24 terminal (exit {rc}) nobody is told the code does not fit: {shown[-200:]!r}")
        rc, printed, shown = on_terminal(cmd, 200, 100, harness.ENV)
        check(rc == 0 and b"the QR code needs" not in shown, f"on a 200x100 terminal (exit {rc}): {shown[-200:]!r}")
        grid, bad = terminal_modules(shown.decode("utf-8", "replace"))
        if grid and not bad:
            write_pgm(grid, os.path.join(work, "pty.pgm"))
            check(zbar(os.path.join(work, "pty.pgm")) == printed.rstrip(b"\n"),
                  "the code on a terminal does not decode")
        else:
            problems.append(f"the code on a terminal is not half blocks: {bad}")

    for what in problems:
        print("FAIL:", what)
    if problems:
        sys.exit(1)
    print(f"ok: the invite's PNG ({modules} modules with the quiet zone) and its terminal code decode to it; "
          "a phone joined with it")


if __name__ == "__main__":
    main()
