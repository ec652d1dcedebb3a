import CDala
import Foundation

/// One version of a report, as a value. Read from the store (decoded from the library's report JSON,
/// docs/c-api.md), edited as a value, written back by `Store.save` or `Store.seal`.
public struct Report: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case draft, sealed, queued, delivered, rejected
    }

    /// A point on Earth (`dala_geo`): latitude -90...90, longitude -180...180, accuracy in metres (0: unknown).
    public struct GeoPoint: Codable, Sendable, Equatable {
        public var latitude: Double
        public var longitude: Double
        public var accuracyM: Double

        public init(latitude: Double, longitude: Double, accuracyM: Double = 0) {
            self.latitude = latitude
            self.longitude = longitude
            self.accuracyM = accuracyM
        }

        enum CodingKeys: String, CodingKey {
            case latitude, longitude
            case accuracyM = "accuracy_m"
        }
    }

    /// A person named in a report (`dala_person`), with their role ("detained", "witness"...; may be empty).
    public struct Person: Codable, Sendable, Equatable {
        public var name: String
        public var role: String

        public init(name: String, role: String = "") {
            self.name = name
            self.role = role
        }
    }

    /// A field's value: every type of the C API.
    public enum Field: Codable, Sendable, Equatable {
        case text(String)
        case integer(Int64)
        case decimal(String)
        case boolean(Bool)
        case timestamp(Int64)  // Unix milliseconds
        case geo(GeoPoint)
        case people([Person])
        case other(String)     // a type newer than this binding: kept as it is

        private enum Keys: String, CodingKey { case type, value }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            switch try c.decode(String.self, forKey: .type) {
            case "text": self = .text(try c.decode(String.self, forKey: .value))
            case "integer": self = .integer(try c.decode(Int64.self, forKey: .value))
            case "decimal": self = .decimal(try c.decode(String.self, forKey: .value))
            case "boolean": self = .boolean(try c.decode(Bool.self, forKey: .value))
            case "timestamp": self = .timestamp(try c.decode(Int64.self, forKey: .value))
            // Without a value: encoded by a package that kept these types opaque; kept as they are.
            case "geo": self = try c.decodeIfPresent(GeoPoint.self, forKey: .value).map { .geo($0) } ?? .other("geo")
            case "people": self = try c.decodeIfPresent([Person].self, forKey: .value).map { .people($0) } ?? .other("people")
            case let t: self = .other(t)
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            switch self {
            case .text(let v): try c.encode("text", forKey: .type); try c.encode(v, forKey: .value)
            case .integer(let v): try c.encode("integer", forKey: .type); try c.encode(v, forKey: .value)
            case .decimal(let v): try c.encode("decimal", forKey: .type); try c.encode(v, forKey: .value)
            case .boolean(let v): try c.encode("boolean", forKey: .type); try c.encode(v, forKey: .value)
            case .timestamp(let v): try c.encode("timestamp", forKey: .type); try c.encode(v, forKey: .value)
            case .geo(let v): try c.encode("geo", forKey: .type); try c.encode(v, forKey: .value)
            case .people(let v): try c.encode("people", forKey: .type); try c.encode(v, forKey: .value)
            case .other(let t): try c.encode(t, forKey: .type)
            }
        }
    }

    public struct Attachment: Codable, Sendable, Equatable {
        public let id: String
        public let mime: String
        public let size: UInt64
        public let plaintextHash: String

        init(id: String, mime: String, size: UInt64, plaintextHash: String) {
            self.id = id
            self.mime = mime
            self.size = size
            self.plaintextHash = plaintextHash
        }

        enum CodingKeys: String, CodingKey {
            case id, mime, size
            case plaintextHash = "plaintext_hash"
        }
    }

    public let id: String          // 32 hex characters
    public let version: UInt32
    public let form: String
    public internal(set) var state: State
    public var narrative: String
    public var fields: [String: Field]
    public var priority: Int32
    public internal(set) var attachments: [Attachment]
    /// Where the report was made (its capture metadata), if the app set it.
    public var location: GeoPoint?
    /// The content was deleted from this phone after every destination received it (delete-after-delivery):
    /// fields, narrative and attachments are gone; id, version, form and state remain.
    public internal(set) var isPurged: Bool
    /// The location as the store held it when this value was read: a save changes it only if `location` differs.
    var locationAsRead: GeoPoint?

    enum CodingKeys: String, CodingKey {
        case id, version, form, state, narrative, fields, priority, attachments, capture, purged
    }
    private struct Capture: Codable {
        var location: GeoPoint?
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        version = try c.decode(UInt32.self, forKey: .version)
        form = try c.decode(String.self, forKey: .form)
        state = try c.decode(State.self, forKey: .state)
        narrative = try c.decode(String.self, forKey: .narrative)
        fields = try c.decode([String: Field].self, forKey: .fields)
        priority = try c.decode(Int32.self, forKey: .priority)
        attachments = try c.decode([Attachment].self, forKey: .attachments)
        location = try c.decodeIfPresent(Capture.self, forKey: .capture)?.location
        locationAsRead = location
        isPurged = try c.decodeIfPresent(Bool.self, forKey: .purged) ?? false
    }

    public static func == (a: Report, b: Report) -> Bool {  // what the report holds, not what was read when
        a.id == b.id && a.version == b.version && a.form == b.form && a.state == b.state && a.narrative == b.narrative
            && a.fields == b.fields && a.priority == b.priority && a.attachments == b.attachments
            && a.location == b.location && a.isPurged == b.isPurged
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(version, forKey: .version)
        try c.encode(form, forKey: .form)
        try c.encode(state, forKey: .state)
        try c.encode(narrative, forKey: .narrative)
        try c.encode(fields, forKey: .fields)
        try c.encode(priority, forKey: .priority)
        try c.encode(attachments, forKey: .attachments)
        try c.encode(Capture(location: location), forKey: .capture)
        try c.encode(isPurged, forKey: .purged)
    }

    init(id: String, version: UInt32, form: String, state: State, narrative: String, fields: [String: Field],
         priority: Int32, attachments: [Attachment], location: GeoPoint? = nil) {
        self.id = id
        self.version = version
        self.form = form
        self.state = state
        self.narrative = narrative
        self.fields = fields
        self.priority = priority
        self.attachments = attachments
        self.location = location
        self.locationAsRead = location
        self.isPurged = false
    }

    static func decode(json: String) throws -> Report {
        do {
            return try JSONDecoder().decode(Report.self, from: Data(json.utf8))
        } catch {
            throw DalaError.internalError("the library's report JSON did not decode: \(error)")
        }
    }
}
