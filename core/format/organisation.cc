#include "format/organisation.h"

#include <cstring>
#include <set>

#include "base/encoding.h"

namespace dala::protocol {

std::string IdentityText(const crypto::PublicKey& root) {
  return std::string(kIdentityPrefix) + encoding::Base64Url(root);
}

Result<crypto::PublicKey> ParseIdentity(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  const Status bad(Code::kInvalidArgument,
                   "this is not an organisation identity (it should start with DALA-ORG1-; 'dala desk keygen' "
                   "prints it)");
  if (text.substr(0, kIdentityPrefix.size()) != kIdentityPrefix) return bad;
  std::string raw;
  if (!encoding::FromBase64Url(text.substr(kIdentityPrefix.size()), &raw) || raw.size() != 32) return bad;
  crypto::PublicKey k;
  std::memcpy(k.data(), raw.data(), 32);
  return k;
}

std::string Fingerprint(const crypto::PublicKey& root) {
  std::string in(kDomainFingerprint);
  in.append(reinterpret_cast<const char*>(root.data()), root.size());
  crypto::Hash h = crypto::Blake2b256(crypto::Bytes(in));
  std::string out;
  for (int g = 0; g < 6; ++g) {
    uint64_t n = 0;
    for (int i = 0; i < 5; ++i) n = (n << 8) | h[static_cast<size_t>(g * 5 + i)];
    char buf[8];
    std::snprintf(buf, sizeof buf, "%05llu", static_cast<unsigned long long>(n % 100000));
    if (g) out += ' ';
    out += buf;
  }
  return out;
}

bool IsDisplayName(std::string_view name) {
  if (name.size() > 256) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(name.data());
  const auto* end = p + name.size();
  int digits = 0;  // a run of 5 digits could pass for a group of a fingerprint
  while (p < end) {
    uint32_t cp;
    int n;
    if (p[0] < 0x80) { cp = p[0]; n = 1; }
    else if ((p[0] & 0xE0) == 0xC0) { cp = p[0] & 0x1Fu; n = 2; }
    else if ((p[0] & 0xF0) == 0xE0) { cp = p[0] & 0x0Fu; n = 3; }
    else if ((p[0] & 0xF8) == 0xF0) { cp = p[0] & 0x07u; n = 4; }
    else return false;
    if (end - p < n) return false;
    for (int i = 1; i < n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x061C || cp == 0x00AD ||
        (cp >= 0x2000 && cp <= 0x200F) ||  // wide and zero-width spaces, joiners, direction marks
        (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF ||
        cp == 0x115F || cp == 0x1160 || cp == 0x3164 || cp == 0xFFA0 ||  // Hangul fillers
        (cp >= 0xFFF9 && cp <= 0xFFFB) || (cp >= 0xE0000 && cp <= 0xE007F))  // annotations, tags
      return false;
    digits = (cp >= '0' && cp <= '9') ? digits + 1 : 0;
    if (digits >= 5) return false;
    p += n;
  }
  return true;
}

std::string SignStatement(const crypto::SigningKey& root, const v1::OrgStatement& statement) {
  v1::SignedStatement ss;
  ss.set_statement(statement.SerializeAsString());
  auto sig = crypto::Sign(root, kDomainStatement, crypto::Bytes(ss.statement()));
  ss.set_signature(sig.data(), sig.size());
  return ss.SerializeAsString();
}

Result<v1::OrgStatement> VerifyStatement(std::span<const uint8_t> signed_statement, const crypto::PublicKey& root) {
  const Status damaged(Code::kVerify, "the organisation statement is not signed by this organisation's key");
  v1::SignedStatement ss;
  v1::OrgStatement st;
  if (!ss.ParseFromArray(signed_statement.data(), static_cast<int>(signed_statement.size())) ||
      !st.ParseFromString(ss.statement()))
    return Status(Code::kInvalidArgument, "the organisation statement is malformed");
  if (st.organisation_key().size() != 32 || std::memcmp(st.organisation_key().data(), root.data(), 32) != 0 ||
      !crypto::Verify(root, kDomainStatement, crypto::Bytes(ss.statement()), crypto::Bytes(ss.signature())))
    return damaged;
  const Status malformed(Code::kInvalidArgument, "the organisation statement is malformed");
  if (st.version() == 0 || st.recipients_size() == 0 || st.recipients_size() > 64 || st.servers_size() > 1024 ||
      !IsDisplayName(st.name()))
    return malformed;
  for (const auto& r : st.recipients()) {
    crypto::PublicKey k;
    if (r.size() != 32) return malformed;
    std::memcpy(k.data(), r.data(), 32);
    if (!crypto::IsUsableBoxPublicKey(k)) return malformed;
  }
  std::set<std::string> seen;
  for (const auto& s : st.servers())
    if (s.server_key().size() != 32 || !seen.insert(s.server_key()).second) return malformed;
  if (st.desks_size() > 64) return malformed;
  std::set<std::string> desks;
  for (const auto& d : st.desks())
    if (d.size() != 32 || !desks.insert(d).second) return malformed;
  return st;
}

bool ListsDesk(const v1::OrgStatement& statement, std::span<const uint8_t> desk) {
  for (const auto& d : statement.desks())
    if (d.size() == desk.size() && std::memcmp(d.data(), desk.data(), desk.size()) == 0) return true;
  return false;
}

std::vector<crypto::PublicKey> Recipients(const v1::OrgStatement& statement) {
  std::vector<crypto::PublicKey> out;
  for (const auto& r : statement.recipients()) {
    crypto::PublicKey k{};
    if (r.size() == k.size()) std::memcpy(k.data(), r.data(), k.size());
    out.push_back(k);
  }
  return out;
}

const v1::ServerAuthorisation* FindServer(const v1::OrgStatement& statement, std::span<const uint8_t> server) {
  for (const auto& s : statement.servers())
    if (server.size() == 32 && std::memcmp(s.server_key().data(), server.data(), 32) == 0) return &s;
  return nullptr;
}

bool AuthorisedAt(const v1::OrgStatement& statement, std::span<const uint8_t> server, int64_t time_ms) {
  const v1::ServerAuthorisation* s = FindServer(statement, server);
  return s && s->not_before_ms() <= time_ms && (s->not_after_ms() == 0 || time_ms < s->not_after_ms()) &&
         (s->revoked_ms() == 0 || time_ms < s->revoked_ms());
}

}  // namespace dala::protocol
