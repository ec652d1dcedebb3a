import Dala
import Foundation

enum ReadmeSample {
    /// Records a report with a photo, seals it, and delivers it to the organisation's server.
    static func run(path: String, invite: String) async throws -> SyncResult {
        var passphrase = Array("Run for Marat, 17 August".utf8)   // wiped by create
        var options = Store.Options()
        options.kdfOpsLimit = 1
        options.kdfMemLimit = 8 << 20
        let store = try Store.create(at: path, passphrase: &passphrase, options: options)
        defer { store.close() }
        try store.join(invite: invite)                             // works offline
        var report = try store.createReport(form: "detention/1")
        report.fields["place"] = .text("Шымкент")
        report.narrative = "Ермек Коншбаев ұсталды. 🏃"
        try store.attach(Data(count: 70_000), mimeType: "image/jpeg", to: report.id)  // encrypted as written
        try store.seal(report)                                     // signed, sealed, queued
        return try await store.sync { p in
            print("\(p.destination): \(p.delivered) delivered, \(p.remaining) left, \(p.uploadDone)/\(p.uploadTotal) bytes")
        }
    }
}
