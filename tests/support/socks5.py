"""A SOCKS5 proxy for tests (RFC 1928, no authentication, CONNECT only), on 127.0.0.1, run in a thread.

It resolves names itself from a map it is given (so a phone that reaches a server named
"reports.example.invalid" can only have come through the proxy: nothing else resolves that name), opens
its upstream connections from a source address of its own (127.0.0.2 by default, so that a server that
logs client addresses shows which connections came through it), counts CONNECTs and keeps the bytes that
went each way. Modes for faults: "ok", "refuse" (answers CONNECT with 5, connection refused), "stall"
(never answers the greeting), "close" (closes after the greeting), "not-socks" (answers HTTP)."""
import asyncio
import threading


class Socks5Proxy:
    def __init__(self, names, mode="ok", source="127.0.0.2"):
        self.names, self.mode, self.source = dict(names), mode, source
        self.connects, self.requested = 0, []
        self.upstream_bytes, self.downstream_bytes = bytearray(), bytearray()
        self.port = None
        self._ready = threading.Event()
        self._loop = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("the SOCKS5 proxy did not start")
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self):
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._main())

    async def _main(self):
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    async def _pipe(self, reader, writer, sink):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                sink.extend(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _client(self, reader, writer):
        try:
            head = await reader.readexactly(2)
            await reader.readexactly(head[1])
            if self.mode == "stall":
                await asyncio.sleep(3600)
            if self.mode == "not-socks":
                writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                await writer.drain()
                writer.close()
                return
            writer.write(b"\x05\x00")
            await writer.drain()
            if self.mode == "close":
                writer.close()
                return
            req = await reader.readexactly(4)
            if req[3] == 3:
                n = (await reader.readexactly(1))[0]
                host = (await reader.readexactly(n)).decode()
            elif req[3] == 1:
                host = ".".join(str(b) for b in await reader.readexactly(4))
            else:
                host = (await reader.readexactly(16)).hex()
            port = int.from_bytes(await reader.readexactly(2), "big")
            self.connects += 1
            self.requested.append((req[3], host, port))
            target = self.names.get(host)
            if self.mode == "refuse" or target is None:
                writer.write(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00" if self.mode == "refuse"
                             else b"\x05\x04\x00\x01\x00\x00\x00\x00\x00\x00")
                await writer.drain()
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection(target[0], target[1] if target[1] else port,
                                                                 local_addr=(self.source, 0))
            writer.write(b"\x05\x00\x00\x01\x7f\x00\x00\x01" + (1080).to_bytes(2, "big"))
            await writer.drain()
            await asyncio.gather(self._pipe(reader, up_writer, self.upstream_bytes),
                                 self._pipe(up_reader, writer, self.downstream_bytes))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
