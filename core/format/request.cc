#include "format/request.h"

namespace dala::protocol {

std::string SignRequest(const crypto::SigningKey& device, const v1::Request& request) {
  v1::SignedRequest sr;
  sr.set_request(request.SerializeAsString());
  auto sig = crypto::Sign(device, kDomainRequest, crypto::Bytes(sr.request()));
  sr.set_signature(sig.data(), sig.size());
  return sr.SerializeAsString();
}

Result<v1::Request> VerifyRequest(std::span<const uint8_t> body) {
  v1::SignedRequest sr;
  v1::Request req;
  if (!sr.ParseFromArray(body.data(), static_cast<int>(body.size())) || !req.ParseFromString(sr.request()))
    return Status(Code::kInvalidArgument, "malformed request");
  if (req.device_key().size() != 32 || req.server_key().size() != 32)
    return Status(Code::kInvalidArgument, "malformed request keys");
  if (!crypto::Verify(crypto::Bytes(req.device_key()), kDomainRequest, crypto::Bytes(sr.request()),
                      crypto::Bytes(sr.signature())))
    return Status(Code::kVerify, "the request signature does not verify");
  return req;
}

}  // namespace dala::protocol
