import CDala
import Foundation

/// Where a sync run stands, after each request.
public struct SyncProgress: Sendable, Equatable {
    public let destination: String
    public let delivered: UInt64
    public let rejected: UInt64
    public let remaining: UInt64
    public let uploadDone: UInt64   // attachment bytes the server holds, of the reports uploading
    public let uploadTotal: UInt64
}

public struct SyncResult: Sendable, Equatable {
    public let delivered: UInt64
    public let rejected: UInt64
    public let remaining: UInt64
    public let unreachable: Bool
}

/// The app's own HTTP stack instead of the built-in one (URLSession, or a background session on iOS).
/// Called on the sync's thread; throw when the server cannot be reached, return any HTTP answer (even 5xx).
public protocol DalaTransport: Sendable {
    /// POST `body` (Content-Type application/x-protobuf) to `url`. `tlsPin`, when not empty, is the SHA-256
    /// of the server certificate's SubjectPublicKeyInfo that the invite pins.
    func post(url: String, body: Data, timeoutMilliseconds: Int64, tlsPin: Data) throws -> (status: Int, body: Data)
    /// POST bytes [offset, offset + length) of the file at `filePath`, as they are, with the headers
    /// "Authorization: requestHeader" and "Content-Type: application/octet-stream".
    func upload(url: String, requestHeader: String, filePath: String, offset: UInt64, length: UInt64,
                timeoutMilliseconds: Int64, tlsPin: Data) throws -> (status: Int, body: Data)
}

/// The app's own HTTP stack written with Swift concurrency (URLSession's `upload(for:from:)`, say): the same
/// two calls as `DalaTransport`, async. The sync's thread (never a thread of the cooperative pool) waits for
/// each answer. Cancelling the sync, or `SyncSession.cancel()`, cancels the call in flight: its task is
/// cancelled, so URLSession's async calls end at once with `CancellationError` or `URLError(.cancelled)`.
public protocol DalaAsyncTransport: Sendable {
    func post(url: String, body: Data, timeoutMilliseconds: Int64, tlsPin: Data) async throws
        -> (status: Int, body: Data)
    func upload(url: String, requestHeader: String, filePath: String, offset: UInt64, length: UInt64,
                timeoutMilliseconds: Int64, tlsPin: Data) async throws -> (status: Int, body: Data)
}

/// A `DalaAsyncTransport` as the sync's thread calls it: each call runs as a detached task and the thread
/// waits for it. `cancel` cancels the task in flight; `sticky`, every later one too (a one-shot sync that
/// was cancelled), else only that one (a session, which runs again later).
final class AsyncTransportBridge: DalaTransport, @unchecked Sendable {
    private let inner: any DalaAsyncTransport
    private let lock = NSLock()
    private var inFlight: Task<Void, Never>?
    private var cancelled = false

    init(_ inner: any DalaAsyncTransport) { self.inner = inner }

    func post(url: String, body: Data, timeoutMilliseconds: Int64, tlsPin: Data) throws -> (status: Int, body: Data) {
        let inner = self.inner
        return try wait(timeoutMilliseconds) {
            try await inner.post(url: url, body: body, timeoutMilliseconds: timeoutMilliseconds, tlsPin: tlsPin)
        }
    }

    func upload(url: String, requestHeader: String, filePath: String, offset: UInt64, length: UInt64,
                timeoutMilliseconds: Int64, tlsPin: Data) throws -> (status: Int, body: Data) {
        let inner = self.inner
        return try wait(timeoutMilliseconds) {
            try await inner.upload(url: url, requestHeader: requestHeader, filePath: filePath, offset: offset,
                                   length: length, timeoutMilliseconds: timeoutMilliseconds, tlsPin: tlsPin)
        }
    }

    func cancel(sticky: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if sticky { cancelled = true }
        inFlight?.cancel()
    }

    /// Runs `call` as a detached task and waits for it, at most the call's timeout and 5 s more: a transport
    /// that ignores cancellation, or needs a thread that is waiting on this one (a main-actor transport while
    /// the main thread stops the session), cannot hold the sync for ever. Past that the call is cancelled and
    /// counts as "unreachable".
    private func wait(_ timeoutMilliseconds: Int64,
                      _ call: @escaping @Sendable () async throws -> (status: Int, body: Data)) throws
        -> (status: Int, body: Data) {
        let done = DispatchSemaphore(value: 0)
        let box = TaskResult<(status: Int, body: Data)>()
        // Made and registered under the lock: a cancel that comes meanwhile waits for it, then reaches it.
        lock.lock()
        let task = Task.detached {
            do {
                box.value = .success(try await call())
            } catch {
                box.value = .failure(error)
            }
            done.signal()
        }
        inFlight = task
        if cancelled { task.cancel() }
        lock.unlock()
        let limit = DispatchTime.now() + .milliseconds(Int(max(0, min(timeoutMilliseconds, 86_400_000)))) + .seconds(5)
        let ended = done.wait(timeout: limit) == .success
        lock.lock()
        inFlight = nil
        lock.unlock()
        guard ended else {
            task.cancel()
            throw CancellationError()
        }
        return try box.value!.get()
    }
}

private final class TaskResult<T>: @unchecked Sendable {
    var value: Result<T, Error>?
}

/// What `Store.syncUpdates` yields.
public enum SyncUpdate: Sendable, Equatable {
    case progress(SyncProgress)
    case finished(SyncResult)
}

/// What the C callbacks reach through their context pointer.
private final class CallbackBox {
    let progress: (@Sendable (SyncProgress) -> Void)?
    let transport: DalaTransport?
    init(_ progress: (@Sendable (SyncProgress) -> Void)?, _ transport: DalaTransport?) {
        self.progress = progress
        self.transport = transport
    }
}

private func answer(_ r: (status: Int, body: Data), _ response: OpaquePointer?) {
    r.body.withUnsafeBytes { raw in
        dala_http_response_set(response, Int32(r.status), raw.bindMemory(to: UInt8.self).baseAddress, raw.count)
    }
}

private func box(_ ctx: UnsafeMutableRawPointer?) -> CallbackBox? {
    ctx.map { Unmanaged<CallbackBox>.fromOpaque($0).takeUnretainedValue() }
}

/// Fills the options' callbacks from the box (which must outlive the run or the session).
private func wire(_ o: inout dala_sync_options, _ b: CallbackBox) {
    let ctx = Unmanaged.passUnretained(b).toOpaque()
    if b.progress != nil {
        o.progress_context = ctx
        o.progress = { ctx, p in
            guard let b = box(ctx), let p, let progress = b.progress else { return }
            progress(SyncProgress(destination: String(cString: p.pointee.destination), delivered: p.pointee.delivered,
                                  rejected: p.pointee.rejected, remaining: p.pointee.remaining,
                                  uploadDone: p.pointee.upload_done, uploadTotal: p.pointee.upload_total))
        }
    }
    if b.transport != nil {
        o.transport_context = ctx
        o.transport = { ctx, url, body, size, timeout, pin, pinSize, response in
            guard let t = box(ctx)?.transport, let url else { return DALA_ERR_IO }
            let data = body.map { Data(bytes: $0, count: size) } ?? Data()
            let pinData = pin.map { Data(bytes: $0, count: pinSize) } ?? Data()
            guard let r = try? t.post(url: String(cString: url), body: data, timeoutMilliseconds: timeout, tlsPin: pinData)
            else { return DALA_ERR_IO }
            answer(r, response)
            return DALA_OK
        }
        o.transport_upload = { ctx, url, header, file, offset, length, timeout, pin, pinSize, response in
            guard let t = box(ctx)?.transport, let url, let header, let file else { return DALA_ERR_IO }
            let pinData = pin.map { Data(bytes: $0, count: pinSize) } ?? Data()
            guard let r = try? t.upload(url: String(cString: url), requestHeader: String(cString: header),
                                        filePath: String(cString: file), offset: offset, length: length,
                                        timeoutMilliseconds: timeout, tlsPin: pinData)
            else { return DALA_ERR_IO }
            answer(r, response)
            return DALA_OK
        }
    }
}

/// Background delivery: a thread of the library's own syncs at start, on `notifyOnline()`, and when the
/// earliest retry falls due; `progress` and the transport are called there. `stop()` (or deinit) ends it;
/// stop sessions before closing their store.
public final class SyncSession: @unchecked Sendable {
    private let lock = NSLock()
    private var handle: OpaquePointer?
    private let callbacks: CallbackBox
    private let store: Store
    private let bridge: AsyncTransportBridge?

    fileprivate init(store: Store, handle: OpaquePointer, callbacks: CallbackBox, bridge: AsyncTransportBridge?) {
        self.store = store
        self.handle = handle
        self.callbacks = callbacks
        self.bridge = bridge
    }

    deinit { stop() }

    /// Connectivity is back (or the user asked to sync now): run at once.
    public func notifyOnline() {
        lock.lock()
        defer { lock.unlock() }
        if let h = handle { dala_sync_session_notify_online(h) }
    }

    /// Stops a run in progress promptly (an async transport's call in flight is cancelled); the session
    /// syncs again later.
    public func cancel() {
        lock.lock()
        defer { lock.unlock() }
        if let h = handle { dala_sync_session_cancel(h) }
        bridge?.cancel(sticky: false)
    }

    /// The last finished run's result; nil before the first run ended.
    public var lastResult: SyncResult? {
        lock.lock()
        defer { lock.unlock() }
        guard let h = handle else { return nil }
        var r = dala_sync_result()
        guard dala_sync_session_get_last_result(h, &r, nil) == DALA_OK else { return nil }
        return SyncResult(delivered: r.delivered, rejected: r.rejected, remaining: r.remaining,
                          unreachable: r.unreachable != 0)
    }

    /// Stops the session, waiting for a run in progress to end. Idempotent.
    public func stop() {
        lock.lock()
        let h = handle
        handle = nil
        lock.unlock()
        bridge?.cancel(sticky: true)
        if let h { dala_sync_session_free(h) }
    }
}

/// A run's stop token (dala_sync_cancel): triggered by Task cancellation, freed when the last reference (the
/// run's thread, the cancellation handler) is gone.
private final class CancelToken: @unchecked Sendable {
    let handle: OpaquePointer

    init() throws {
        var c: OpaquePointer?
        try Dala.check { dala_sync_cancel_create(&c, $0) }
        handle = c!
    }

    func trigger() { dala_sync_cancel_trigger(handle) }

    deinit { dala_sync_cancel_free(handle) }
}

/// Runs body with a C string for `s` (NULL for nil), valid during the call.
func withOptionalCString<T>(_ s: String?, _ body: (UnsafePointer<CChar>?) throws -> T) rethrows -> T {
    guard let s else { return try body(nil) }
    return try s.withCString { try body($0) }
}

extension Store {
    /// Sends what is due to every joined server (the built-in HTTP/HTTPS transport) until nothing is due,
    /// the timeout passes, or a server cannot be reached. The blocking run happens on a thread of its own;
    /// `progress` is called on that thread after each request. `proxy` ("socks5h://HOST:PORT", e.g. Orbot or
    /// an embedded Tor) sends every connection of the built-in transport through a SOCKS5 proxy, server names
    /// resolved by it; without one, an .onion address is refused.
    ///
    /// Cancelling the task stops the run promptly (a request of the built-in transport in flight is cut off,
    /// nothing more is sent) and throws `CancellationError` unless the run had nothing left; nothing is lost:
    /// what was not acknowledged stays queued, due at once for the next run.
    public func sync(timeoutMilliseconds: Int64 = 30_000, transport: DalaTransport? = nil, proxy: String? = nil,
                     progress: (@Sendable (SyncProgress) -> Void)? = nil) async throws -> SyncResult {
        try await run(timeoutMilliseconds, transport, nil, proxy, progress)
    }

    /// `sync` with the app's transport written with Swift concurrency: cancelling the task also cancels the
    /// transport's call in flight.
    public func sync(timeoutMilliseconds: Int64 = 30_000, transport: some DalaAsyncTransport, proxy: String? = nil,
                     progress: (@Sendable (SyncProgress) -> Void)? = nil) async throws -> SyncResult {
        let bridge = AsyncTransportBridge(transport)
        return try await run(timeoutMilliseconds, bridge, bridge, proxy, progress)
    }

    private func run(_ timeoutMilliseconds: Int64, _ transport: DalaTransport?, _ bridge: AsyncTransportBridge?,
                     _ proxy: String?, _ progress: (@Sendable (SyncProgress) -> Void)?) async throws -> SyncResult {
        if let proxy { try cText(proxy, "the proxy URL") }
        let token = try CancelToken()
        let result = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (done: CheckedContinuation<SyncResult, Error>) in
                let thread = Thread { [self] in
                    done.resume(with: Result {
                        try self.runOnce(timeoutMilliseconds, proxy, CallbackBox(progress, transport), token)
                    })
                }
                thread.name = "dala-sync"
                thread.start()
            }
        } onCancel: {
            token.trigger()
            bridge?.cancel(sticky: true)
        }
        // Stopped with work left: the task's cancellation is the answer. A run that had finished everything
        // anyway gives its result.
        if Task.isCancelled && result.remaining > 0 { throw CancellationError() }
        return result
    }

    /// One sync as an `AsyncSequence`: `.progress` after each request, then `.finished` with the result.
    /// Ending the iteration early (a `break`, or cancelling the consuming task) stops the run, as cancelling
    /// `sync` does; nothing is lost.
    public func syncUpdates(timeoutMilliseconds: Int64 = 30_000, transport: DalaTransport? = nil,
                            proxy: String? = nil) -> AsyncThrowingStream<SyncUpdate, Error> {
        updates { progress in
            try await self.sync(timeoutMilliseconds: timeoutMilliseconds, transport: transport, proxy: proxy,
                                progress: progress)
        }
    }

    /// `syncUpdates` with the app's async transport.
    public func syncUpdates(timeoutMilliseconds: Int64 = 30_000, transport: some DalaAsyncTransport,
                            proxy: String? = nil) -> AsyncThrowingStream<SyncUpdate, Error> {
        updates { progress in
            try await self.sync(timeoutMilliseconds: timeoutMilliseconds, transport: transport, proxy: proxy,
                                progress: progress)
        }
    }

    private func updates(_ sync: @escaping @Sendable (@escaping @Sendable (SyncProgress) -> Void) async throws
                             -> SyncResult) -> AsyncThrowingStream<SyncUpdate, Error> {
        AsyncThrowingStream { continuation in
            let run = Task {
                do {
                    let result = try await sync { continuation.yield(.progress($0)) }
                    continuation.yield(.finished(result))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in run.cancel() }
        }
    }

    private func runOnce(_ timeout: Int64, _ proxy: String?, _ callbacks: CallbackBox,
                         _ cancel: CancelToken) throws -> SyncResult {
        try use { s in
            var o = dala_sync_options()
            dala_sync_options_init(&o)
            o.timeout_ms = timeout
            o.cancel = cancel.handle
            wire(&o, callbacks)
            var r = dala_sync_result()
            _ = try withExtendedLifetime(callbacks) {
                try withOptionalCString(proxy) { p in
                    o.proxy_url = p
                    try Dala.check { dala_sync_run_once(s, &o, &r, $0) }
                }
            }
            return SyncResult(delivered: r.delivered, rejected: r.rejected, remaining: r.remaining,
                              unreachable: r.unreachable != 0)
        }
    }

    /// Starts background delivery (see `SyncSession`); each run is bounded by `timeoutMilliseconds`.
    public func startSession(timeoutMilliseconds: Int64 = 30_000, transport: DalaTransport? = nil,
                             proxy: String? = nil,
                             progress: (@Sendable (SyncProgress) -> Void)? = nil) throws -> SyncSession {
        try session(timeoutMilliseconds, transport, nil, proxy, progress)
    }

    /// `startSession` with the app's async transport: `SyncSession.cancel()` and `stop()` also cancel its
    /// call in flight.
    public func startSession(timeoutMilliseconds: Int64 = 30_000, transport: some DalaAsyncTransport,
                             proxy: String? = nil,
                             progress: (@Sendable (SyncProgress) -> Void)? = nil) throws -> SyncSession {
        let bridge = AsyncTransportBridge(transport)
        return try session(timeoutMilliseconds, bridge, bridge, proxy, progress)
    }

    private func session(_ timeoutMilliseconds: Int64, _ transport: DalaTransport?, _ bridge: AsyncTransportBridge?,
                         _ proxy: String?, _ progress: (@Sendable (SyncProgress) -> Void)?) throws -> SyncSession {
        let callbacks = CallbackBox(progress, transport)
        return try use { s in
            var o = dala_sync_options()
            dala_sync_options_init(&o)
            o.timeout_ms = timeoutMilliseconds
            wire(&o, callbacks)
            var session: OpaquePointer?
            try withOptionalCString(proxy) { p in
                o.proxy_url = p
                try Dala.check { dala_sync_session_start(s, &o, &session, $0) }
            }
            return SyncSession(store: self, handle: session!, callbacks: callbacks, bridge: bridge)
        }
    }

    /// Reports that waited only because no server could be reached are due at once.
    public func notifyOnline() throws {
        try use { s in try Dala.check { dala_store_notify_online(s, $0) } }
    }

    /// The user asked to send now: every queued report is due at once, whatever its backoff.
    public func retryNow() throws {
        try use { s in try Dala.check { dala_store_retry_now(s, $0) } }
    }
}
