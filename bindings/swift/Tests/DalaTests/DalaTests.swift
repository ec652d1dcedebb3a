import Dala
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

final class DalaTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("dala-swift-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    static var fast: Store.Options {
        var o = Store.Options()
        o.kdfOpsLimit = 1
        o.kdfMemLimit = 8 << 20
        return o
    }

    func newStore(_ name: String = "s") throws -> Store {
        var pass = Array("correct horse".utf8)
        return try Store.create(at: dir.appendingPathComponent(name).path, passphrase: &pass, options: Self.fast)
    }

    func testUtf8EmojiKazakhRussianAndCodable() throws {
        let kk = "Ойыл ауданында белсенділер ұсталды 🏃‍♀️🚓"
        let ru = "Задержаны во время пробежки — «без оснований»"
        let id: String
        do {
            let s = try newStore()
            var r = try s.createReport(form: "detention/1")
            r.narrative = kk + "\n" + ru
            r.fields["place"] = .text("Орал (Uralsk) 📍")
            r.fields["hours"] = .integer(3)
            r.fields["released"] = .boolean(true)
            let sealed = try s.seal(r)
            XCTAssertEqual(sealed.state, .sealed)
            id = sealed.id
            s.close()
        }
        var pass = Array("correct horse".utf8)
        let s = try Store.open(at: dir.appendingPathComponent("s").path, passphrase: &pass, options: Self.fast)
        XCTAssertEqual(pass, [UInt8](repeating: 0, count: pass.count), "the passphrase is wiped after use")
        let r = try s.report(id: id)
        XCTAssertEqual(r.narrative, kk + "\n" + ru)
        XCTAssertEqual(r.fields["place"], .text("Орал (Uralsk) 📍"))
        XCTAssertEqual(r.fields["hours"], .integer(3))
        XCTAssertEqual(r.version, 1)
        // Report is a Codable value: it round-trips through JSON.
        let back = try JSONDecoder().decode(Report.self, from: JSONEncoder().encode(r))
        XCTAssertEqual(back, r)
        XCTAssertEqual(try s.reports().map(\.id), [id])
        s.close()
    }

    func testListsAPageAtATime() throws {
        let s = try newStore()
        var made: [String] = []
        for i in 0..<5 {
            let r = try s.save(try s.createReport(form: i < 3 ? "detention/1" : "incident/2"))
            made.append(i == 0 ? try s.seal(r).id : r.id)
        }
        let all = try s.reports().map(\.id)
        var walked: [String] = []
        var after: String? = nil
        var pages = 0
        repeat {
            let page = try s.reports(limit: 2, after: after)
            XCTAssertLessThanOrEqual(page.reports.count, 2)
            walked += page.reports.map(\.id)
            after = page.next
            pages += 1
        } while after != nil
        XCTAssertEqual(pages, 3)
        XCTAssertEqual(walked, all)
        XCTAssertEqual(try s.reports(limit: 1000, form: "incident").reports.count, 2)
        let sealed = try s.reports(states: [.sealed])
        XCTAssertEqual(sealed.reports.map(\.id), [made[0]])
        XCTAssertEqual(sealed.reports.first?.state, .sealed)
        XCTAssertNil(sealed.next)
        XCTAssertThrowsError(try s.reports(after: "nonsense")) { XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument) }
        XCTAssertThrowsError(try s.reports(limit: 0)) { XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument) }
        s.close()
    }

    func testWrongPassphraseIsItsOwnCase() throws {
        try newStore().close()
        var wrong = Array("guess".utf8)
        XCTAssertThrowsError(try Store.open(at: dir.appendingPathComponent("s").path, passphrase: &wrong, options: Self.fast)) { error in
            guard case DalaError.wrongKey(let message) = error else { return XCTFail("\(error)") }
            XCTAssertFalse(message.isEmpty)
            XCTAssertEqual((error as? DalaError)?.code, .wrongKey)
        }
        var any = Array("x".utf8)
        XCTAssertThrowsError(try Store.open(at: dir.appendingPathComponent("none").path, passphrase: &any)) {
            XCTAssertEqual(($0 as? DalaError)?.code, .notFound)
        }
    }

    func testUseAfterCloseAndCloseTwice() throws {
        let s = try newStore()
        s.close()
        s.close()
        XCTAssertThrowsError(try s.createReport(form: "detention/1")) { error in
            guard case DalaError.closed = error else { return XCTFail("\(error)") }
        }
    }

    func testAProxyReachesTheLibrary() async throws {
        let s = try newStore()
        defer { s.close() }
        // The proxy URL goes to the C API as it is: a malformed one is refused there, before any connection.
        do {
            _ = try await s.sync(timeoutMilliseconds: 5_000, proxy: "socks4://127.0.0.1:9050")
            XCTFail("a malformed proxy URL was accepted")
        } catch let e as DalaError {
            XCTAssertEqual(e.code, .invalidArgument)
        }
        XCTAssertThrowsError(try s.startSession(timeoutMilliseconds: 5_000, proxy: "socks5h://127.0.0.1")) {
            XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument)
        }
    }

    func testEmptyAndInvalidArgumentsAreRefused() throws {
        var empty: [UInt8] = []
        XCTAssertThrowsError(try Store.create(at: dir.appendingPathComponent("e").path, passphrase: &empty)) {
            XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument)
        }
        let s = try newStore()
        defer { s.close() }
        XCTAssertThrowsError(try s.createReport(form: "")) { XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument) }
        XCTAssertThrowsError(try s.report(id: "xyz")) { XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument) }
        var r = try s.createReport(form: "detention/1")
        r.fields["amount"] = .decimal("1,5")
        XCTAssertThrowsError(try s.save(r)) { XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument) }
        XCTAssertThrowsError(try s.attach(Data([1]), mimeType: "", to: r.id)) {
            XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument)
        }
    }

    func testAttachments() throws {
        let s = try newStore()
        defer { s.close() }
        let r = try s.createReport(form: "detention/1")
        let clip = Data((0..<300_001).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let id = try s.attach(clip, mimeType: "video/mp4", to: r.id)
        XCTAssertEqual(try s.attachment(id: id), clip)
        XCTAssertEqual(try s.report(id: r.id).attachments.map(\.id), [id])
        XCTAssertThrowsError(try s.attachment(id: String(repeating: "0", count: 32))) {
            XCTAssertEqual(($0 as? DalaError)?.code, .notFound)
        }
    }

    func testManyThreadsUseOneStore() throws {
        let s = try newStore()
        defer { s.close() }
        let failures = Counter()
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in 0..<25 {
                do {
                    var r = try s.createReport(form: "detention/1")
                    r.narrative = "thread \(t) report \(i)"
                    try s.seal(r)
                } catch {
                    failures.add()
                }
            }
        }
        XCTAssertEqual(failures.value, 0)
        XCTAssertEqual(try s.reports().count, 200)
    }

    func testStatusCodesMatchTheLibrary() {
        for code in DalaError.Code.allCases where code != .ok {
            XCTAssertEqual(DalaError.Code(rawValue: code.rawValue), code)
        }
        XCTAssertEqual(DalaError.Code.allCases.count, 16)
    }

    func testSyncAgainstDalaServerWithProgress() async throws {
        let server = try TestServer(dir: dir)
        defer { server.stop() }
        let s = try newStore("phone")
        defer { s.close() }
        let destination = try s.join(invite: server.invite)
        XCTAssertTrue(destination.hasPrefix("org-"))
        for i in 0..<3 {
            var r = try s.createReport(form: "detention/1")
            r.narrative = "Жеделхат \(i) ✊"
            try s.seal(r)
        }
        let withMedia = try s.createReport(form: "detention/1")
        try s.attach(Data(count: 2_500_000), mimeType: "video/mp4", to: withMedia.id)
        try s.seal(try s.report(id: withMedia.id))
        let seen = Counter()
        let result = try await s.sync(timeoutMilliseconds: 30_000) { _ in seen.add() }
        XCTAssertEqual(result.delivered, 4)
        XCTAssertEqual(result.remaining, 0)
        XCTAssertGreaterThan(seen.value, 0)
        let receipts = try s.receipts()
        XCTAssertEqual(receipts.count, 4)
        XCTAssertTrue(receipts.allSatisfy(\.verified))
        let stats = try s.outboxStats(destination: destination)
        XCTAssertEqual(stats.delivered, 4)
        XCTAssertEqual(stats.pending + stats.inFlight + stats.rejected, 0)
        try s.check()
    }

    func testServersShowTheOrganisationAndPurgedReportsSaySo() async throws {
        let s = try newStore("phone")
        defer { s.close() }
        let destination: String
        do {
            let server = try TestServer(dir: dir)
            defer { server.stop() }
            destination = try s.join(invite: server.invite)
            let joined = try s.servers()
            XCTAssertEqual(joined.count, 1)
            XCTAssertEqual(joined[0].destination, destination)
            XCTAssertEqual(joined[0].organisation, "KIBHR")
            XCTAssertTrue(joined[0].url.hasPrefix("http://127.0.0.1:"), joined[0].url)
            XCTAssertNotNil(joined[0].fingerprint.range(of: #"^\d{5}( \d{5}){5}$"#, options: .regularExpression),
                            joined[0].fingerprint)
            XCTAssertEqual(joined[0].serverKey.count, 32)
            XCTAssertEqual(joined[0].organisationKey.count, 32)
            XCTAssertNotEqual(joined[0].organisationKey, [UInt8](repeating: 0, count: 32))
            XCTAssertFalse(joined[0].enrolled)
            XCTAssertEqual(joined[0].lastError, "")
            try s.setDeleteAfterDelivery(true)
            var r = try s.createReport(form: "detention/1")
            r.narrative = "purged once delivered"
            let sealed = try s.seal(r)
            XCTAssertFalse(sealed.isPurged)
            let result = try await s.sync(timeoutMilliseconds: 30_000)
            XCTAssertEqual(result.remaining, 0)
            XCTAssertTrue(try s.servers()[0].enrolled)
            let after = try s.report(id: sealed.id)
            XCTAssertTrue(after.isPurged)
            XCTAssertEqual(after.narrative, "")
        }
        // The server is gone: the next contact fails, and says so.
        var r = try s.createReport(form: "detention/1")
        r.narrative = "waits"
        try s.seal(r)
        _ = try await s.sync(timeoutMilliseconds: 5_000)
        XCTAssertNotEqual(try s.servers()[0].lastError, "")
    }

    func testACancelledSyncTaskLosesNothingAndTheNextRunFinishes() async throws {
        let server = try TestServer(dir: dir)
        defer { server.stop() }
        let s = try newStore("phone")
        defer { s.close() }
        try s.join(invite: server.invite)
        let r = try s.createReport(form: "detention/1")
        let video = dir.appendingPathComponent("video.mp4")
        try Data(count: 40 << 20).write(to: video)  // three upload requests of up to 16 MiB
        try s.attach(fileAt: video, mimeType: "video/mp4", to: r.id)
        try s.seal(try s.report(id: r.id))
        let uploading = Counter()
        let task = Task { try await s.sync(timeoutMilliseconds: 60_000) { p in if p.uploadDone > 0 { uploading.add() } } }
        for _ in 0..<3000 where uploading.value == 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertGreaterThan(uploading.value, 0, "the upload started")
        task.cancel()
        let outcome = await task.result
        XCTAssertThrowsError(try outcome.get()) { XCTAssertTrue($0 is CancellationError, "\($0)") }
        XCTAssertEqual(try s.receipts().count, 0, "stopped before the upload ended")
        XCTAssertEqual(try s.report(id: r.id).state, .queued)
        // Nothing lost, and no backoff (a stop is not a failed contact): the next run finishes the upload at
        // once; the report is delivered, its receipt verified.
        XCTAssertEqual(try s.servers()[0].lastError, "")
        let next = try await s.sync(timeoutMilliseconds: 60_000)
        XCTAssertEqual(next.delivered, 1)
        XCTAssertEqual(next.remaining, 0)
        XCTAssertTrue(try s.receipts().allSatisfy(\.verified))
        // A task cancelled before its sync starts sends nothing.
        var again = try s.createReport(form: "detention/1")
        again.narrative = "waits"
        try s.seal(again)
        let early = Task { () async throws -> SyncResult in
            while !Task.isCancelled { await Task.yield() }  // the sync starts in a task already cancelled
            return try await s.sync(timeoutMilliseconds: 60_000)
        }
        early.cancel()
        let earlyOutcome = await early.result
        XCTAssertThrowsError(try earlyOutcome.get()) { XCTAssertTrue($0 is CancellationError, "\($0)") }
        XCTAssertEqual(try s.receipts().count, 1, "nothing was sent")
        XCTAssertEqual(try s.report(id: again.id).state, .queued)
    }

    func testProgressAsAnAsyncSequenceAndAttachmentsReadInPieces() async throws {
        let server = try TestServer(dir: dir)
        defer { server.stop() }
        let s = try newStore("phone")
        defer { s.close() }
        try s.join(invite: server.invite)
        var r = try s.createReport(form: "detention/1")
        r.narrative = "with a clip"
        r = try s.save(r)
        let clip = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7919 >> 3) })
        let id = try s.attach(clip, mimeType: "video/mp4", to: r.id)
        var pieces = 0, back = Data()
        try s.attachment(id: id) { piece in
            XCTAssertLessThanOrEqual(piece.count, 65536)
            pieces += 1
            back.append(piece)
        }
        XCTAssertEqual(back, clip)
        XCTAssertGreaterThan(pieces, 1)
        struct Enough: Error {}
        XCTAssertThrowsError(try s.attachment(id: id) { _ in throw Enough() }) { XCTAssertTrue($0 is Enough) }
        try s.seal(try s.report(id: r.id))
        var progress = 0
        var finished: SyncResult?
        for try await update in s.syncUpdates(timeoutMilliseconds: 30_000) {
            switch update {
            case .progress: progress += 1
            case .finished(let result): finished = result
            }
        }
        XCTAssertGreaterThan(progress, 0)
        XCTAssertEqual(finished?.delivered, 1)
        XCTAssertEqual(finished?.remaining, 0)
    }

    func testBadTextIsRefusedNeverCutShort() throws {
        let s = try newStore()
        defer { s.close() }
        var r = try s.createReport(form: "detention/1")
        r.fields["place"] = .text("kept")
        r = try s.save(r)
        func refused(_ change: (inout Report) -> Void, _ code: DalaError.Code = .invalidArgument,
                     file: StaticString = #filePath, line: UInt = #line) {
            var bad = r
            change(&bad)
            XCTAssertThrowsError(try s.save(bad), file: file, line: line) {
                XCTAssertEqual(($0 as? DalaError)?.code, code, file: file, line: line)
            }
        }
        refused { $0.fields["place"] = .text("Oral\u{0} and the rest") }
        refused { $0.narrative = "cut\u{0}here" }
        refused { $0.fields["k\u{0}ey"] = .text("x") }
        refused { $0.fields["who"] = .people([Report.Person(name: "A\u{0}B", role: "detained")]) }
        let big = String(repeating: "Жеделхат ", count: 64 * 1024 / 17 + 10)
        var tooLong = r
        tooLong.fields["place"] = .text(big)
        XCTAssertThrowsError(try s.save(tooLong)) {
            let code = ($0 as? DalaError)?.code
            XCTAssertTrue(code == .tooLarge || code == .invalidArgument, "an oversized text: \(String(describing: code))")
        }
        XCTAssertEqual(try s.report(id: r.id).fields["place"], .text("kept"), "a refused value changes nothing")
        XCTAssertThrowsError(try s.createReport(form: "detention\u{0}/1")) {
            XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument)
        }
        var pass = Array("p".utf8)
        XCTAssertThrowsError(try Store.open(at: dir.path + "/s\u{0}x", passphrase: &pass, options: Self.fast)) {
            XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument)
        }
    }

    func testAStoreUnderAPlatformKey() throws {
        let path = dir.appendingPathComponent("k").path
        var key = [UInt8](repeating: 0, count: 32)
        for i in key.indices { key[i] = UInt8(i * 7 & 0xff) }
        let copy = key
        do {
            let s = try Store.create(at: path, key: &key)
            XCTAssertEqual(key, [UInt8](repeating: 0, count: 32), "wiped")
            var r = try s.createReport(form: "detention/1")
            r.narrative = "under the Keychain's key"
            try s.seal(r)
            s.close()
        }
        var wrong = copy
        wrong[0] ^= 1
        XCTAssertThrowsError(try Store.open(at: path, key: &wrong)) { XCTAssertEqual(($0 as? DalaError)?.code, .wrongKey) }
        var short = [UInt8](repeating: 1, count: 16)
        XCTAssertThrowsError(try Store.open(at: path, key: &short)) { XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument) }
        var right = copy
        let s = try Store.open(at: path, key: &right)
        defer { s.close() }
        XCTAssertEqual(try s.reports().map(\.narrative), ["under the Keychain's key"])
    }

    func testPagingPastTheEndGivesAnEmptyPage() throws {
        let s = try newStore()
        defer { s.close() }
        var ids: [String] = []
        for _ in 0..<5 { ids.append(try s.createReport(form: "detention/1").id) }
        let first = try s.reports(limit: 2)
        XCTAssertEqual(first.reports.count, 2)
        let cursor = try XCTUnwrap(first.next)
        // The rest goes while the app holds the cursor: the next page is empty and ends the listing.
        for id in ids { try s.deleteDraft(id: id) }
        let past = try s.reports(limit: 2, after: cursor)
        XCTAssertEqual(past.reports.count, 0)
        XCTAssertNil(past.next)
    }

    func testSealAllSealsEveryDraftOrNone() throws {
        let s = try newStore()
        defer { s.close() }
        var ids: [String] = []
        for i in 0..<3 {
            var r = try s.createReport(form: "detention/1")
            r.narrative = "draft \(i)"
            ids.append(try s.save(r).id)
        }
        XCTAssertThrowsError(try s.sealAll(ids: ids + ["00112233445566778899aabbccddeeff"]))
        for id in ids { XCTAssertEqual(try s.report(id: id).state, .draft) }
        try s.sealAll(ids: Array(ids.prefix(2)))
        XCTAssertEqual(try s.report(id: ids[0]).state, .sealed)
        XCTAssertEqual(try s.report(id: ids[1]).state, .sealed)
        XCTAssertEqual(try s.report(id: ids[2]).state, .draft)
    }

    func testPassphraseChangeRekeyDuressAndWipe() throws {
        let path = dir.appendingPathComponent("s").path
        var id = ""
        do {
            let s = try newStore()
            var r = try s.createReport(form: "detention/1")
            r.narrative = "kept across the re-key"
            r = try s.save(r)
            try s.attach(Data(count: 100_000), mimeType: "image/jpeg", to: r.id)
            id = r.id
            s.close()
        }
        func open(_ p: String) throws -> Store {
            var bytes = Array(p.utf8)
            return try Store.open(at: path, passphrase: &bytes, options: Self.fast)
        }
        var old = Array("correct horse".utf8), new = Array("battery staple".utf8)
        try Store.changePassphrase(at: path, from: &old, to: &new, options: Self.fast)
        XCTAssertEqual(old, [UInt8](repeating: 0, count: old.count), "wiped")
        XCTAssertThrowsError(try open("correct horse")) { XCTAssertEqual(($0 as? DalaError)?.code, .wrongKey) }
        try open("battery staple").close()

        var seen: [(Store.RekeyPhase, UInt64, UInt64)] = []
        old = Array("battery staple".utf8)
        new = Array("third".utf8)
        try Store.rekey(at: path, from: &old, to: &new, options: Self.fast) { seen.append(($0, $1, $2)) }
        XCTAssertEqual(seen.first?.0, .database)
        XCTAssertEqual(seen.last?.0, .attachments)
        XCTAssertEqual(seen.last?.1, seen.last?.2)
        XCTAssertGreaterThanOrEqual(seen.last?.2 ?? 0, 100_000)
        XCTAssertThrowsError(try open("battery staple")) { XCTAssertEqual(($0 as? DalaError)?.code, .wrongKey) }
        do {
            let s = try open("third")
            XCTAssertEqual(try s.report(id: id).narrative, "kept across the re-key")
            XCTAssertEqual(try s.attachments(of: id).count, 1)
            s.close()
        }

        var pass = Array("third".utf8), duress = Array("let me go".utf8)
        try Store.setDuress(at: path, passphrase: &pass, duressPassphrase: &duress, options: Self.fast)
        pass = Array("third".utf8)
        try Store.clearDuress(at: path, passphrase: &pass, options: Self.fast)
        XCTAssertThrowsError(try open("let me go")) { XCTAssertEqual(($0 as? DalaError)?.code, .wrongKey) }
        pass = Array("third".utf8)
        duress = Array("let me go".utf8)
        try Store.setDuress(at: path, passphrase: &pass, duressPassphrase: &duress, options: Self.fast)
        do {
            let s = try open("let me go")
            XCTAssertEqual(try s.reports().count, 0, "the duress passphrase opens an empty store")
            s.close()
        }
        XCTAssertThrowsError(try open("third")) { XCTAssertEqual(($0 as? DalaError)?.code, .wrongKey) }

        var destroyed = false
        try Store.wipe(at: path) {
            destroyed = FileManager.default.fileExists(atPath: path)  // called first, the store still there
            return true
        }
        XCTAssertTrue(destroyed)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        try newStore().close()
        XCTAssertThrowsError(try Store.wipe(at: path) { false }) { XCTAssertEqual(($0 as? DalaError)?.code, .io) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "the wipe went on")
    }

    func testGeoPointsPeopleAndLocation() throws {
        let s = try newStore()
        var r = try s.createReport(form: "detention/1")
        r.fields["where"] = .geo(.init(latitude: 51.23, longitude: 51.37, accuracyM: 20))
        r.fields["detained"] = .people([.init(name: "Roza Kariyeva", role: "detained"), .init(name: "Marua Eskendirova")])
        r.location = .init(latitude: 51.2, longitude: 51.4)
        let sealed = try s.seal(r)
        let back = try s.report(id: sealed.id)
        XCTAssertEqual(back.fields["where"], .geo(.init(latitude: 51.23, longitude: 51.37, accuracyM: 20)))
        XCTAssertEqual(back.fields["detained"],
                       .people([.init(name: "Roza Kariyeva", role: "detained"), .init(name: "Marua Eskendirova", role: "")]))
        XCTAssertEqual(back.location, .init(latitude: 51.2, longitude: 51.4, accuracyM: 0))
        var bad = try s.createReport(form: "detention/1")
        bad.fields["where"] = .geo(.init(latitude: 91, longitude: 0))
        XCTAssertThrowsError(try s.save(bad)) { XCTAssertEqual(($0 as? DalaError)?.code, .invalidArgument) }
        s.close()
    }

    func testAttachmentsFromFilesVersionsAndTheDeviceKey() throws {
        let s = try newStore()
        let r = try s.createReport(form: "detention/1")
        let file = dir.appendingPathComponent("photo.jpg")
        let bytes = Data((0..<300_000).map { UInt8($0 % 251) })
        try bytes.write(to: file)
        let photo = try s.attach(fileAt: file, mimeType: "image/jpeg", to: r.id)
        let note = try s.attach(Data("a note".utf8), mimeType: "text/plain", to: r.id)
        XCTAssertEqual(try s.attachments(of: r.id).map(\.id), [photo, note])
        XCTAssertEqual(try s.attachments(of: r.id).first?.size, 300_000)
        XCTAssertEqual(try s.attachment(id: photo), bytes)
        try s.removeAttachment(id: note)
        XCTAssertEqual(try s.attachments(of: r.id).map(\.id), [photo])
        XCTAssertThrowsError(try s.attach(fileAt: URL(string: "https://example.org/x")!, mimeType: "image/jpeg", to: r.id))
        var v1 = try s.seal(try s.report(id: r.id))
        v1.narrative = "second version"
        let v2 = try s.seal(v1)
        XCTAssertEqual(v2.version, 2)
        XCTAssertEqual(try s.report(id: r.id, version: 1).narrative, "")
        XCTAssertEqual(try s.report(id: r.id, version: 2).narrative, "second version")
        XCTAssertEqual(try s.deviceKey().count, 32)
        s.close()
    }

    func testRemovingFieldsAndKeepingTheLocation() throws {
        let s = try newStore()
        var r = try s.createReport(form: "detention/1")
        r.fields = ["a": .text("1"), "b": .text("2"), "c": .text("3"), "d": .integer(4)]
        r.location = .init(latitude: 43.238949, longitude: 76.889709, accuracyM: 4.5)
        r = try s.save(r)
        r.fields["a"] = nil
        r.fields["c"] = nil
        r = try s.save(r)
        XCTAssertEqual(try s.report(id: r.id).fields, ["b": .text("2"), "d": .integer(4)])
        // A value that never knew the location (as from an older package) leaves it as it is.
        var dict = try JSONSerialization.jsonObject(with: JSONEncoder().encode(try s.report(id: r.id))) as! [String: Any]
        dict["capture"] = nil
        var stale = try JSONDecoder().decode(Report.self, from: JSONSerialization.data(withJSONObject: dict))
        XCTAssertNil(stale.location)
        stale.narrative = "edited elsewhere"
        try s.save(stale)
        XCTAssertEqual(try s.report(id: r.id).location, .init(latitude: 43.238949, longitude: 76.889709, accuracyM: 4.5))
        // Clearing it on purpose clears it.
        var cleared = try s.report(id: r.id)
        cleared.location = nil
        try s.save(cleared)
        XCTAssertNil(try s.report(id: r.id).location)
        // A field value stored without its value by an older package decodes, kept as it is.
        let old = #"{"id":"\#(r.id)","version":1,"form":"detention/1","state":"draft","narrative":"","fields":{"g":{"type":"geo"}},"priority":0,"attachments":[]}"#
        XCTAssertEqual(try JSONDecoder().decode(Report.self, from: Data(old.utf8)).fields["g"], .other("geo"))
        s.close()
    }

    func testLibraryVersionAndStoreSettings() throws {
        let n = Library.versionNumber
        XCTAssertEqual(Library.version, "\(n / 10000).\(n / 100 % 100).\(n % 100)")
        XCTAssertGreaterThanOrEqual(n, 200)
        let s = try newStore()
        try s.check()
        try s.setDeleteAfterDelivery(true)
        try s.setDeleteAfterDelivery(false)
        let none = try s.outboxStats(destination: "org-nowhere")
        XCTAssertEqual(none.pending + none.inFlight + none.delivered + none.rejected, 0)
        s.close()
    }

    func testBackgroundSessionAndTheAppsOwnTransport() async throws {
        let server = try TestServer(dir: dir)
        defer { server.stop() }
        let s = try newStore("phone")
        defer { s.close() }
        try s.join(invite: server.invite)
        var r = try s.createReport(form: "detention/1")
        try s.attach(Data(count: 1_200_000), mimeType: "video/mp4", to: r.id)
        r = try s.report(id: r.id)
        try s.seal(r)
        // Offline first: the transport throws; nothing is lost.
        let net = URLSessionTransport()
        net.offline.set(true)
        let first = try await s.sync(timeoutMilliseconds: 20_000, transport: net)
        XCTAssertTrue(first.unreachable)
        XCTAssertEqual(first.remaining, 1)
        // Online, in the background: a session with the app's transport delivers it.
        net.offline.set(false)
        try s.notifyOnline()
        let session = try s.startSession(timeoutMilliseconds: 20_000, transport: net)
        session.notifyOnline()
        var last: SyncResult?
        for _ in 0..<400 {
            last = session.lastResult
            if last?.remaining == 0 { break }
            try await Task.sleep(nanoseconds: 25_000_000)
        }
        session.cancel()
        session.stop()
        session.stop()  // idempotent
        XCTAssertEqual(last?.remaining, 0)
        XCTAssertGreaterThan(net.uploads.value, 0, "the attachment went through the app's upload")
        XCTAssertEqual(try s.receipts().count, 1)
    }

    func testAnAsyncTransportDeliversAndCancellingCancelsItsCallInFlight() async throws {
        let server = try TestServer(dir: dir)
        defer { server.stop() }
        let s = try newStore("phone")
        defer { s.close() }
        try s.join(invite: server.invite)
        var r = try s.createReport(form: "detention/1")
        try s.attach(Data(count: 1_200_000), mimeType: "video/mp4", to: r.id)
        r = try s.report(id: r.id)
        try s.seal(r)
        // URLSession's async API, as an app would write it: the report and its video go through it.
        let net = AsyncURLSessionTransport()
        let first = try await s.sync(timeoutMilliseconds: 20_000, transport: net)
        XCTAssertEqual(first.delivered, 1)
        XCTAssertEqual(first.remaining, 0)
        XCTAssertGreaterThan(net.uploads.value, 0, "the attachment went through the app's async upload")
        XCTAssertTrue(try s.receipts().allSatisfy(\.verified))

        // A call that would hang for a minute: cancelling the sync cancels it at once, and nothing is lost.
        _ = try s.seal(try s.createReport(form: "detention/1"))
        let hanging = HangingTransport()
        let started = Date()
        let run = Task { try await s.sync(timeoutMilliseconds: 120_000, transport: hanging) }
        for _ in 0..<400 where !hanging.entered.value { try await Task.sleep(nanoseconds: 25_000_000) }
        XCTAssertTrue(hanging.entered.value, "the sync called the async transport")
        run.cancel()
        let outcome = await run.result
        XCTAssertThrowsError(try outcome.get()) { XCTAssertTrue($0 is CancellationError, "\($0)") }
        XCTAssertTrue(hanging.sawCancel.value, "the call in flight was cancelled")
        XCTAssertLessThan(Date().timeIntervalSince(started), 30, "not the minute the call would have taken")
        let again = try await s.sync(timeoutMilliseconds: 20_000, transport: net)
        XCTAssertEqual(again.delivered, 1)
        XCTAssertEqual(again.remaining, 0)

        // A session: cancel() cancels the call in flight; stop() ends the session promptly.
        _ = try s.seal(try s.createReport(form: "detention/1"))
        let stuck = HangingTransport()
        let session = try s.startSession(timeoutMilliseconds: 120_000, transport: stuck)
        session.notifyOnline()
        for _ in 0..<400 where !stuck.entered.value { try await Task.sleep(nanoseconds: 25_000_000) }
        XCTAssertTrue(stuck.entered.value)
        session.cancel()
        for _ in 0..<400 where !stuck.sawCancel.value { try await Task.sleep(nanoseconds: 25_000_000) }
        XCTAssertTrue(stuck.sawCancel.value, "SyncSession.cancel() cancelled the call in flight")
        let stopping = Date()
        session.stop()
        XCTAssertLessThan(Date().timeIntervalSince(stopping), 30)
        let last = try await s.sync(timeoutMilliseconds: 20_000, transport: net)
        XCTAssertEqual(last.remaining, 0)
    }

    func testAnOrganisationJoinedLaterGetsEarlierReportsOnlyWithIncludeExisting() async throws {
        let server = try TestServer(dir: dir, uses: 2)
        defer { server.stop() }
        let later = try newStore("phone")
        defer { later.close() }
        let all = try newStore("phone2")
        defer { all.close() }
        let before = try later.seal(try later.createReport(form: "detention/1")).id
        let beforeAll = try all.seal(try all.createReport(form: "detention/1")).id
        let destination = try later.join(invite: server.invite)
        XCTAssertEqual(try all.join(invite: server.invite, includeExisting: true), destination,
                       "the destination is the organisation's")
        XCTAssertEqual(try later.report(id: before).state, .sealed, "not queued for an organisation joined later")
        XCTAssertEqual(try all.report(id: beforeAll).state, .queued, "queued: the user included it")
        let after = try later.seal(try later.createReport(form: "detention/1")).id

        var result = try await later.sync(timeoutMilliseconds: 30_000)
        XCTAssertEqual(result.delivered, 1, "only the report sealed after the join")
        XCTAssertEqual(result.remaining, 0)
        XCTAssertEqual(try later.receipts().map(\.reportID), [after])
        XCTAssertEqual(try later.report(id: before).state, .sealed)

        result = try await all.sync(timeoutMilliseconds: 30_000)
        XCTAssertEqual(result.delivered, 1)
        XCTAssertEqual(result.remaining, 0)
        XCTAssertEqual(try all.receipts().map(\.reportID), [beforeAll])
        XCTAssertTrue(try all.receipts().allSatisfy(\.verified))
        XCTAssertEqual(try all.report(id: beforeAll).state, .delivered)
    }

    func testReadmeSampleRunsAsShown() async throws {
        let server = try TestServer(dir: dir)
        defer { server.stop() }
        let result = try await ReadmeSample.run(path: dir.appendingPathComponent("phone").path, invite: server.invite)
        XCTAssertEqual(result.delivered, 1)
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var v = false
    func set(_ x: Bool) { lock.lock(); v = x; lock.unlock() }
    var value: Bool { lock.lock(); defer { lock.unlock() }; return v }
}

/// The app's own HTTP stack, as an iOS app might write it (URLSession), blocking the sync's thread.
final class URLSessionTransport: DalaTransport, @unchecked Sendable {
    let offline = Flag()
    let uploads = Counter()

    func post(url: String, body: Data, timeoutMilliseconds: Int64, tlsPin: Data) throws -> (status: Int, body: Data) {
        try send(url, "application/x-protobuf", nil, body, timeoutMilliseconds)
    }

    func upload(url: String, requestHeader: String, filePath: String, offset: UInt64, length: UInt64,
                timeoutMilliseconds: Int64, tlsPin: Data) throws -> (status: Int, body: Data) {
        uploads.add()
        guard let f = FileHandle(forReadingAtPath: filePath) else { throw DalaError.io("cannot open \(filePath)") }
        defer { try? f.close() }
        try f.seek(toOffset: offset)
        let body = f.readData(ofLength: Int(length))
        return try send(url, "application/octet-stream", requestHeader, body, timeoutMilliseconds)
    }

    private func send(_ url: String, _ type: String, _ header: String?, _ body: Data, _ timeout: Int64) throws
        -> (status: Int, body: Data) {
        if offline.value { throw URLError(.notConnectedToInternet) }
        var req = URLRequest(url: URL(string: url)!)
        req.httpMethod = "POST"
        req.timeoutInterval = Double(timeout) / 1000
        req.setValue(type, forHTTPHeaderField: "Content-Type")
        if let header { req.setValue(header, forHTTPHeaderField: "Authorization") }
        let done = DispatchSemaphore(value: 0)
        let result = Box<Result<(Int, Data), Error>>()
        URLSession.shared.uploadTask(with: req, from: body) { data, response, error in
            if let error {
                result.value = .failure(error)
            } else {
                result.value = .success(((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data()))
            }
            done.signal()
        }.resume()
        done.wait()
        let (status, data) = try result.value!.get()
        return (status, data)
    }
}

/// The app's own HTTP stack written with Swift concurrency: URLSession's async upload.
final class AsyncURLSessionTransport: DalaAsyncTransport, @unchecked Sendable {
    let uploads = Counter()

    func post(url: String, body: Data, timeoutMilliseconds: Int64, tlsPin: Data) async throws
        -> (status: Int, body: Data) {
        try await send(url, "application/x-protobuf", nil, body, timeoutMilliseconds)
    }

    func upload(url: String, requestHeader: String, filePath: String, offset: UInt64, length: UInt64,
                timeoutMilliseconds: Int64, tlsPin: Data) async throws -> (status: Int, body: Data) {
        uploads.add()
        guard let f = FileHandle(forReadingAtPath: filePath) else { throw DalaError.io("cannot open \(filePath)") }
        defer { try? f.close() }
        try f.seek(toOffset: offset)
        let body = f.readData(ofLength: Int(length))
        return try await send(url, "application/octet-stream", requestHeader, body, timeoutMilliseconds)
    }

    private func send(_ url: String, _ type: String, _ header: String?, _ body: Data, _ timeout: Int64) async throws
        -> (status: Int, body: Data) {
        var req = URLRequest(url: URL(string: url)!)
        req.httpMethod = "POST"
        req.timeoutInterval = Double(timeout) / 1000
        req.setValue(type, forHTTPHeaderField: "Content-Type")
        if let header { req.setValue(header, forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.upload(for: req, from: body)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }
}

/// A transport whose calls would take a minute, unless their task is cancelled.
final class HangingTransport: DalaAsyncTransport, @unchecked Sendable {
    let entered = Flag()
    let sawCancel = Flag()

    func post(url: String, body: Data, timeoutMilliseconds: Int64, tlsPin: Data) async throws
        -> (status: Int, body: Data) {
        try await hang()
    }

    func upload(url: String, requestHeader: String, filePath: String, offset: UInt64, length: UInt64,
                timeoutMilliseconds: Int64, tlsPin: Data) async throws -> (status: Int, body: Data) {
        try await hang()
    }

    private func hang() async throws -> (status: Int, body: Data) {
        entered.set(true)
        do {
            try await Task.sleep(nanoseconds: 60_000_000_000)
        } catch {
            sawCancel.set(true)
            throw error
        }
        return (503, Data())
    }
}

final class Box<T>: @unchecked Sendable {
    var value: T?
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}

/// A dala-server on a free loopback port, made as an organisation makes one: the desk's root key
/// (dala desk keygen), a server initialised for that organisation, and an invite the root key signs
/// (dala desk invite). The binaries come from ctest's environment.
struct TestServer {
    let process: Process
    let invite: String

    init(dir: URL, uses: Int = 1) throws {
        let env = ProcessInfo.processInfo.environment
        guard let server = env["DALA_SERVER_BIN"], let cli = env["DALA_CLI_BIN"] else {
            throw XCTSkip("DALA_SERVER_BIN or DALA_CLI_BIN is not set")
        }
        let data = dir.appendingPathComponent("srv").path
        let key = dir.appendingPathComponent("org.key").path
        let desk = ["DALA_PASSPHRASE": "desk"]
        let org = try Self.run(cli, ["desk", "keygen", "--out", key, "--name", "KIBHR",
                                     "--kdf-ops", "1", "--kdf-mem-mib", "8"], env: desk)
        XCTAssertTrue(org.hasPrefix("DALA-ORG1-") && !org.contains("\n"), "desk keygen prints the identity alone: \(org)")
        let initOut = try Self.run(server, ["init", "--data", data, "--organisation", org])
        let serverKey = String(initOut.split(separator: "\n").last ?? "")
        XCTAssertTrue(serverKey.count == 64 && serverKey.allSatisfy(\.isHexDigit), "server init ends with its key: \(initOut)")
        let port = Self.freePort()
        invite = try Self.run(cli, ["desk", "invite", "--key", key, "--server-key", serverKey,
                                    "--url", "http://127.0.0.1:\(port)", "--uses", "\(uses)"], env: desk)
        XCTAssertTrue(invite.hasPrefix("DALA2-") && !invite.contains("\n"), "desk invite prints the invite alone: \(invite)")
        process = Process()
        process.executableURL = URL(fileURLWithPath: server)
        process.arguments = ["run", "--data", data, "--listen", "127.0.0.1:\(port)", "--quiet"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        _ = out.fileHandleForReading.availableData  // "listening on ..."
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }

    static func run(_ path: String, _ args: [String], env: [String: String] = [:]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw DalaError.io("\(path) \(args) failed") }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
