#!/usr/bin/env python3
"""A loopback TCP proxy that gives each connection a random fault plan (network chaos, issue 6).

Usage: chaosproxy.py LISTEN_PORT TARGET_PORT SEED [--clean-share P]

Per connection, drawn from SEED and the connection's number (so a run can be replayed):
  clean      forwarded as is
  cut        at a random byte offset in one direction: the peer gets a reset (RST) or an end of stream (FIN)
  stall      at a random offset in one direction, nothing is forwarded for 0.3-4 s (or never: a black hole)
  throttle   both directions limited to 8-256 KiB/s
  latency    20-250 ms added before each piece forwarded
  flip       one byte at a random offset in one direction is XORed with a non-zero mask
SIGUSR1 makes every later connection clean (the network heals); SIGTERM prints the faults applied, as one
JSON line on stdout, and exits. Listens on 127.0.0.1 only.
"""
import asyncio
import json
import random
import signal
import sys

listen_port, target_port, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
clean_share = float(sys.argv[sys.argv.index("--clean-share") + 1]) if "--clean-share" in sys.argv else 0.2
state = {"connections": 0, "healed": False}
applied = {}


def plan_for(n):
    rng = random.Random(seed * 1_000_003 + n)
    if state["healed"] or rng.random() < clean_share:
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


class Cut(Exception):
    pass


async def pipe(reader, writer, plan, upstream, peer_writer):
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
                    applied["flip"] = applied.get("flip", 0) + 1
                elif kind == "cut":
                    writer.write(data[:at])
                    await writer.drain()
                    applied["cut"] = applied.get("cut", 0) + 1
                    raise Cut()
                elif kind == "stall":
                    writer.write(data[:at])
                    await writer.drain()
                    applied["stall"] = applied.get("stall", 0) + 1
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


async def handle(client_reader, client_writer):
    n = state["connections"]
    state["connections"] += 1
    plan = plan_for(n)
    if plan["kind"] in ("throttle", "latency"):
        applied[plan["kind"]] = applied.get(plan["kind"], 0) + 1
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.transport.abort()
        return
    tasks = [asyncio.ensure_future(pipe(client_reader, server_writer, plan, True, client_writer)),
             asyncio.ensure_future(pipe(server_reader, client_writer, plan, False, server_writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.ALL_COMPLETED)
    except asyncio.CancelledError:  # the proxy is stopping
        for t in tasks:
            t.cancel()
    for w in (client_writer, server_writer):
        w.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: state.update(healed=True))
    print("chaosproxy: listening", flush=True)
    async with server:
        await stop.wait()
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in rest:
        t.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    print(json.dumps({"connections": state["connections"], "faults": applied}), flush=True)


asyncio.run(main())
