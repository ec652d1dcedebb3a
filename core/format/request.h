// Signed requests: every request a phone sends is signed with its device key (docs/protocol.md).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"

namespace dala::protocol {

inline constexpr std::string_view kDomainRequest = "dala/v2/request";
// The smallest padded signed request (docs/protocol.md, "Padding").
inline constexpr size_t kRequestMinimum = 512;

// Serialized SignedRequest.
std::string SignRequest(const crypto::SigningKey& device, const v1::Request& request);
// Parses a SignedRequest and verifies it under the device key it names.
Result<v1::Request> VerifyRequest(std::span<const uint8_t> body);

}  // namespace dala::protocol
