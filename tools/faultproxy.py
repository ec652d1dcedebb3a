#!/usr/bin/env python3
"""A loopback TCP proxy that injects network faults: the demo uses it to show an upload resuming after the
network drops, the media end-to-end test and the upload benchmark to cut uploads, the network chaos test to
give every connection a random fault plan. It listens on 127.0.0.1 only and forwards to 127.0.0.1.

  faultproxy.py cut LISTEN_PORT TARGET_PORT [CUT_AFTER_BYTES...]
    Each CUT_AFTER_BYTES is counted in bytes sent from the client since the previous cut (across
    connections); when it is reached the proxy ends that connection: the server side after the bytes
    forwarded so far, the client side with a reset. Prints (on stderr) one line per cut and, on SIGTERM, the
    total bytes it forwarded to the target.

  faultproxy.py chaos LISTEN_PORT TARGET_PORT SEED [--clean-share P]
    Per connection, drawn from SEED and the connection's number (so a run can be replayed):
      clean      forwarded as is (a share P of the connections, 0.2 unless told)
      cut        at a random byte offset in one direction: the peer gets a reset (RST) or an end of stream (FIN)
      stall      at a random offset in one direction, nothing is forwarded for 0.3-4 s (or never: a black hole)
      throttle   both directions limited to 8-256 KiB/s
      latency    20-250 ms added before each piece forwarded
      flip       one byte at a random offset in one direction is XORed with a non-zero mask
    SIGUSR1 makes every later connection clean (the network heals); SIGTERM prints the faults applied, as
    one JSON line on stdout, and exits.

Both print "faultproxy: listening" once they accept connections (cut on stderr, chaos on stdout).
As a module: Proxy(mode, listen_port, target_port, *args) runs it as a separate process and waits until it
listens; main(argv) runs it in this process.
"""
import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys


class CutFaults:
    """Mode cut: ends a connection after given numbers of bytes sent by the client."""

    def __init__(self, cuts):
        self.cuts = list(cuts)
        self.since_cut = 0
        self.forwarded = 0

    async def pipe(self, reader, writer, upstream, peer_writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if upstream and self.cuts:
                    room = self.cuts[0] - self.since_cut
                    if len(data) >= room:
                        writer.write(data[:room])
                        self.forwarded += room
                        await writer.drain()
                        print(f"faultproxy: cut the connection after {self.cuts[0]} bytes", file=sys.stderr,
                              flush=True)
                        self.cuts.pop(0)
                        self.since_cut = 0
                        # The server gets what was forwarded, then the end of the stream (as when a phone's
                        # link drops after its last packet arrived); the phone's side is reset.
                        writer.close()
                        peer_writer.transport.abort()
                        return
                    self.since_cut += len(data)
                if upstream:
                    self.forwarded += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(self, client_reader, client_writer, target_port):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self.pipe(client_reader, server_writer, True, client_writer),
                             self.pipe(server_reader, client_writer, False, server_writer))

    async def serve(self, listen_port, target_port):
        server = await asyncio.start_server(lambda r, w: self.handle(r, w, target_port), "127.0.0.1", listen_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print("faultproxy: listening", file=sys.stderr, flush=True)
        async with server:
            await stop.wait()
        print(f"faultproxy: forwarded {self.forwarded} bytes to the server", file=sys.stderr, flush=True)


class Cut(Exception):
    pass


class ChaosFaults:
    """Mode chaos: a random fault plan per connection, replayable from the seed."""

    def __init__(self, seed, clean_share=0.2):
        self.seed, self.clean_share = seed, clean_share
        self.connections = 0
        self.healed = False
        self.applied = {}

    def plan_for(self, n):
        rng = random.Random(self.seed * 1_000_003 + n)
        if self.healed or rng.random() < self.clean_share:
            return {"kind": "clean"}
        kind = rng.choice(["cut", "stall", "throttle", "latency", "flip"])
        # Offsets: mostly inside a request's headers or a small body (a few KB), sometimes deep in an upload.
        offset = int(rng.expovariate(1 / 1500)) if rng.random() < 0.75 else rng.randint(0, 1_500_000)
        up = rng.random() < 0.6  # phone -> server
        plan = {"kind": kind, "up": up, "offset": offset}
        if kind == "cut":
            plan["rst"] = rng.random() < 0.5
        elif kind == "stall":
            plan["seconds"] = None if rng.random() < 0.2 else rng.uniform(0.3, 4.0)
        elif kind == "throttle":
            plan["rate"] = rng.randint(8, 256) * 1024
        elif kind == "latency":
            plan["delay"] = rng.uniform(0.02, 0.25)
        elif kind == "flip":
            plan["mask"] = rng.randint(1, 255)
        return plan

    def count(self, kind):
        self.applied[kind] = self.applied.get(kind, 0) + 1

    async def pipe(self, reader, writer, plan, upstream, peer_writer):
        seen = 0
        mine = plan.get("up") == upstream
        try:
            while True:
                data = await reader.read(16384)
                if not data:
                    break
                if plan["kind"] == "latency":
                    await asyncio.sleep(plan["delay"])
                if mine and seen <= plan["offset"] < seen + len(data):
                    at = plan["offset"] - seen
                    kind = plan["kind"]
                    if kind == "flip":
                        data = data[:at] + bytes([data[at] ^ plan["mask"]]) + data[at + 1:]
                        self.count("flip")
                    elif kind == "cut":
                        writer.write(data[:at])
                        await writer.drain()
                        self.count("cut")
                        raise Cut()
                    elif kind == "stall":
                        writer.write(data[:at])
                        await writer.drain()
                        self.count("stall")
                        if plan["seconds"] is None:
                            await asyncio.sleep(3600)  # a black hole: the phone's timeout ends it
                        await asyncio.sleep(plan["seconds"])
                        data = data[at:]
                seen += len(data)
                if plan["kind"] == "throttle":
                    await asyncio.sleep(len(data) / plan["rate"])
                writer.write(data)
                await writer.drain()
            writer.write_eof() if writer.can_write_eof() else None
        except Cut:
            if plan.get("rst"):
                for w in (writer, peer_writer):
                    w.transport.abort()
            else:
                writer.close()
                peer_writer.close()
        except (ConnectionError, OSError, asyncio.CancelledError):
            peer_writer.transport.abort()

    async def handle(self, client_reader, client_writer, target_port):
        n = self.connections
        self.connections += 1
        plan = self.plan_for(n)
        if plan["kind"] in ("throttle", "latency"):
            self.count(plan["kind"])
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.transport.abort()
            return
        tasks = [asyncio.ensure_future(self.pipe(client_reader, server_writer, plan, True, client_writer)),
                 asyncio.ensure_future(self.pipe(server_reader, client_writer, plan, False, server_writer))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.ALL_COMPLETED)
        except asyncio.CancelledError:  # the proxy is stopping
            for t in tasks:
                t.cancel()
        for w in (client_writer, server_writer):
            w.close()

    def heal(self):
        self.healed = True

    async def serve(self, listen_port, target_port):
        server = await asyncio.start_server(lambda r, w: self.handle(r, w, target_port), "127.0.0.1", listen_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.heal)
        print("faultproxy: listening", flush=True)
        async with server:
            await stop.wait()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        print(json.dumps({"connections": self.connections, "faults": self.applied}), flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="faultproxy.py", description="A loopback TCP proxy that injects network "
                                "faults (listens on 127.0.0.1, forwards to 127.0.0.1).")
    modes = p.add_subparsers(dest="mode", required=True, metavar="MODE")
    cut = modes.add_parser("cut", help="cut connections after given numbers of client bytes",
                           description="Each CUT_AFTER_BYTES is counted in bytes sent from the client since the "
                           "previous cut (across connections); when reached, the server side gets the end of the "
                           "stream after the bytes forwarded so far, the client side a reset. Prints one line per "
                           "cut and, on SIGTERM, the bytes forwarded to the target (stderr).")
    cut.add_argument("listen_port", type=int, metavar="LISTEN_PORT")
    cut.add_argument("target_port", type=int, metavar="TARGET_PORT")
    cut.add_argument("cuts", type=int, nargs="*", metavar="CUT_AFTER_BYTES")
    chaos = modes.add_parser("chaos", help="a random fault plan per connection (cut, stall, throttle, latency, "
                             "flip), replayable from SEED",
                             description="Per connection, from SEED and its number: clean, cut (RST or FIN), "
                             "stall (0.3-4 s or a black hole), throttle (8-256 KiB/s), latency (20-250 ms), flip "
                             "(one byte XORed). SIGUSR1 heals the network (later connections clean); SIGTERM "
                             "prints the faults applied as one JSON line (stdout) and exits.")
    chaos.add_argument("listen_port", type=int, metavar="LISTEN_PORT")
    chaos.add_argument("target_port", type=int, metavar="TARGET_PORT")
    chaos.add_argument("seed", type=int, metavar="SEED")
    chaos.add_argument("--clean-share", type=float, default=0.2, metavar="P",
                       help="share of connections forwarded clean (default 0.2)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    faults = CutFaults(args.cuts) if args.mode == "cut" else ChaosFaults(args.seed, args.clean_share)
    asyncio.run(faults.serve(args.listen_port, args.target_port))
    return 0


class Proxy:
    """faultproxy.py as a separate process (its timing apart from the caller's), started and listening:
    Proxy("cut", listen, target, *cuts) or Proxy("chaos", listen, target, seed, "--clean-share", p)."""

    def __init__(self, mode, listen_port, target_port, *args):
        self.mode = mode
        chaos = mode == "chaos"
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), mode, str(listen_port),
                                      str(target_port), *[str(a) for a in args]], text=True,
                                     stdout=subprocess.PIPE if chaos else None,
                                     stderr=None if chaos else subprocess.PIPE)
        self.stream = self.proc.stdout if chaos else self.proc.stderr
        self.stream.readline()  # "faultproxy: listening"

    def heal(self):
        """Mode chaos: every later connection is clean."""
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self, timeout=None):
        """SIGTERM; returns what the proxy printed after "listening" (cut: its cuts and the bytes forwarded;
        chaos: the JSON line). Raises subprocess.TimeoutExpired if it has not exited within timeout."""
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=timeout)
        return out if self.mode == "chaos" else err

    def kill(self):
        self.proc.kill()


if __name__ == "__main__":
    sys.exit(main())
