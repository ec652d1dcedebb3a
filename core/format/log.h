// The server's append-only log (docs/protocol.md, "The log"): what its leaves hold and its signed heads.
// The tree over the leaves is merkle.h's (RFC 9162). No I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"
#include "format/merkle.h"

namespace dala::protocol {

inline constexpr std::string_view kDomainLogHead = "dala/v2/log-head";

// Leaf data: one type byte, then fixed fields.
enum class LeafType : uint8_t { kReport = 1, kEnrolment = 2, kStatement = 3, kDeviceRevoked = 4 };
// 0x01 || the receipt's 132 signed bytes (ReceiptMessage): a stored report version.
std::string ReportLeaf(const v1::Receipt& receipt);
// 0x02 || device key (32) || BLAKE2b-256(SignedInvite bytes) || BLAKE2b-256(proof) || enrolled_ms (i64 BE).
std::string EnrolmentLeaf(std::string_view device_key, std::string_view invite, std::string_view proof,
                          int64_t enrolled_ms);
// 0x03 || BLAKE2b-256(SignedStatement bytes) || its version (u64 BE): a statement the server adopted.
std::string StatementLeaf(std::string_view signed_statement, uint64_t version);
// 0x04 || device key (32) || revoked_ms (i64 BE).
std::string DeviceRevokedLeaf(std::string_view device_key, int64_t revoked_ms);

struct LogHead {
  uint64_t size = 0;
  merkle::Hash root{};
  int64_t time_ms = 0;
  crypto::PublicKey server_key{};
};
// A SignedLogHead as the server writes it: {head (80 bytes), signature (64)}, 148 bytes; no other encoding
// of it is accepted.
inline constexpr size_t kSignedLogHeadBytes = 148;
// A request hands back at most this many heads (a phone's tip and up to 8 waiting to be linked).
inline constexpr int kMaxLogHeadsPerRequest = 9;
// The signed bytes: size (u64 BE) || root (32) || time_ms (i64 BE) || server key (32).
std::string LogHeadMessage(const LogHead& head);
// Serialized SignedLogHead.
std::string SignLogHead(const crypto::SigningKey& server, const LogHead& head);
// Parses a SignedLogHead and checks its signature under the key it names (the caller decides whether
// that key is one the organisation authorised at the head's time).
Result<LogHead> VerifyLogHead(std::span<const uint8_t> signed_head);

// The size a SignedLogHead names, unverified (0 if malformed): a server reads the heads phones send back.
uint64_t LogHeadSize(std::string_view signed_head);
// Hashes of a proof as it travels (repeated bytes): each exactly 32 bytes, at most 128 of them.
Result<std::vector<merkle::Hash>> ProofHashes(const google::protobuf::RepeatedPtrField<std::string>& hashes);
// Whether `receipt`'s report leaf is leaf `leaf_index` of the tree `head` signs, by the inclusion proof.
bool ReceiptInLog(const v1::Receipt& receipt, uint64_t leaf_index,
                  const google::protobuf::RepeatedPtrField<std::string>& proof, const LogHead& head);
// A receipt as a phone keeps it (a SignedReceipt with its place in the log; docs/protocol.md, "Receipts
// are proven by the log"), checked under `server_key`. One with a signature holds if the signature
// verifies (VerifyReceipt). One without (the server signs none on the wire: the log proves them) holds
// if its log head verifies under `server_key` and its inclusion proof shows the receipt's report leaf at
// `leaf_index` of that head's tree. Either way the receipt must be well formed and name `server_key`.
// The caller checks that the key was authorised at the receipt's time, and at `head`'s when it is set.
struct KeptReceipt {
  v1::Receipt receipt;
  std::optional<LogHead> head;  // the head that proves a receipt without a signature
};
Result<KeptReceipt> VerifyKeptReceipt(std::span<const uint8_t> signed_receipt, std::span<const uint8_t> server_key);

// Whether the tree `old_head` signs is a prefix of the one `new_head` signs, by the consistency proof
// (equal sizes: equal roots, whatever the proof; a smaller new head never is). A malformed proof is
// not a contradiction: check it with ProofHashes first.
bool Extends(const LogHead& new_head, const LogHead& old_head,
             const google::protobuf::RepeatedPtrField<std::string>& proof);

}  // namespace dala::protocol
