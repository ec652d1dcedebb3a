// Overhead of the Swift binding (issues 5 and 17): one durable seal through the Dala module (create a draft,
// set a field and a 1 KB narrative, seal) beside the same C calls made directly, in the same process and
// store, alternating rounds; and, given the directory of dala and dala-server (second argument), a sync of
// 100 queued reports to a dala-server on 127.0.0.1 through `Store.sync` (async, a progress closure) beside
// dala_sync_run_once called directly for a second store, taking turns. Prints each figure beside the limit.
// Run: swift run -c release DalaBench [SEALS] [BIN_DIR]
import CDala
import Dala
import Foundation

let n = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 300 : 300
let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dala-swift-bench-\(UUID().uuidString)")
try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: dir) }
var narrative = ""
while narrative.utf8.count < 1000 { narrative += "detained during a peaceful run in Oral; no grounds given. " }
narrative = String(narrative.prefix(1000))

var pass = Array("bench".utf8)
var options = Store.Options()
options.kdfOpsLimit = 1
options.kdfMemLimit = 8 << 20
let path = dir.appendingPathComponent("s").path
let store = try Store.create(at: path, passphrase: &pass, options: options)

// The C calls go through a second handle on the same store (the Swift Store keeps its handle private); both
// live in this process and take turns, round by round.
var cpass = Array("bench".utf8)
var cstore: OpaquePointer?
cpass.withUnsafeBufferPointer { p in
    var cred = dala_credential(kind: DALA_CREDENTIAL_PASSPHRASE, bytes: p.baseAddress, length: p.count,
                               key: nil, key_length: 0)
    var copts = dala_store_options()
    dala_store_options_init(&copts)
    copts.kdf_opslimit = 1
    copts.kdf_memlimit = 8 << 20
    _ = dala_store_open(path, &cred, &copts, &cstore, nil)
}
guard let c = cstore else { fatalError("the C handle did not open") }

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e6 }
func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }

var swiftTimes: [Double] = [], cTimes: [Double] = []
for round in 0..<4 {
    var ts: [Double] = [], tc: [Double] = []
    for _ in 0..<n {
        let t0 = now()
        var r = try store.createReport(form: "detention/1")
        r.fields["place"] = .text("Oral")
        r.narrative = narrative
        try store.seal(r)
        ts.append(now() - t0)
    }
    for _ in 0..<n {
        let t0 = now()
        var r: OpaquePointer?
        guard dala_report_create(c, "detention/1", &r, nil) == DALA_OK,
              dala_report_set_text(r, "place", "Oral", nil) == DALA_OK,
              dala_report_set_narrative(r, narrative, nil) == DALA_OK,
              dala_report_seal(c, r, nil) == DALA_OK else { fatalError("a C seal failed") }
        dala_report_free(r)
        tc.append(now() - t0)
    }
    if round > 0 {  // round 0 warms up
        swiftTimes += ts
        cTimes += tc
    }
}
dala_store_close(c)
store.close()
let ps = median(swiftTimes), pc = median(cTimes), ratio = ps / pc
print("Swift binding overhead: \(n) seals per path per round, 3 rounds after a warm-up, medians")
print(String(format: "  seal through Swift %.3f ms, through the C API %.3f ms", ps, pc))
var ok = ratio <= 1.2
print(String(format: "%@ %12.3f x    <= %12.3f x     %@  (issue 5 target)",
             "seal via Swift / via C".padding(toLength: 44, withPad: " ", startingAt: 0), ratio, 1.2, ok ? "ok  " : "MISS"))

// The sync: two stores joined to one dala-server, the same reports queued in each before each round, one
// synced through Store.sync and the other through dala_sync_run_once, in alternating order.
if CommandLine.arguments.count > 2 {
    let bin = CommandLine.arguments[2], work = dir.path
    let perRound = 100, rounds = 9  // the first round warms up
    func shell(_ command: String) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        p.standardError = FileHandle.nullDevice
        return p
    }
    func output(_ p: Process) throws -> String {
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { fatalError("\(p.arguments ?? []) failed") }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    let serverKey = try output(shell(
        "export DALA_PASSPHRASE=bench; org=$('\(bin)/dala' desk keygen --out '\(work)/org.key' --kdf-ops 1 " +
        "--kdf-mem-mib 8 2>/dev/null) && '\(bin)/dala-server' init --data '\(work)/srv' --organisation \"$org\" " +
        "2>/dev/null | tail -1"))
    // The server on a port of its choosing: its first line says which ("listening on 127.0.0.1:PORT").
    let server = shell("exec '\(bin)/dala-server' run --data '\(work)/srv' --listen 127.0.0.1:0 --quiet")
    let listening = Pipe()
    server.standardOutput = listening
    try server.run()
    defer { server.terminate(); server.waitUntilExit() }
    var line = ""
    while !line.contains("\n") {
        let more = listening.fileHandleForReading.availableData
        if more.isEmpty { fatalError("dala-server did not start") }
        line += String(decoding: more, as: UTF8.self)
    }
    guard let port = line.split(separator: "\n")[0].split(separator: ":").last.map(String.init) else {
        fatalError("no port in '\(line)'")
    }
    let invite = try output(shell(
        "DALA_PASSPHRASE=bench '\(bin)/dala' desk invite --key '\(work)/org.key' --server-key \(serverKey) " +
        "--url http://127.0.0.1:\(port) --uses 2 2>/dev/null"))

    var kj = [UInt8](repeating: 8, count: 32)
    let sj = try Store.create(at: dir.appendingPathComponent("sync-swift").path, key: &kj, options: options)
    _ = try sj.join(invite: invite)
    var kc = [UInt8](repeating: 9, count: 32)
    let scSwift = try Store.create(at: dir.appendingPathComponent("sync-c").path, key: &kc, options: options)
    _ = try scSwift.join(invite: invite)
    scSwift.close()
    let ckey = [UInt8](repeating: 9, count: 32)
    var sc: OpaquePointer?
    ckey.withUnsafeBufferPointer { k in
        var cred = dala_credential(kind: DALA_CREDENTIAL_RAW_KEY, bytes: k.baseAddress, length: k.count, key: nil, key_length: 0)
        _ = dala_store_open(dir.appendingPathComponent("sync-c").path, &cred, nil, &sc, nil)
    }
    guard let csync = sc else { fatalError("the C handle of the second store did not open") }
    var viaSwift: [Double] = [], viaC: [Double] = []
    for round in 0..<rounds {
        for _ in 0..<perRound {
            var r = try sj.createReport(form: "detention/1")
            r.fields["place"] = .text("Oral")
            r.narrative = narrative
            try sj.seal(r)
            var cr: OpaquePointer?
            guard dala_report_create(csync, "detention/1", &cr, nil) == DALA_OK,
                  dala_report_set_text(cr, "place", "Oral", nil) == DALA_OK,
                  dala_report_set_narrative(cr, narrative, nil) == DALA_OK,
                  dala_report_seal(csync, cr, nil) == DALA_OK else { fatalError("a C seal failed") }
            dala_report_free(cr)
        }
        var ts = 0.0, tc = 0.0
        for turn in 0..<2 {
            if (turn == 0) == (round % 2 == 0) {
                let t0 = now()
                let r = try await sj.sync(timeoutMilliseconds: 60_000, progress: { _ in })
                ts = now() - t0
                guard r.delivered == UInt64(perRound), r.remaining == 0 else { fatalError("Swift sync delivered \(r.delivered)") }
            } else {
                var o = dala_sync_options()
                dala_sync_options_init(&o)
                o.timeout_ms = 60_000
                var r = dala_sync_result()
                let t0 = now()
                guard dala_sync_run_once(csync, &o, &r, nil) == DALA_OK else { fatalError("the C sync failed") }
                tc = now() - t0
                guard r.delivered == UInt64(perRound), r.remaining == 0 else { fatalError("C sync delivered \(r.delivered)") }
            }
        }
        if round > 0 {
            viaSwift.append(ts)
            viaC.append(tc)
        }
    }
    dala_store_close(csync)
    sj.close()
    let ss = median(viaSwift), sc2 = median(viaC), sratio = ss / sc2
    print("  sync of \(perRound) queued reports to dala-server on loopback, \(rounds - 1) rounds after a warm-up, medians:")
    print(String(format: "  through Store.sync (async, progress closure) %.2f ms, through the C API %.2f ms", ss, sc2))
    let syncOk = sratio <= 1.2
    print(String(format: "%@ %12.3f x    <= %12.3f x     %@  (issue 17 target)",
                 "async sync via Swift / via C".padding(toLength: 44, withPad: " ", startingAt: 0), sratio, 1.2,
                 syncOk ? "ok  " : "MISS"))
    ok = ok && syncOk
}
exit(ok ? 0 : 1)
