// Signed answers: every answer of the sync protocol is signed by the server key the request named and
// bound to the request by its hash (docs/protocol.md, "Answers"). A phone acts on nothing else.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"

namespace dala::protocol {

inline constexpr std::string_view kDomainResponse = "dala/v2/response";

// The hash an answer names: BLAKE2b-256 of the SignedRequest bytes exactly as sent.
crypto::Hash RequestHash(std::span<const uint8_t> signed_request);

// Serialized SignedResponse for `response` (a serialized Response without request_hash), answering the
// request whose hash is `request_hash`.
std::string SignResponse(const crypto::SigningKey& server, std::string response, const crypto::Hash& request_hash);

// Parses a SignedResponse and checks that `server_key` signed it and that it answers the request whose hash
// is `request_hash`. kVerify for anything else (unsigned, another signer, another request, malformed).
Result<v1::Response> VerifyResponse(std::span<const uint8_t> body, std::span<const uint8_t> server_key,
                                    const crypto::Hash& request_hash);

}  // namespace dala::protocol
