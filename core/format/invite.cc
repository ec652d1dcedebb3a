#include "format/invite.h"

#include "base/encoding.h"

namespace dala::protocol {

using encoding::FromBase64Url;

std::string EncodeInvite(const v1::Invite& invite, const crypto::SigningKey& server) {
  v1::SignedInvite si;
  si.set_invite(invite.SerializeAsString());
  auto sig = crypto::Sign(server, kDomainInvite, crypto::Bytes(si.invite()));
  si.set_signature(sig.data(), sig.size());
  return std::string(kInvitePrefix) + encoding::Base64Url(crypto::Bytes(si.SerializeAsString()));
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
  for (const auto& u : inv.urls()) DALA_RETURN_IF_ERROR(CheckServerUrl(u));
  return inv;
}

Status CheckServerUrl(std::string_view url) {
  const Status bad(Code::kInvalidArgument,
                   "a server address is http:// or https:// HOST[:PORT][/PATH], with a port from 1 to 65535");
  std::string_view rest;
  if (url.rfind("http://", 0) == 0) rest = url.substr(7);
  else if (url.rfind("https://", 0) == 0) rest = url.substr(8);
  else return bad;
  if (url.size() > 2048) return bad;
  for (unsigned char c : url)
    if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '"' || c == '<' || c == '>') return bad;
  std::string_view hostport = rest.substr(0, rest.find_first_of("/?#"));
  if (hostport.find('@') != std::string_view::npos) return bad;  // no user:password@
  std::string_view host = hostport, port;
  if (!hostport.empty() && hostport[0] == '[') {
    size_t close = hostport.find(']');
    if (close == std::string_view::npos || close == 1) return bad;
    host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return bad;
      port = hostport.substr(close + 2);
      if (port.empty()) return bad;
    }
    if (host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos) return bad;
  } else {
    size_t colon = hostport.find(':');
    if (colon != std::string_view::npos) {
      host = hostport.substr(0, colon);
      port = hostport.substr(colon + 1);
      if (port.empty()) return bad;
    }
    if (host.empty() || host.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
                            std::string_view::npos)
      return bad;
  }
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) return bad;
    unsigned n = 0;
    for (char c : port) n = n * 10 + static_cast<unsigned>(c - '0');
    if (n == 0 || n > 65535) return bad;
  }
  return Status::Ok();
}

}  // namespace dala::protocol
