// Overhead of the Swift binding (issue 5): one durable seal through the Dala module (create a draft, set
// a field and a 1 KB narrative, seal) beside the same C calls made directly, in the same process and
// store, alternating rounds. Prints each figure beside the limit. Run: swift run -c release DalaBench
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
let ok = ratio <= 1.2
print(String(format: "%@ %12.3f x    <= %12.3f x     %@  (issue 5 target)",
             "seal via Swift / via C".padding(toLength: 44, withPad: " ", startingAt: 0), ratio, 1.2, ok ? "ok  " : "MISS"))
exit(ok ? 0 : 1)
