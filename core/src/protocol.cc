#include "protocol.h"

#include <sodium.h>

namespace dala::protocol {

std::string AttachmentFileName(std::span<const uint8_t> device_key, std::span<const uint8_t> attachment_id) {
  return crypto::ToHex(device_key) + "-" + crypto::ToHex(attachment_id);
}

std::string Base64Url(std::span<const uint8_t> bytes) {
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), variant);
  out.pop_back();  // the NUL
  return out;
}

bool FromBase64Url(std::string_view text, std::string* out) {
  out->assign(text.size() * 3 / 4 + 3, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<uint8_t*>(out->data()), out->size(), text.data(), text.size(), nullptr, &len,
                        &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size())
    return false;
  out->resize(len);
  return true;
}

std::string EncodeInvite(const v1::Invite& invite, const crypto::SigningKey& server) {
  v1::SignedInvite si;
  si.set_invite(invite.SerializeAsString());
  auto sig = crypto::Sign(server, kDomainInvite, crypto::Bytes(si.invite()));
  si.set_signature(sig.data(), sig.size());
  return std::string(kInvitePrefix) + Base64Url(crypto::Bytes(si.SerializeAsString()));
}

Result<v1::Invite> DecodeInvite(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  static const Status kBad(Code::kInvalidArgument, "this is not a Dala invite (it should start with DALA1-)");
  static const Status kDamaged(Code::kVerify,
                               "the invite is damaged or was altered (its signature does not verify); ask for a new one");
  if (text.substr(0, kInvitePrefix.size()) != kInvitePrefix || text.size() > 8192) return kBad;
  std::string raw;
  if (!FromBase64Url(text.substr(kInvitePrefix.size()), &raw)) return kDamaged;
  v1::SignedInvite si;
  v1::Invite inv;
  if (!si.ParseFromString(raw) || !inv.ParseFromString(si.invite())) return kDamaged;
  if (inv.server_key().size() != 32 || !crypto::Verify(crypto::Bytes(inv.server_key()), kDomainInvite,
                                                       crypto::Bytes(si.invite()), crypto::Bytes(si.signature())))
    return kDamaged;
  if (inv.urls_size() == 0 || inv.recipients_size() == 0 || inv.token().size() != 16)
    return Status(Code::kInvalidArgument, "the invite lacks a server address, a recipient key or a token");
  for (const auto& r : inv.recipients())
    if (r.size() != 32) return Status(Code::kInvalidArgument, "the invite has a malformed recipient key");
  for (const auto& u : inv.urls())
    if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0)
      return Status(Code::kInvalidArgument, "the invite's server address must start with http:// or https://");
  return inv;
}

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

std::string SignReceipt(const crypto::SigningKey& server, const v1::Receipt& receipt) {
  v1::SignedReceipt sr;
  sr.set_receipt(receipt.SerializeAsString());
  auto sig = crypto::Sign(server, kDomainReceipt, crypto::Bytes(ReceiptMessage(receipt)));
  sr.set_signature(sig.data(), sig.size());
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

Result<std::string> CompleteReceipt(const v1::Receipt& receipt, std::string_view signature,
                                    std::span<const uint8_t> server_key) {
  DALA_RETURN_IF_ERROR(CheckReceipt(receipt, signature, server_key));
  v1::SignedReceipt sr;
  sr.set_receipt(receipt.SerializeAsString());
  sr.set_signature(std::string(signature));
  return sr.SerializeAsString();
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
