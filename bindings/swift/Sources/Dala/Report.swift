import CDala
import Foundation

/// One version of a report, as a value. Read from the store (decoded from the library's report JSON,
/// docs/c-api.md), edited as a value, written back by `Store.save` or `Store.seal`.
public struct Report: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case draft, sealed, queued, delivered, rejected
    }

    /// A field's value (the text-friendly types; see the C API for geo points and people).
    public enum Field: Codable, Sendable, Equatable {
        case text(String)
        case integer(Int64)
        case decimal(String)
        case boolean(Bool)
        case timestamp(Int64)  // Unix milliseconds
        case other(String)     // a type this binding does not edit (geo, people): kept as JSON text

        private enum Keys: String, CodingKey { case type, value }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            switch try c.decode(String.self, forKey: .type) {
            case "text": self = .text(try c.decode(String.self, forKey: .value))
            case "integer": self = .integer(try c.decode(Int64.self, forKey: .value))
            case "decimal": self = .decimal(try c.decode(String.self, forKey: .value))
            case "boolean": self = .boolean(try c.decode(Bool.self, forKey: .value))
            case "timestamp": self = .timestamp(try c.decode(Int64.self, forKey: .value))
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
            case .other(let t): try c.encode(t, forKey: .type)
            }
        }
    }

    public struct Attachment: Codable, Sendable, Equatable {
        public let id: String
        public let mime: String
        public let size: UInt64
        public let plaintextHash: String

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

    enum CodingKeys: String, CodingKey {
        case id, version, form, state, narrative, fields, priority, attachments
    }

    init(id: String, version: UInt32, form: String, state: State, narrative: String, fields: [String: Field],
         priority: Int32, attachments: [Attachment]) {
        self.id = id
        self.version = version
        self.form = form
        self.state = state
        self.narrative = narrative
        self.fields = fields
        self.priority = priority
        self.attachments = attachments
    }

    static func decode(json: String) throws -> Report {
        do {
            return try JSONDecoder().decode(Report.self, from: Data(json.utf8))
        } catch {
            throw DalaError.internalError("the library's report JSON did not decode: \(error)")
        }
    }
}
