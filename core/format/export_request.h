// A desk's request for what a server holds (docs/protocol.md, "Pulling exports"): signed with a desk key that
// the organisation's statement lists, bound to one server, fresh (a time and a nonce). Nothing here does I/O.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"

namespace dala::protocol {

inline constexpr std::string_view kDomainExportRequest = "dala/v2/export-request";
inline constexpr int64_t kExportRequestSkewMs = 5 * 60 * 1000;       // the desk's clock against the server's
inline constexpr uint32_t kMaxExportRange = 8u << 20;                // bytes of one AttachmentRange

// Serialized SignedExportRequest; request.desk_key is set to `desk`'s public key.
std::string SignExportRequest(const crypto::SigningKey& desk, v1::ExportRequest request);
// Parses a SignedExportRequest and verifies it under the desk key it names: well formed (keys 32 bytes, a
// 16-byte nonce, one op; a range of 1 to kMaxExportRange bytes). Whether the organisation lists that key,
// and whether the request is for this server and fresh, is the server's to check.
Result<v1::ExportRequest> VerifyExportRequest(std::span<const uint8_t> body);

}  // namespace dala::protocol
