#include "format/request.h"

#include <sodium.h>

#include <google/protobuf/io/coded_stream.h>

#include "base/padding.h"

namespace dala::protocol {

namespace {

// The SignedRequest's size with `padding` bytes of padding in the request, counted without serializing:
// field 1 (the request, length-delimited) and field 2 (the 64-byte signature).
size_t SignedSize(v1::Request& r, size_t padding) {
  r.mutable_padding()->assign(padding, '\0');
  const size_t n = r.ByteSizeLong();
  return 1 + google::protobuf::io::CodedOutputStream::VarintSize64(n) + n + 1 + 1 + crypto_sign_BYTES;
}

}  // namespace

std::string SignRequest(const crypto::SigningKey& device, const v1::Request& request) {
  // Padded with zeros to the Padmé length of the whole signed request (at least 512 bytes), so that what
  // crosses the network says little about how much a phone sends (docs/protocol.md, "Padding"). The
  // padding's own length prefix can grow by a byte, so the count is settled in a few steps.
  v1::Request padded = request;
  const size_t base = SignedSize(padded, 0);
  // The padding field costs 2 or more bytes of its own; where a length prefix grows a byte no count
  // reaches the bucket exactly, and the next bucket is taken.
  size_t padding = 0;
  for (size_t target = PadmeLength(base + 2, kRequestMinimum);; target = PadmeLength(target + 1, kRequestMinimum)) {
    const size_t guess = target - base;
    bool hit = false;
    for (size_t p = guess > 8 ? guess - 8 : 0; p <= guess && !hit; ++p)
      if (SignedSize(padded, p) == target) padding = p, hit = true;
    if (hit) break;
  }
  SignedSize(padded, padding);
  v1::SignedRequest sr;
  sr.set_request(padded.SerializeAsString());
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
