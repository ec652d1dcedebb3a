#include "format/receipt.h"

namespace dala::protocol {

std::string ReceiptMessage(const v1::Receipt& r) {
  std::string m;
  m.reserve(16 + 4 + 32 + 8 + 8 + 32 + 32);
  auto be = [&m](uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) m.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  auto fixed = [&m](const std::string& f, size_t n) {
    std::string v = f.substr(0, n);
    v.resize(n, '\0');
    m += v;
  };
  fixed(r.report_id(), 16);
  be(r.version(), 4);
  fixed(r.content_hash(), 32);
  be(static_cast<uint64_t>(r.server_time_ms()), 8);
  be(r.sequence(), 8);
  fixed(r.server_key(), 32);
  fixed(r.device_key(), 32);
  return m;
}

std::string ReceiptSignature(const crypto::SigningKey& server, const v1::Receipt& receipt) {
  auto sig = crypto::Sign(server, kDomainReceipt, crypto::Bytes(ReceiptMessage(receipt)));
  return std::string(reinterpret_cast<const char*>(sig.data()), sig.size());
}

std::string SignReceipt(const crypto::SigningKey& server, const v1::Receipt& receipt) {
  v1::SignedReceipt sr;
  sr.set_receipt(receipt.SerializeAsString());
  sr.set_signature(ReceiptSignature(server, receipt));
  return sr.SerializeAsString();
}

static Status CheckReceipt(const v1::Receipt& r, std::string_view signature, std::span<const uint8_t> server_key) {
  if (r.report_id().size() != 16 || r.content_hash().size() != 32 || r.device_key().size() != 32)
    return {Code::kVerify, "the receipt is malformed"};
  if (r.server_key() != std::string_view(reinterpret_cast<const char*>(server_key.data()), server_key.size()))
    return {Code::kVerify, "the receipt names another server"};
  if (!crypto::Verify(server_key, kDomainReceipt, crypto::Bytes(ReceiptMessage(r)), crypto::Bytes(signature)))
    return {Code::kVerify, "the receipt is not signed by this organisation's server"};
  return Status::Ok();
}

Result<v1::Receipt> VerifyReceipt(std::span<const uint8_t> signed_receipt, std::span<const uint8_t> server_key) {
  v1::SignedReceipt sr;
  v1::Receipt r;
  if (!sr.ParseFromArray(signed_receipt.data(), static_cast<int>(signed_receipt.size())) ||
      !r.ParseFromString(sr.receipt()))
    return Status(Code::kVerify, "the receipt is malformed");
  DALA_RETURN_IF_ERROR(CheckReceipt(r, sr.signature(), server_key));
  return r;
}

}  // namespace dala::protocol
