#include "format/invite.h"

#include <sodium.h>

#include <cstring>

#include "base/encoding.h"
#include "format/organisation.h"

namespace dala::protocol {

using encoding::FromBase64Url;

std::string EncodeInvite(v1::Invite invite, const crypto::SigningKey& root) {
  SecretBuffer seed(32);
  randombytes_buf(seed.data(), seed.size());
  crypto::SigningKey enrol = crypto::SigningKeyFromSeed(seed);
  invite.set_organisation_key(root.public_key.data(), 32);
  invite.set_enrol_key(enrol.public_key.data(), 32);
  v1::SignedInvite si;
  si.set_invite(invite.SerializeAsString());
  auto sig = crypto::Sign(root, kDomainInvite, crypto::Bytes(si.invite()));
  si.set_signature(sig.data(), sig.size());
  v1::InviteCode code;
  code.set_signed_invite(si.SerializeAsString());
  code.set_enrol_secret(reinterpret_cast<const char*>(seed.data()), seed.size());
  std::string raw = code.SerializeAsString();
  // Every copy of the enrolment secret but the text returned is wiped.
  std::string b64 = encoding::Base64Url(crypto::Bytes(raw));
  std::string text;
  text.reserve(kInvitePrefix.size() + b64.size());
  text.append(kInvitePrefix).append(b64);
  sodium_memzero(b64.data(), b64.size());
  sodium_memzero(raw.data(), raw.size());
  code.mutable_enrol_secret()->assign(32, '\0');
  return text;
}

Result<CheckedInvite> CheckSignedInvite(std::string_view signed_invite, const crypto::PublicKey* expected_root) {
  const Status damaged(Code::kVerify,
                       "the invite is damaged or was altered (its signature does not verify); ask for a new one");
  const Status malformed(Code::kInvalidArgument, "the invite is malformed; ask for a new one");
  CheckedInvite out;
  v1::SignedInvite si;
  if (signed_invite.size() > 64 * 1024 || !si.ParseFromArray(signed_invite.data(), static_cast<int>(signed_invite.size())) ||
      !out.invite.ParseFromString(si.invite()))
    return malformed;
  const v1::Invite& inv = out.invite;
  if (inv.organisation_key().size() != 32) return malformed;
  std::memcpy(out.root.data(), inv.organisation_key().data(), 32);
  if (expected_root && out.root != *expected_root)
    return Status(Code::kVerify, "the invite is signed by another organisation's key");
  if (!crypto::Verify(out.root, kDomainInvite, crypto::Bytes(si.invite()), crypto::Bytes(si.signature())))
    return damaged;
  if (inv.server_key().size() != 32 || inv.enrol_key().size() != 32 || inv.urls_size() == 0 || inv.uses() == 0 ||
      (!inv.tls_pin().empty() && inv.tls_pin().size() != 32))
    return Status(Code::kInvalidArgument, "the invite lacks a server address, a key or a use");
  for (const auto& u : inv.urls()) DALA_RETURN_IF_ERROR(CheckServerUrl(u));
  DALA_ASSIGN_OR_RETURN(out.statement, VerifyStatement(crypto::Bytes(inv.statement()), out.root));
  if (!AuthorisedAt(out.statement, crypto::Bytes(inv.server_key()), inv.issued_ms()))
    return Status(Code::kVerify, "the invite names a server the organisation does not authorise");
  out.signed_invite.assign(signed_invite);
  return out;
}

Result<DecodedInvite> DecodeInvite(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  if (text.substr(0, 6) == "DALA1-")
    return Status(Code::kInvalidArgument,
                  "this invite was made by Dala 0.1, whose invites no organisation vouches for; ask the "
                  "organisation for a new one (made with 'dala desk invite')");
  static const Status kBad(Code::kInvalidArgument, "this is not a Dala invite (it should start with DALA2-)");
  if (text.substr(0, kInvitePrefix.size()) != kInvitePrefix || text.size() > 96 * 1024) return kBad;
  std::string raw;
  if (!FromBase64Url(text.substr(kInvitePrefix.size()), &raw))
    return Status(Code::kVerify, "the invite is damaged; ask for a new one");
  v1::InviteCode code;
  bool parsed = code.ParseFromString(raw);
  sodium_memzero(raw.data(), raw.size());
  if (!parsed || code.enrol_secret().size() != 32)
    return Status(Code::kVerify, "the invite is damaged; ask for a new one");
  DecodedInvite out;
  out.enrol_secret = SecretBuffer(reinterpret_cast<const uint8_t*>(code.enrol_secret().data()), 32);
  code.mutable_enrol_secret()->assign(32, '\0');
  DALA_ASSIGN_OR_RETURN(out.checked, CheckSignedInvite(code.signed_invite()));
  crypto::SigningKey enrol = crypto::SigningKeyFromSeed(out.enrol_secret);
  if (std::memcmp(enrol.public_key.data(), out.checked.invite.enrol_key().data(), 32) != 0)
    return Status(Code::kVerify, "the invite is damaged (its enrolment secret does not match); ask for a new one");
  return out;
}

std::string EnrolProof(const SecretBuffer& enrol_secret, std::span<const uint8_t> device_key,
                       std::span<const uint8_t> server_key) {
  crypto::SigningKey enrol = crypto::SigningKeyFromSeed(enrol_secret);
  std::string msg(reinterpret_cast<const char*>(device_key.data()), device_key.size());
  msg.append(reinterpret_cast<const char*>(server_key.data()), server_key.size());
  auto sig = crypto::Sign(enrol, kDomainEnrol, crypto::Bytes(msg));
  return std::string(reinterpret_cast<const char*>(sig.data()), sig.size());
}

bool VerifyEnrolProof(const v1::Invite& invite, std::span<const uint8_t> device_key,
                      std::span<const uint8_t> server_key, std::string_view proof) {
  if (device_key.size() != 32 || server_key.size() != 32 || invite.enrol_key().size() != 32) return false;
  std::string msg(reinterpret_cast<const char*>(device_key.data()), 32);
  msg.append(reinterpret_cast<const char*>(server_key.data()), 32);
  return crypto::Verify(crypto::Bytes(invite.enrol_key()), kDomainEnrol, crypto::Bytes(msg), crypto::Bytes(proof));
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
