#include "format/response.h"

#include <cstring>

namespace dala::protocol {

crypto::Hash RequestHash(std::span<const uint8_t> signed_request) { return crypto::Blake2b256(signed_request); }

std::string SignResponse(const crypto::SigningKey& server, std::string response, const crypto::Hash& request_hash) {
  // Appending the encoded field merges it into the message (protobuf encoding): no parse and re-encode.
  v1::Response bound;
  bound.set_request_hash(request_hash.data(), request_hash.size());
  response += bound.SerializeAsString();
  v1::SignedResponse sr;
  auto sig = crypto::Sign(server, kDomainResponse, crypto::Bytes(response));
  sr.set_response(std::move(response));
  sr.set_signature(sig.data(), sig.size());
  return sr.SerializeAsString();
}

Result<v1::Response> VerifyResponse(std::span<const uint8_t> body, std::span<const uint8_t> server_key,
                                    const crypto::Hash& request_hash) {
  v1::SignedResponse sr;
  v1::Response r;
  if (!sr.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return Status(Code::kVerify, "the answer is not a signed answer");
  if (!crypto::Verify(server_key, kDomainResponse, crypto::Bytes(sr.response()), crypto::Bytes(sr.signature())))
    return Status(Code::kVerify, "the answer is not signed by the organisation's server");
  if (!r.ParseFromString(sr.response())) return Status(Code::kVerify, "the signed answer is malformed");
  if (r.request_hash().size() != request_hash.size() ||
      std::memcmp(r.request_hash().data(), request_hash.data(), request_hash.size()) != 0)
    return Status(Code::kVerify, "the signed answer is for another request");
  return r;
}

}  // namespace dala::protocol
