#!/usr/bin/env python3
"""A TCP proxy on loopback that cuts connections: the demo uses it to show an upload resuming after the
network drops. Usage: cutproxy.py LISTEN_PORT TARGET_PORT [CUT_AFTER_BYTES...]

Each CUT_AFTER_BYTES is counted in bytes sent from the client since the previous cut (across connections);
when it is reached the proxy ends that connection: the server side after the bytes forwarded so far, the
client side with a reset. It prints one line per cut and,
on SIGTERM, the total bytes it forwarded to the target. It listens on 127.0.0.1 only.
"""
import asyncio
import signal
import sys

listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
cuts = [int(x) for x in sys.argv[3:]]
state = {"since_cut": 0, "forwarded": 0}


async def pipe(reader, writer, upstream, peer_writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if upstream and cuts:
                room = cuts[0] - state["since_cut"]
                if len(data) >= room:
                    writer.write(data[:room])
                    state["forwarded"] += room
                    await writer.drain()
                    print(f"cutproxy: cut the connection after {cuts[0]} bytes", file=sys.stderr, flush=True)
                    cuts.pop(0)
                    state["since_cut"] = 0
                    # The server gets what was forwarded, then the end of the stream (as when a phone's
                    # link drops after its last packet arrived); the phone's side is reset.
                    writer.close()
                    peer_writer.transport.abort()
                    return
                state["since_cut"] += len(data)
            if upstream:
                state["forwarded"] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, server_writer, True, client_writer),
                         pipe(server_reader, client_writer, False, server_writer))


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("cutproxy: listening", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()
    print(f"cutproxy: forwarded {state['forwarded']} bytes to the server", file=sys.stderr, flush=True)


asyncio.run(main())
