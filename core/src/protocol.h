// Sync protocol helpers shared by the client and dala-server: invites, signed requests, signed receipts.
// Formats: proto/dala/v1/sync.proto, docs/protocol.md.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "crypto.h"
#include "dala/v1/sync.pb.h"
#include "status.h"

namespace dala::protocol {

inline constexpr std::string_view kDomainInvite = "dala/v1/invite";
inline constexpr std::string_view kDomainRequest = "dala/v1/request";
inline constexpr std::string_view kDomainReceipt = "dala/v1/receipt";
inline constexpr std::string_view kInvitePrefix = "DALA1-";
inline constexpr std::string_view kContentType = "application/x-protobuf";
inline constexpr char kPathHealth[] = "/v1/health";
inline constexpr char kPathEnrol[] = "/v1/enrol";
inline constexpr char kPathPush[] = "/v1/push";
inline constexpr char kPathUpload[] = "/v1/upload";
inline constexpr char kUploadHeader[] = "X-Dala-Request";      // base64url(SignedRequest) of an upload
inline constexpr char kUploadContentType[] = "application/octet-stream";
inline constexpr size_t kMaxUploadHeader = 2048;                // bytes of the header's value

// Where an attachment's ciphertext is kept on the server and in an export's media directory:
// hex(device key) "-" hex(attachment id). Devices choose attachment ids, so the device key is part of it.
std::string AttachmentFileName(std::span<const uint8_t> device_key, std::span<const uint8_t> attachment_id);

std::string Base64Url(std::span<const uint8_t> bytes);
bool FromBase64Url(std::string_view text, std::string* out);

// "DALA1-" + base64url(SignedInvite).
std::string EncodeInvite(const v1::Invite& invite, const crypto::SigningKey& server);
// Parses and checks the server's signature and field sizes (not expiry or use count: the server decides
// those at enrolment, and join refuses an invite already past its expiry).
Result<v1::Invite> DecodeInvite(std::string_view text);

// Serialized SignedRequest.
std::string SignRequest(const crypto::SigningKey& device, const v1::Request& request);
// Parses a SignedRequest and verifies it under the device key it names.
Result<v1::Request> VerifyRequest(std::span<const uint8_t> body);

// The canonical bytes a receipt signature covers (fixed layout; independent of protobuf encoding).
std::string ReceiptMessage(const v1::Receipt& receipt);
// Serialized SignedReceipt.
std::string SignReceipt(const crypto::SigningKey& server, const v1::Receipt& receipt);
// Builds the SignedReceipt for `receipt` with a signature received on the wire and verifies it under the
// pinned server key. Returns the serialized SignedReceipt to keep.
Result<std::string> CompleteReceipt(const v1::Receipt& receipt, std::string_view signature,
                                    std::span<const uint8_t> server_key);
// Verifies a SignedReceipt under the pinned server key.
Result<v1::Receipt> VerifyReceipt(std::span<const uint8_t> signed_receipt, std::span<const uint8_t> server_key);

}  // namespace dala::protocol
