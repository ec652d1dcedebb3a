import Dala
import Foundation
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
        let s = try Store.open(at: dir.appendingPathComponent("s").path, passphrase: &pass)
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

    func testWrongPassphraseIsItsOwnCase() throws {
        try newStore().close()
        var wrong = Array("guess".utf8)
        XCTAssertThrowsError(try Store.open(at: dir.appendingPathComponent("s").path, passphrase: &wrong)) { error in
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
        XCTAssertTrue(try s.join(invite: server.invite).hasPrefix("org-"))
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
    }

    func testReadmeSampleRunsAsShown() async throws {
        let server = try TestServer(dir: dir)
        defer { server.stop() }
        let result = try await ReadmeSample.run(path: dir.appendingPathComponent("phone").path, invite: server.invite)
        XCTAssertEqual(result.delivered, 1)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}

/// A dala-server on a free loopback port (the binaries come from ctest's environment).
struct TestServer {
    let process: Process
    let invite: String

    init(dir: URL) throws {
        let env = ProcessInfo.processInfo.environment
        guard let server = env["DALA_SERVER_BIN"], let cli = env["DALA_CLI_BIN"] else {
            throw XCTSkip("DALA_SERVER_BIN or DALA_CLI_BIN is not set")
        }
        let data = dir.appendingPathComponent("srv").path
        let org = try Self.run(cli, ["desk", "keygen", "--out", dir.appendingPathComponent("org.key").path,
                                     "--kdf-ops", "1", "--kdf-mem-mib", "8"], env: ["DALA_PASSPHRASE": "desk"])
        _ = try Self.run(server, ["init", "--data", data, "--recipient", org])
        let port = Self.freePort()
        invite = try Self.run(server, ["invite", "--data", data, "--url", "http://127.0.0.1:\(port)", "--uses", "1"])
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
