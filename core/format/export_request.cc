#include "format/export_request.h"

namespace dala::protocol {

std::string SignExportRequest(const crypto::SigningKey& desk, v1::ExportRequest request) {
  request.set_desk_key(desk.public_key.data(), desk.public_key.size());
  v1::SignedExportRequest sr;
  sr.set_request(request.SerializeAsString());
  auto sig = crypto::Sign(desk, kDomainExportRequest, crypto::Bytes(sr.request()));
  sr.set_signature(sig.data(), sig.size());
  return sr.SerializeAsString();
}

Result<v1::ExportRequest> VerifyExportRequest(std::span<const uint8_t> body) {
  v1::SignedExportRequest sr;
  v1::ExportRequest req;
  const Status malformed(Code::kInvalidArgument, "malformed export request");
  if (!sr.ParseFromArray(body.data(), static_cast<int>(body.size())) || !req.ParseFromString(sr.request()))
    return malformed;
  if (req.desk_key().size() != 32 || req.server_key().size() != 32 || req.nonce().size() != 16) return malformed;
  if (req.op_case() == v1::ExportRequest::OP_NOT_SET) return malformed;
  if (req.has_attachment()) {
    const auto& a = req.attachment();
    if (a.device_key().size() != 32 || a.attachment_id().size() != 16 || a.length() == 0 ||
        a.length() > kMaxExportRange)
      return malformed;
  }
  if (!crypto::Verify(crypto::Bytes(req.desk_key()), kDomainExportRequest, crypto::Bytes(sr.request()),
                      crypto::Bytes(sr.signature())))
    return Status(Code::kVerify, "the export request signature does not verify");
  return req;
}

}  // namespace dala::protocol
