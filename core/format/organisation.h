// The organisation's root key and its statements (docs/protocol.md, "The organisation"). The root is an
// Ed25519 key kept at the desk; it signs statements (which recipient keys to seal to, which server keys may
// sign receipts, and when) and invites. Nothing here does I/O.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"

namespace dala::protocol {

inline constexpr std::string_view kDomainStatement = "dala/v2/statement";
inline constexpr std::string_view kDomainFingerprint = "dala/v2/fingerprint";
inline constexpr std::string_view kIdentityPrefix = "DALA-ORG1-";

// "DALA-ORG1-" + base64url(root public key): the organisation's public identity, one line.
std::string IdentityText(const crypto::PublicKey& root);
Result<crypto::PublicKey> ParseIdentity(std::string_view text);
// What people compare (on a call, on paper): 30 digits in 6 groups of 5, from
// BLAKE2b-256(domain || root), each group a 5-byte big-endian number modulo 100000.
std::string Fingerprint(const crypto::PublicKey& root);

// A name people read beside a fingerprint: valid UTF-8, at most 256 bytes, and nothing that moves,
// hides or reorders text on a screen (C0 and C1 controls, DEL, line and paragraph separators,
// bidirectional marks, embeddings, overrides and isolates, zero-width and wide spaces, soft hyphens, fillers,
// tags), and no run of 5 or more digits. A hostile name could otherwise show another organisation's
// fingerprint in place of its own.
bool IsDisplayName(std::string_view name);

// Serialized SignedStatement. The statement's organisation_key must be the root's public key.
std::string SignStatement(const crypto::SigningKey& root, const v1::OrgStatement& statement);
// Parses a SignedStatement and checks it: signed by `root`, naming `root`, version >= 1, every key 32 bytes
// (recipients usable X25519 keys), no server or desk listed twice, at most 64 recipients, 1024 servers and
// 64 desks, and a name that IsDisplayName accepts.
// kVerify for a bad signature or another root, kInvalidArgument for a malformed one.
Result<v1::OrgStatement> VerifyStatement(std::span<const uint8_t> signed_statement, const crypto::PublicKey& root);

// The statement's recipient keys (VerifyStatement checked each is 32 bytes).
std::vector<crypto::PublicKey> Recipients(const v1::OrgStatement& statement);

// Whether `statement` authorises `server` to sign receipts dated `time_ms`:
// not_before_ms <= time_ms, (not_after_ms == 0 or time_ms < not_after_ms), (revoked_ms == 0 or
// time_ms < revoked_ms).
bool AuthorisedAt(const v1::OrgStatement& statement, std::span<const uint8_t> server, int64_t time_ms);
// Whether the statement lists `server` at all, revoked or not.
const v1::ServerAuthorisation* FindServer(const v1::OrgStatement& statement, std::span<const uint8_t> server);
// Whether the statement lets the desk key `desk` fetch exports (OrgStatement.desks).
bool ListsDesk(const v1::OrgStatement& statement, std::span<const uint8_t> desk);

}  // namespace dala::protocol
