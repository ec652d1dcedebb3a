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

private final class ProgressBox {
    let callback: @Sendable (SyncProgress) -> Void
    init(_ callback: @escaping @Sendable (SyncProgress) -> Void) { self.callback = callback }
}

extension Store {
    /// Sends what is due to every joined server (the built-in HTTP/HTTPS transport) until nothing is due,
    /// the timeout passes, or a server cannot be reached. The blocking run happens on a thread of its own;
    /// `progress` is called on that thread after each request.
    public func sync(timeoutMilliseconds: Int64 = 30_000,
                     progress: (@Sendable (SyncProgress) -> Void)? = nil) async throws -> SyncResult {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<SyncResult, Error>) in
            let thread = Thread { [self] in
                done.resume(with: Result { try self.runOnce(timeoutMilliseconds, progress) })
            }
            thread.name = "dala-sync"
            thread.start()
        }
    }

    private func runOnce(_ timeout: Int64, _ progress: (@Sendable (SyncProgress) -> Void)?) throws -> SyncResult {
        try use { s in
            var o = dala_sync_options()
            dala_sync_options_init(&o)
            o.timeout_ms = timeout
            let box = progress.map { ProgressBox($0) }
            if let box {
                o.progress_context = Unmanaged.passUnretained(box).toOpaque()
                o.progress = { ctx, p in
                    guard let ctx, let p else { return }
                    let box = Unmanaged<ProgressBox>.fromOpaque(ctx).takeUnretainedValue()
                    box.callback(SyncProgress(destination: String(cString: p.pointee.destination),
                                              delivered: p.pointee.delivered, rejected: p.pointee.rejected,
                                              remaining: p.pointee.remaining, uploadDone: p.pointee.upload_done,
                                              uploadTotal: p.pointee.upload_total))
                }
            }
            var r = dala_sync_result()
            try withExtendedLifetime(box) {
                try check { dala_sync_run_once(s, &o, &r, $0) }
            }
            return SyncResult(delivered: r.delivered, rejected: r.rejected, remaining: r.remaining,
                              unreachable: r.unreachable != 0)
        }
    }
}
