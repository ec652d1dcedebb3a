// Receipts: the server's signed statement that it holds one report version (docs/protocol.md).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"

namespace dala::protocol {

inline constexpr std::string_view kDomainReceipt = "dala/v2/receipt";

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
