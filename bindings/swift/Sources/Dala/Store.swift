import CDala
import Foundation

/// One encrypted report store. Thread-safe (the C store serialises its calls), so it is `Sendable`.
/// `close()` is idempotent; a call after it throws `DalaError.closed`; `deinit` closes as a backstop.
public final class Store: @unchecked Sendable {
    private let lock = NSLock()
    private var handle: OpaquePointer?
    private var users = 0
    private let idle = NSCondition()

    /// Argon2id cost for passphrase-protected stores (the library's defaults: 3 passes, 64 MiB).
    public struct Options: Sendable {
        public var kdfOpsLimit: UInt64 = 3
        public var kdfMemLimit: UInt64 = 64 << 20
        public var deleteAfterDelivery = false
        public init() {}
    }

    private init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        if let h = handle { dala_store_close(h) }
    }

    /// Creates a store under a passphrase (its bytes are wiped after use).
    public static func create(at path: String, passphrase: inout [UInt8], options: Options = Options()) throws -> Store {
        defer { wipe(&passphrase) }
        return try make(path, passphrase, DALA_CREDENTIAL_PASSPHRASE, options, create: true)
    }

    /// Opens a store; a wrong passphrase throws `DalaError.wrongKey`. The options must give the Argon2id
    /// cost the store was made with: the key file does not record it, and another cost reads as a wrong
    /// passphrase.
    public static func open(at path: String, passphrase: inout [UInt8], options: Options = Options()) throws -> Store {
        defer { wipe(&passphrase) }
        return try make(path, passphrase, DALA_CREDENTIAL_PASSPHRASE, options, create: false)
    }

    /// Creates a store under a 32-byte key from the platform (the Keychain, or one the Secure Enclave wraps):
    /// no passphrase, no Argon2id. The key's bytes are wiped after use.
    public static func create(at path: String, key: inout [UInt8], options: Options = Options()) throws -> Store {
        defer { wipe(&key) }
        return try make(path, key, DALA_CREDENTIAL_RAW_KEY, options, create: true)
    }

    /// Opens a store made with `create(at:key:)`; another key throws `DalaError.wrongKey`. The key's bytes are
    /// wiped after use.
    public static func open(at path: String, key: inout [UInt8], options: Options = Options()) throws -> Store {
        defer { wipe(&key) }
        return try make(path, key, DALA_CREDENTIAL_RAW_KEY, options, create: false)
    }

    private static func make(_ path: String, _ secret: [UInt8], _ kind: dala_credential_kind, _ options: Options,
                             create: Bool) throws -> Store {
        try cText(path, "the path")
        var o = kdfOptions(options)
        if create { o.delete_after_delivery = options.deleteAfterDelivery ? 1 : 0 }
        var store: OpaquePointer?
        try withCredential(secret, kind: kind) { cred in
            try Dala.check { create ? dala_store_create(path, cred, &o, &store, $0) : dala_store_open(path, cred, &o, &store, $0) }
        }
        return Store(handle: store!)
    }

    /// Panic wipe: destroys the key first; needs no passphrase.
    public static func wipe(at path: String) throws {
        try cText(path, "the path")
        try Dala.check { dala_store_wipe(path, $0) }
    }

    /// Panic wipe that first destroys the store's platform key (`SecItemDelete`) through `destroyPlatformKey`,
    /// which returns true when the key is gone; then does what `wipe(at:)` does. Everything is attempted even
    /// if a step fails; then the first failure is thrown (`DalaError.io` if the key could not be destroyed).
    public static func wipe(at path: String, destroyPlatformKey: () -> Bool) throws {
        try cText(path, "the path")
        try withoutActuallyEscaping(destroyPlatformKey) { destroy in
            let box = DestroyBox(destroy)
            var o = dala_store_options()
            dala_store_options_init(&o)
            o.destroy_platform_key_context = Unmanaged.passUnretained(box).toOpaque()
            o.destroy_platform_key = { ctx in
                guard let ctx else { return 1 }
                return Unmanaged<DestroyBox>.fromOpaque(ctx).takeUnretainedValue().destroy() ? 0 : 1
            }
            try withExtendedLifetime(box) { _ = try Dala.check { dala_store_wipe_with_options(path, &o, $0) } }
        }
    }

    /// Re-wraps the store's key under a new passphrase: instant, the database is not rewritten (`rekey` for
    /// new keys). No store may be open on it. Both arrays are wiped.
    public static func changePassphrase(at path: String, from old: inout [UInt8], to new: inout [UInt8],
                                        options: Options = Options()) throws {
        try cText(path, "the path")
        defer {
            wipe(&old)
            wipe(&new)
        }
        var o = kdfOptions(options)
        try withCredential(old) { oc in
            try withCredential(new) { nc in try Dala.check { dala_store_change_credential(path, oc, nc, &o, $0) } }
        }
    }

    /// What `rekey` is doing: the database (0 of 1, then 1 of 1) and, at the same time, the drafts' attachments (bytes).
    public enum RekeyPhase: Int32, Sendable {
        case database = 1, attachments = 2
    }

    /// Re-keys the store (no store may be open on it): the database and the drafts' attachments are encrypted
    /// again under new keys, and the key file then wraps the new key under the new passphrase. Killed at any
    /// point, the store opens with one passphrase or the other and loses nothing; call it again to finish.
    /// Afterwards an old key file with the old passphrase opens nothing. Takes about as long as copying the
    /// store two or three times; `progress` is called on this thread. Both arrays are wiped.
    public static func rekey(at path: String, from old: inout [UInt8], to new: inout [UInt8],
                             options: Options = Options(),
                             progress: (_ phase: RekeyPhase, _ done: UInt64, _ total: UInt64) -> Void = { _, _, _ in }) throws {
        try cText(path, "the path")
        defer {
            wipe(&old)
            wipe(&new)
        }
        var o = kdfOptions(options)
        try withoutActuallyEscaping(progress) { report in
            let box = RekeyBox(report)
            let ctx = Unmanaged.passUnretained(box).toOpaque()
            try withCredential(old) { oc in
                try withCredential(new) { nc in
                    try withExtendedLifetime(box) {
                        _ = try Dala.check {
                            dala_store_rekey(path, oc, nc, &o, { ctx, phase, done, total in
                                guard let ctx, let phase = RekeyPhase(rawValue: phase) else { return }
                                Unmanaged<RekeyBox>.fromOpaque(ctx).takeUnretainedValue().progress(phase, done, total)
                            }, ctx, $0)
                        }
                    }
                }
            }
        }
    }

    /// Sets (or replaces) a duress passphrase (no store may be open on it): opening the store with it destroys
    /// the store's key and data and opens a new, empty store, taking the same time as any open. Read
    /// docs/duress.md before offering it. Both arrays are wiped.
    public static func setDuress(at path: String, passphrase: inout [UInt8], duressPassphrase: inout [UInt8],
                                 options: Options = Options()) throws {
        try cText(path, "the path")
        defer {
            wipe(&passphrase)
            wipe(&duressPassphrase)
        }
        var o = kdfOptions(options)
        try withCredential(passphrase) { cred in
            try duressPassphrase.withUnsafeBufferPointer { d in
                _ = try Dala.check { dala_store_set_duress(path, cred, d.baseAddress, d.count, &o, $0) }
            }
        }
    }

    /// Removes the duress passphrase, if any (no store may be open on it). The array is wiped.
    public static func clearDuress(at path: String, passphrase: inout [UInt8], options: Options = Options()) throws {
        try cText(path, "the path")
        defer { wipe(&passphrase) }
        var o = kdfOptions(options)
        try withCredential(passphrase) { cred in _ = try Dala.check { dala_store_clear_duress(path, cred, &o, $0) } }
    }

    /// Closes the store once every call in progress has returned. Idempotent.
    public func close() {
        idle.lock()
        while users > 0 { idle.wait() }
        let h = handle
        handle = nil
        idle.unlock()
        if let h { dala_store_close(h) }
    }

    /// Runs body with the live handle (calls in progress keep close() waiting).
    @discardableResult
    func use<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        idle.lock()
        guard let h = handle else {
            idle.unlock()
            throw DalaError.closed("this store is closed")
        }
        users += 1
        idle.unlock()
        defer {
            idle.lock()
            users -= 1
            idle.broadcast()
            idle.unlock()
        }
        return try body(h)
    }

    // MARK: Reports

    /// Creates and saves a new draft; form is "name/version".
    public func createReport(form: String) throws -> Report {
        try use { s in
            var r: OpaquePointer?
            let form = try cText(form, "the form")
            try Dala.check { dala_report_create(s, form, &r, $0) }
            defer { dala_report_free(r) }
            var id = dala_report_id()
            dala_report_get_id(r, &id)
            // A new draft is empty: built from the handle, no JSON round trip.
            return Report(id: hex(id), version: dala_report_get_version(r), form: String(cString: dala_report_get_form(r)),
                          state: .draft, narrative: "", fields: [:], priority: 0, attachments: [])
        }
    }

    /// The latest version (sealed versions are verified on read).
    public func report(id: String) throws -> Report {
        try use { s in
            var rid = try reportID(id)
            var r: OpaquePointer?
            try Dala.check { dala_report_load(s, &rid, &r, $0) }
            defer { dala_report_free(r) }
            return try Report.decode(json: json(r!))
        }
    }

    /// One version of a report (`dala_report_load_version`).
    public func report(id: String, version: UInt32) throws -> Report {
        try use { s in
            var rid = try reportID(id)
            var r: OpaquePointer?
            try Dala.check { dala_report_load_version(s, &rid, version, &r, $0) }
            defer { dala_report_free(r) }
            return try Report.decode(json: json(r!))
        }
    }

    /// This device's Ed25519 public key (32 bytes).
    public func deviceKey() throws -> [UInt8] {
        try use { s in
            var key = [UInt8](repeating: 0, count: 32)
            try Dala.check { dala_store_get_device_key(s, &key, $0) }
            return key
        }
    }

    /// Saves the value's narrative, fields and priority into its draft (a sealed report gets a new version).
    @discardableResult
    public func save(_ report: Report) throws -> Report {
        try write(report, seal: false)
    }

    /// Saves, then signs, seals to every destination and queues, in one transaction. Returns the value with
    /// its new state (its `attachments` are as they were read: `report(id:)` reads them again).
    @discardableResult
    public func seal(_ report: Report) throws -> Report {
        try write(report, seal: true)
    }

    // dala_report_set_people with C strings that live for the call.
    private func setPeople(_ h: OpaquePointer, _ key: String, _ people: [Report.Person]) throws {
        let names = people.map { strdup($0.name) }, roles = people.map { strdup($0.role) }
        defer { (names + roles).forEach { free($0) } }
        guard !names.contains(where: { $0 == nil }) && !roles.contains(where: { $0 == nil }) else {
            throw DalaError.internalError("out of memory")
        }
        var list = zip(names, roles).map { dala_person(name: UnsafePointer($0.0!), role: UnsafePointer($0.1!)) }
        try Dala.check { dala_report_set_people(h, key, &list, list.count, $0) }
    }

    private func write(_ value: Report, seal: Bool) throws -> Report {
        try cText(value.narrative, "the narrative")
        for (key, field) in value.fields {
            try cText(key, "a field key")
            switch field {
            case .text(let v), .decimal(let v): try cText(v, "a field's value")
            case .people(let people):
                for p in people {
                    try cText(p.name, "a person's name")
                    try cText(p.role, "a person's role")
                }
            default: break
            }
        }
        return try use { s in
            var rid = try reportID(value.id)
            var r: OpaquePointer?
            try Dala.check { dala_report_edit(s, &rid, &r, $0) }
            defer { dala_report_free(r) }
            let h = r!
            try Dala.check { dala_report_set_narrative(h, value.narrative, $0) }
            try Dala.check { dala_report_set_priority(h, value.priority, $0) }
            // Fields removed from the value: every key read first (removing one renumbers the rest).
            let stored = (0..<dala_report_get_field_count(h)).compactMap { i in
                dala_report_get_field_key(h, i).map { String(cString: $0) }
            }
            for key in stored where value.fields[key] == nil {
                try Dala.check { dala_report_remove_field(h, key, $0) }
            }
            for (key, field) in value.fields {
                switch field {
                case .text(let v): try Dala.check { dala_report_set_text(h, key, v, $0) }
                case .integer(let v): try Dala.check { dala_report_set_integer(h, key, v, $0) }
                case .decimal(let v): try Dala.check { dala_report_set_decimal(h, key, v, $0) }
                case .boolean(let v): try Dala.check { dala_report_set_boolean(h, key, v ? 1 : 0, $0) }
                case .timestamp(let v): try Dala.check { dala_report_set_timestamp(h, key, v, $0) }
                case .geo(let v):
                    var g = dala_geo(latitude: v.latitude, longitude: v.longitude, accuracy_m: v.accuracyM)
                    try Dala.check { dala_report_set_geo(h, key, &g, $0) }
                case .people(let people): try setPeople(h, key, people)
                case .other: break  // left as it is
                }
            }
            // The location only when the value changed it since it was read: a value from before this package
            // knew locations leaves the stored one as it is.
            if value.location != value.locationAsRead {
                if let v = value.location {
                    var g = dala_geo(latitude: v.latitude, longitude: v.longitude, accuracy_m: v.accuracyM)
                    try Dala.check { dala_report_set_location(h, &g, $0) }
                } else {
                    try Dala.check { dala_report_set_location(h, nil, $0) }
                }
            }
            if seal {
                try Dala.check { dala_report_seal(s, h, $0) }
            } else {
                try Dala.check { dala_report_save(s, h, $0) }
            }
            if dala_report_get_version(h) == value.version {
                // The same version: what was written is the value; only its state moved.
                var out = value
                out.state = Report.State(rawValue: String(cString: dala_report_state_name(dala_report_get_state(h)))) ?? value.state
                out.locationAsRead = value.location  // what the store holds now
                return out
            }
            return try Report.decode(json: json(h))  // a new version (the value was sealed): read it whole
        }
    }

    public func deleteDraft(id: String) throws {
        try use { s in
            var rid = try reportID(id)
            try Dala.check { dala_report_delete_draft(s, &rid, $0) }
        }
    }

    /// Checks every database page (slow on large stores); `DalaError.corrupt` when damaged.
    public func check() throws {
        try use { s in _ = try Dala.check { dala_store_check(s, $0) } }
    }

    /// Whether a report's content is purged from this phone once every destination holds it.
    public func setDeleteAfterDelivery(_ enabled: Bool) throws {
        try use { s in _ = try Dala.check { dala_store_set_delete_after_delivery(s, enabled ? 1 : 0, $0) } }
    }

    /// Counts of a destination's outbox (the destination `join(invite:)` returned).
    public func outboxStats(destination: String) throws -> OutboxStats {
        try use { s in
            var st = dala_outbox_stats()
            _ = try Dala.check { dala_outbox_get_stats(s, destination, &st, $0) }
            return OutboxStats(pending: st.pending, inFlight: st.in_flight, delivered: st.delivered,
                               rejected: st.rejected, nextAttemptMs: st.next_attempt_ms)
        }
    }

    /// Queues a rejected report again, exactly as it was sealed.
    public func retry(id: String) throws {
        try use { s in
            var rid = try reportID(id)
            try Dala.check { dala_report_retry(s, &rid, $0) }
        }
    }

    /// Every report's latest version, newest first.
    public func reports() throws -> [Report] {
        let ids: [String] = try use { s in
            var list: OpaquePointer?
            try Dala.check { dala_store_list_reports(s, &list, $0) }
            defer { dala_report_list_free(list) }
            return try (0..<dala_report_list_count(list)).map { i in
                var info = dala_report_info()
                try Dala.check { dala_report_list_get(list, i, &info, $0) }
                return hex(info.id)
            }
        }
        return try ids.map { try report(id: $0) }
    }

    /// A page of the reports' latest versions, newest first (`dala_store_list_reports_page`). A report keeps
    /// its place through its versions, so paging while reports are edited neither skips nor repeats one.
    /// `after`: the `next` of the page before; `states`: any when empty; `form`: "name" (every version) or
    /// "name/version", any when nil. Past the end: an empty page.
    public func reports(limit: Int = 50, after: String? = nil, states: Set<Report.State> = [],
                        form: String? = nil) throws -> ReportPage {
        try use { s in
            var o = dala_report_list_options()
            dala_report_list_options_init(&o)
            o.limit = UInt32(clamping: limit)
            for state in states { o.states |= 1 << state.number }
            var list: OpaquePointer?
            try (after ?? "").withCString { a in
                try (form ?? "").withCString { f in
                    o.after = after == nil ? nil : a
                    o.form = form == nil ? nil : f
                    try Dala.check { dala_store_list_reports_page(s, &o, &list, $0) }
                }
            }
            defer { dala_report_list_free(list) }
            let items = try (0..<dala_report_list_count(list)).map { i -> ReportInfo in
                var info = dala_report_info()
                try Dala.check { dala_report_list_get(list, i, &info, $0) }
                return ReportInfo(id: hex(info.id), version: info.version, state: Report.State(number: info.state),
                                  createdMs: info.created_ms, updatedMs: info.updated_ms, form: String(cString: info.form))
            }
            return ReportPage(reports: items, next: dala_report_list_next(list).map { String(cString: $0) })
        }
    }

    // MARK: Attachments

    /// Adds an attachment to the report's draft from memory (encrypted as it is written).
    @discardableResult
    public func attach(_ data: Data, mimeType: String, to reportID: String) throws -> String {
        try use { s in
            var rid = try self.reportID(reportID)
            var w: OpaquePointer?
            let mimeType = try cText(mimeType, "the MIME type")
            try Dala.check { dala_attachment_writer_open(s, &rid, mimeType, &w, $0) }
            defer { dala_attachment_writer_free(w) }
            try data.withUnsafeBytes { raw in
                let p = raw.bindMemory(to: UInt8.self)
                try Dala.check { dala_attachment_writer_write(w, p.baseAddress, p.count, $0) }
            }
            var id = dala_attachment_id()
            try Dala.check { dala_attachment_writer_finish(w, &id, $0) }
            return withUnsafeBytes(of: id.bytes) { Array($0) }.map { String(format: "%02x", $0) }.joined()
        }
    }

    /// Streams a file into a new attachment of the report's draft, encrypting as it reads (never whole in
    /// memory). Returns the attachment's id.
    @discardableResult
    public func attach(fileAt url: URL, mimeType: String, to reportID: String) throws -> String {
        guard url.isFileURL else { throw DalaError.invalidArgument("attach(fileAt:) takes a file URL") }
        try cText(url.path, "the file's path")
        return try use { s in
            var rid = try self.reportID(reportID)
            var id = dala_attachment_id()
            try Dala.check { dala_attachment_import_file(s, &rid, url.path, mimeType, &id, $0) }
            return withUnsafeBytes(of: id.bytes) { Array($0) }.map { String(format: "%02x", $0) }.joined()
        }
    }

    /// The attachments of the report's latest version, oldest first.
    public func attachments(of reportID: String) throws -> [Report.Attachment] {
        try use { s in
            var rid = try self.reportID(reportID)
            var list: OpaquePointer?
            try Dala.check { dala_store_list_attachments(s, &rid, &list, $0) }
            defer { dala_attachment_list_free(list) }
            return try (0..<dala_attachment_list_count(list)).map { i in
                var info = dala_attachment_info()
                try Dala.check { dala_attachment_list_get(list, i, &info, $0) }
                let hash = withUnsafeBytes(of: info.plaintext_hash) { Array($0) }.map { String(format: "%02x", $0) }.joined()
                return Report.Attachment(id: withUnsafeBytes(of: info.id.bytes) { Array($0) }
                                             .map { String(format: "%02x", $0) }.joined(),
                                         mime: String(cString: info.mime_type), size: info.size, plaintextHash: hash)
            }
        }
    }

    /// Removes an attachment from the report's draft (its file is destroyed).
    public func removeAttachment(id: String) throws {
        try use { s in
            var aid = dala_attachment_id()
            try Dala.check { dala_attachment_id_parse(id, &aid, $0) }
            try Dala.check { dala_attachment_remove(s, &aid, $0) }
        }
    }

    /// Reads an attachment back, verified (a damaged file throws `DalaError.verify`).
    public func attachment(id: String) throws -> Data {
        var out = Data()
        try attachment(id: id) { out.append($0) }
        return out
    }

    /// Streams an attachment, decrypted piece by piece (at most 64 KiB each) into `body`: a video is never whole
    /// in memory. The pieces are verified as they come and the whole against its recorded hash at the end:
    /// `DalaError.verify` (thrown after the last piece) if the file was altered, so act on the content only
    /// once this returns. `body` may throw to stop early.
    public func attachment(id: String, chunks body: (Data) throws -> Void) throws {
        try use { s in
            var aid = dala_attachment_id()
            try Dala.check { dala_attachment_id_parse(id, &aid, $0) }
            var r: OpaquePointer?
            try Dala.check { dala_attachment_reader_open(s, &aid, &r, $0) }
            defer { dala_attachment_reader_free(r) }
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                var n = 0
                try Dala.check { dala_attachment_reader_read(r, &buf, buf.count, &n, $0) }
                if n == 0 { return }
                try body(Data(buf[0..<n]))
            }
        }
    }

    // MARK: Delivery

    /// Joins an organisation's server from an invite its root key signed (works offline); returns the
    /// destination name. The organisation gets only what is sealed from now on, unless `includeExisting`
    /// (ask the user first): then every report this phone already holds is sealed to it as well.
    @discardableResult
    public func join(invite: String, includeExisting: Bool = false) throws -> String {
        try cText(invite, "the invite")
        return try use { s in
            var dest: UnsafeMutablePointer<CChar>?
            var options = dala_join_options()
            dala_join_options_init(&options)
            options.include_existing = includeExisting ? 1 : 0
            try Dala.check { dala_store_join(s, invite, &options, &dest, $0) }
            defer { dala_string_free(dest) }
            return String(cString: dest!)
        }
    }

    /// A server this store delivers to: whose it is and how the last contact went.
    public struct Server: Sendable, Equatable {
        /// The destination's name, as `join(invite:)` returned it.
        public let destination: String
        /// The organisation's name, from its signed statement: show it with `fingerprint` at join.
        public let organisation: String
        /// The first address.
        public let url: String
        /// The server's Ed25519 key (32 bytes): answers and receipts are verified against it.
        public let serverKey: [UInt8]
        public let enrolled: Bool
        /// What went wrong at the last contact; "" when it went well.
        public let lastError: String
        /// The organisation's root key as 6 groups of 5 digits, to compare in person; "" for a 0.1 server.
        public let fingerprint: String
        /// The organisation's root key (32 bytes); all zero for a server joined with a 0.1 invite.
        public let organisationKey: [UInt8]
    }

    /// The servers this store delivers to.
    public func servers() throws -> [Server] {
        try use { s in
            var list: OpaquePointer?
            try Dala.check { dala_store_list_servers(s, &list, $0) }
            defer { dala_server_list_free(list) }
            return try (0..<dala_server_list_count(list)).map { i in
                var info = dala_server_info()
                try Dala.check { dala_server_list_get(list, i, &info, $0) }
                return Server(destination: String(cString: info.destination), organisation: String(cString: info.organisation),
                              url: String(cString: info.url), serverKey: withUnsafeBytes(of: info.server_key) { Array($0) },
                              enrolled: info.enrolled != 0, lastError: String(cString: info.last_error),
                              fingerprint: String(cString: info.fingerprint),
                              organisationKey: withUnsafeBytes(of: info.organisation_key) { Array($0) })
            }
        }
    }

    /// Seals the drafts of these reports in one transaction: all of them, or none.
    public func sealAll(ids: [String]) throws {
        try use { s in
            let all = try ids.map { try reportID($0) }
            try all.withUnsafeBufferPointer { p in
                _ = try Dala.check { dala_store_seal_reports(s, p.baseAddress, p.count, $0) }
            }
        }
    }

    public struct Receipt: Sendable, Equatable {
        public let reportID: String
        public let version: UInt32
        public let sequence: UInt64
        public let verified: Bool
    }

    public func receipts() throws -> [Receipt] {
        try use { s in
            var list: OpaquePointer?
            try Dala.check { dala_store_list_receipts(s, &list, $0) }
            defer { dala_receipt_list_free(list) }
            return try (0..<dala_receipt_list_count(list)).map { i in
                var info = dala_receipt_info()
                try Dala.check { dala_receipt_list_get(list, i, &info, $0) }
                return Receipt(reportID: hex(info.id), version: info.version, sequence: info.sequence,
                               verified: info.verified != 0)
            }
        }
    }

    // MARK: Helpers

    private func json(_ r: OpaquePointer) throws -> String {
        var out: UnsafeMutablePointer<CChar>?
        try Dala.check { dala_report_to_json(r, &out, $0) }
        defer { dala_string_free(out) }
        return String(cString: out!)
    }

    private func reportID(_ text: String) throws -> dala_report_id {
        var id = dala_report_id()
        try Dala.check { dala_report_id_parse(text, &id, $0) }
        return id
    }

    @discardableResult
    private static func withCredential<T>(_ bytes: [UInt8], kind: dala_credential_kind = DALA_CREDENTIAL_PASSPHRASE,
                                          _ body: (UnsafePointer<dala_credential>) throws -> T) throws -> T {
        try bytes.withUnsafeBufferPointer { p in
            var cred = dala_credential(kind: kind, bytes: p.baseAddress, length: p.count, key: nil, key_length: 0)
            return try body(&cred)
        }
    }

    private static func kdfOptions(_ options: Options) -> dala_store_options {
        var o = dala_store_options()
        dala_store_options_init(&o)
        o.kdf_opslimit = options.kdfOpsLimit
        o.kdf_memlimit = options.kdfMemLimit
        return o
    }

    static func wipe(_ bytes: inout [UInt8]) {
        for i in bytes.indices { bytes[i] = 0 }
    }
}

/// C strings end at a NUL: a Swift string holding one would reach the library cut short. Refused instead
/// (`DalaError.invalidArgument`), before anything is written.
@discardableResult
func cText(_ s: String, _ what: String) throws -> String {
    guard !s.utf8.contains(0) else { throw DalaError.invalidArgument("\(what) holds a NUL character, which the library cannot store") }
    return s
}

func hex(_ id: dala_report_id) -> String {
    withUnsafeBytes(of: id.bytes) { Array($0) }.map { String(format: "%02x", $0) }.joined()
}

/// What the C callbacks of `Store.rekey` and `Store.wipe(at:destroyPlatformKey:)` reach through their context.
private final class RekeyBox {
    let progress: (Store.RekeyPhase, UInt64, UInt64) -> Void
    init(_ progress: @escaping (Store.RekeyPhase, UInt64, UInt64) -> Void) { self.progress = progress }
}

private final class DestroyBox {
    let destroy: () -> Bool
    init(_ destroy: @escaping () -> Bool) { self.destroy = destroy }
}

/// One line of a report list: a report's latest version.
public struct ReportInfo: Sendable, Equatable {
    public let id: String
    public let version: UInt32
    public let state: Report.State
    public let createdMs: Int64
    public let updatedMs: Int64
    public let form: String
}

/// A page of reports, newest first, and where the next one starts (`nil`: this is the last).
public struct ReportPage: Sendable, Equatable {
    public let reports: [ReportInfo]
    public let next: String?
}

extension Report.State {
    /// `dala_report_state`'s number.
    var number: UInt32 {
        switch self {
        case .draft: return 0
        case .sealed: return 1
        case .queued: return 2
        case .delivered: return 3
        case .rejected: return 4
        }
    }

    init(number: dala_report_state) {
        switch number.rawValue {
        case 0: self = .draft
        case 1: self = .sealed
        case 2: self = .queued
        case 3: self = .delivered
        default: self = .rejected
        }
    }
}

/// Counts of one destination's outbox (`dala_outbox_stats`).
public struct OutboxStats: Sendable, Equatable {
    public let pending: UInt64
    public let inFlight: UInt64
    public let delivered: UInt64
    public let rejected: UInt64
    /// The earliest pending retry (Unix ms), 0 when nothing waits.
    public let nextAttemptMs: Int64
}

/// The loaded libdala (`dala_version`, `dala_version_number`).
public enum Library {
    /// "major.minor.patch" of the library in use (it may be newer than this package).
    public static var version: String { String(cString: dala_version()) }
    /// major * 10000 + minor * 100 + patch.
    public static var versionNumber: Int { Int(dala_version_number()) }
}
