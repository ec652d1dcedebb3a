import CDala

/// A failure reported by the library: one case per `dala_status` (the numbers are in `Code`; a test
/// checks them against the C header). Messages are for people and never contain secrets or contents.
public enum DalaError: Error, Equatable, Sendable {
    case internalError(String)
    case invalidArgument(String)
    case wrongKey(String)
    case notFound(String)
    case exists(String)
    case corrupt(String)
    case io(String)
    case permission(String)
    case state(String)
    case tooLarge(String)
    case verify(String)
    case busy(String)
    case notEncrypted(String)
    case noMemory(String)
    case noSpace(String)
    /// A handle used after `close()`.
    case closed(String)

    /// The C status numbers (they never change).
    public enum Code: Int32, Sendable, CaseIterable {
        case ok = 0  // DALA_OK
        case internalError = 1  // DALA_ERR_INTERNAL
        case invalidArgument = 2  // DALA_ERR_INVALID_ARGUMENT
        case wrongKey = 3  // DALA_ERR_WRONG_KEY
        case notFound = 4  // DALA_ERR_NOT_FOUND
        case exists = 5  // DALA_ERR_EXISTS
        case corrupt = 6  // DALA_ERR_CORRUPT
        case io = 7  // DALA_ERR_IO
        case permission = 8  // DALA_ERR_PERMISSION
        case state = 9  // DALA_ERR_STATE
        case tooLarge = 10  // DALA_ERR_TOO_LARGE
        case verify = 11  // DALA_ERR_VERIFY
        case busy = 12  // DALA_ERR_BUSY
        case notEncrypted = 13  // DALA_ERR_NOT_ENCRYPTED
        case noMemory = 14  // DALA_ERR_NO_MEMORY
        case noSpace = 15  // DALA_ERR_NO_SPACE
    }

    /// The status this error stands for (`closed` is a state error).
    public var code: Code {
        switch self {
        case .internalError: return .internalError
        case .invalidArgument: return .invalidArgument
        case .wrongKey: return .wrongKey
        case .notFound: return .notFound
        case .exists: return .exists
        case .corrupt: return .corrupt
        case .io: return .io
        case .permission: return .permission
        case .state, .closed: return .state
        case .tooLarge: return .tooLarge
        case .verify: return .verify
        case .busy: return .busy
        case .notEncrypted: return .notEncrypted
        case .noMemory: return .noMemory
        case .noSpace: return .noSpace
        }
    }

    public var message: String {
        switch self {
        case .internalError(let m), .invalidArgument(let m), .wrongKey(let m), .notFound(let m), .exists(let m),
             .corrupt(let m), .io(let m), .permission(let m), .state(let m), .tooLarge(let m), .verify(let m),
             .busy(let m), .notEncrypted(let m), .noMemory(let m), .noSpace(let m), .closed(let m):
            return m
        }
    }

    init(code: Int32, message: String) {
        switch Code(rawValue: code) ?? .internalError {
        case .ok, .internalError: self = .internalError(message)
        case .invalidArgument: self = .invalidArgument(message)
        case .wrongKey: self = .wrongKey(message)
        case .notFound: self = .notFound(message)
        case .exists: self = .exists(message)
        case .corrupt: self = .corrupt(message)
        case .io: self = .io(message)
        case .permission: self = .permission(message)
        case .state: self = .state(message)
        case .tooLarge: self = .tooLarge(message)
        case .verify: self = .verify(message)
        case .busy: self = .busy(message)
        case .notEncrypted: self = .notEncrypted(message)
        case .noMemory: self = .noMemory(message)
        case .noSpace: self = .noSpace(message)
        }
    }
}

/// Calls a C function that takes `dala_error **` last; throws its error.
@discardableResult
func check(_ body: (UnsafeMutablePointer<OpaquePointer?>) -> dala_status) throws -> dala_status {
    var err: OpaquePointer?
    let status = body(&err)
    defer { dala_error_free(err) }
    guard status == DALA_OK else {
        let message = err.flatMap { dala_error_message($0) }.map { String(cString: $0) } ?? "error \(status.rawValue)"
        throw DalaError(code: Int32(bitPattern: status.rawValue), message: message)
    }
    return status
}
