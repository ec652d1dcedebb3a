// Receipts: the server's statement that it holds one report version (docs/protocol.md), signed in exports.
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
// The signature alone (64 bytes), over ReceiptMessage(receipt).
std::string ReceiptSignature(const crypto::SigningKey& server, const v1::Receipt& receipt);
// Verifies a SignedReceipt's signature under `server_key` (as exports carry them; a receipt a phone keeps
// has none: VerifyKeptReceipt in log.h).
Result<v1::Receipt> VerifyReceipt(std::span<const uint8_t> signed_receipt, std::span<const uint8_t> server_key);

}  // namespace dala::protocol
