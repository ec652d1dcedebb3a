#include "desk/desk_key.h"

#include <sodium.h>

#include <array>
#include <cstring>

#include "base/fsutil.h"
#include "format/invite.h"
#include "format/organisation.h"

namespace dala::desk {
namespace {

constexpr char kRootContext[9] = "dalaroot";
constexpr char kRecipientContext[9] = "dalarcpt";
constexpr char kStatementContext[9] = "dalastmt";
constexpr char kPullContext[9] = "dalapull";
constexpr size_t kTagSize = 32;
constexpr uint64_t kMaxGenerations = 64;

crypto::BoxKeyPair Recipient(const SecretBuffer& master, uint64_t generation) {
  crypto::BoxKeyPair k;
  k.secret_key = crypto::DeriveSubkey(master, kRecipientContext, generation);
  k.public_key = crypto::BoxPublicFromSecret(k.secret_key);
  return k;
}

// The statement's tag in the key file: keyed BLAKE2b-256 (key: subkey 0 of context "dalastmt") over the
// SignedStatement bytes. Statements are public (every invite carries one), so without it anyone who can
// write the file could paste an older one, from before a server was revoked, after the wrapped secret.
std::array<uint8_t, kTagSize> StatementTag(const SecretBuffer& master, std::span<const uint8_t> signed_statement) {
  SecretBuffer key = crypto::DeriveSubkey(master, kStatementContext, 0);
  std::array<uint8_t, kTagSize> tag{};
  crypto_generichash(tag.data(), tag.size(), signed_statement.data(), signed_statement.size(), key.data(), key.size());
  return tag;
}

void AppendStatement(std::vector<uint8_t>& file, const SecretBuffer& master, const std::string& signed_statement) {
  const auto tag = StatementTag(master, crypto::Bytes(signed_statement));
  file.insert(file.end(), tag.begin(), tag.end());
  file.insert(file.end(), signed_statement.begin(), signed_statement.end());
}

// Rewrites the statement after the wrapped secret (atomically; the wrapped part is kept as it is).
Status SaveStatement(const Organisation& org, std::string signed_statement) {
  DALA_ASSIGN_OR_RETURN(std::vector<uint8_t> file, fs::ReadFile(org.path, 1 << 20));
  if (file.size() < kKeyFileSize) return Status(Code::kCorrupt, "the organisation key file is truncated");
  file.resize(kKeyFileSize);
  AppendStatement(file, org.master, signed_statement);
  return fs::WriteFileAtomic(org.path, file);
}

Status Replace(Organisation& org, v1::OrgStatement next) {
  next.set_version(org.statement.version() + 1);
  std::string signed_statement = protocol::SignStatement(org.root, next);
  DALA_RETURN_IF_ERROR(SaveStatement(org, signed_statement));
  org.statement = std::move(next);
  org.signed_statement = std::move(signed_statement);
  return Status::Ok();
}

}  // namespace

Result<std::string> GenerateKey(const std::string& path, const Credential& cred, const KdfParams& kdf,
                                const std::string& name) {
  if (fs::Exists(path)) return Status(Code::kExists, "'" + path + "' already exists; not overwritten");
  if (name.size() > 256) return Status(Code::kInvalidArgument, "the organisation name is longer than 256 bytes");
  if (!protocol::IsDisplayName(name))
    return Status(Code::kInvalidArgument,
                  "the organisation name must be valid UTF-8 without control, line-break or text-direction "
                  "characters");
  SecretBuffer master(32);
  randombytes_buf(master.data(), master.size());
  crypto::SigningKey root = crypto::SigningKeyFromSeed(crypto::DeriveSubkey(master, kRootContext, 0));
  crypto::BoxKeyPair first = Recipient(master, 0);
  v1::OrgStatement st;
  st.set_organisation_key(root.public_key.data(), 32);
  st.set_version(1);
  st.set_name(name);
  st.add_recipients(first.public_key.data(), 32);
  std::string signed_statement = protocol::SignStatement(root, st);
  DALA_ASSIGN_OR_RETURN(auto file, WrapSecret(KeyPurpose::kOrganisation, master, cred, kdf));
  AppendStatement(file, master, signed_statement);
  DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(path, file));
  return protocol::IdentityText(root.public_key);
}

Result<Organisation> OpenKey(const std::string& path, const Credential& cred) {
  auto file = fs::ReadFile(path, 1 << 20);
  if (!file.ok()) {
    if (file.status().code() == Code::kNotFound)
      return Status(Code::kNotFound, "no organisation key file at '" + path + "'");
    return file.status();
  }
  if (file->size() < kKeyFileSize) return Status(Code::kCorrupt, "the organisation key file is truncated");
  DALA_ASSIGN_OR_RETURN(SecretBuffer master,
                        UnwrapSecret(KeyPurpose::kOrganisation, std::span(file->data(), kKeyFileSize), cred));
  Organisation org;
  org.path = path;
  org.root = crypto::SigningKeyFromSeed(crypto::DeriveSubkey(master, kRootContext, 0));
  if (file->size() < kKeyFileSize + kTagSize) return Status(Code::kCorrupt, "the organisation key file is truncated");
  org.signed_statement.assign(file->begin() + kKeyFileSize + kTagSize, file->end());
  const auto tag = StatementTag(master, crypto::Bytes(org.signed_statement));
  if (sodium_memcmp(tag.data(), file->data() + kKeyFileSize, kTagSize) != 0)
    return Status(Code::kCorrupt, "the organisation key file's statement is not the one this desk saved (replaced or "
                                  "damaged); restore the key file from its backup");
  auto st = protocol::VerifyStatement(crypto::Bytes(org.signed_statement), org.root.public_key);
  if (!st.ok()) return Status(Code::kCorrupt, "the organisation key file's statement is damaged: " + st.status().message());
  org.statement = std::move(*st);
  // Every generation up to the newest one the statement names (older envelopes are sealed to older ones).
  uint64_t newest = 0;
  bool found_all = true;
  for (const auto& r : org.statement.recipients()) {
    bool found = false;
    for (uint64_t g = 0; g < kMaxGenerations && !found; ++g)
      if (std::memcmp(Recipient(master, g).public_key.data(), r.data(), 32) == 0) {
        found = true;
        newest = std::max(newest, g);
      }
    found_all = found_all && found;
  }
  if (!found_all) return Status(Code::kCorrupt, "the organisation key file's statement names a key it does not hold");
  for (uint64_t g = 0; g <= newest; ++g) org.recipients.push_back(Recipient(master, g));
  org.master = std::move(master);
  return org;
}

Status AuthoriseServer(Organisation& org, const crypto::PublicKey& server, int64_t now_ms) {
  if (const auto* s = protocol::FindServer(org.statement, server)) {
    if (s->revoked_ms() != 0) return Status(Code::kState, "the organisation revoked this server key");
    return Status::Ok();
  }
  v1::OrgStatement next = org.statement;
  next.set_issued_ms(now_ms);
  auto* a = next.add_servers();
  a->set_server_key(server.data(), 32);
  a->set_not_before_ms(now_ms);
  return Replace(org, std::move(next));
}

crypto::SigningKey PullKey(const Organisation& org) {
  return crypto::SigningKeyFromSeed(crypto::DeriveSubkey(org.master, kPullContext, 0));
}

Result<bool> ListDesk(Organisation& org, const crypto::PublicKey& desk, int64_t now_ms) {
  if (protocol::ListsDesk(org.statement, desk)) return false;
  v1::OrgStatement next = org.statement;
  next.set_issued_ms(now_ms);
  next.add_desks(desk.data(), desk.size());
  DALA_RETURN_IF_ERROR(Replace(org, std::move(next)));
  return true;
}

Status RotateRecipients(Organisation& org, int64_t now_ms) {
  if (org.recipients.size() >= kMaxGenerations)
    return Status(Code::kState, "the organisation has used every recipient key generation; make a new key file");
  crypto::BoxKeyPair next = Recipient(org.master, org.recipients.size());
  v1::OrgStatement st = org.statement;
  st.set_issued_ms(now_ms);
  st.clear_recipients();
  st.add_recipients(next.public_key.data(), 32);
  DALA_RETURN_IF_ERROR(Replace(org, std::move(st)));
  org.recipients.push_back(std::move(next));
  return Status::Ok();
}

Status RevokeServer(Organisation& org, const crypto::PublicKey& server, int64_t revoked_ms, int64_t now_ms) {
  if (!protocol::FindServer(org.statement, server))
    return Status(Code::kNotFound, "the organisation never authorised this server key");
  v1::OrgStatement next = org.statement;
  next.set_issued_ms(now_ms);
  for (auto& s : *next.mutable_servers())
    if (std::memcmp(s.server_key().data(), server.data(), 32) == 0 &&
        (s.revoked_ms() == 0 || revoked_ms < s.revoked_ms()))
      s.set_revoked_ms(revoked_ms);
  return Replace(org, std::move(next));
}

Result<std::string> MakeInvite(Organisation& org, const InviteParams& p, int64_t now_ms) {
  if (p.urls.empty()) return Status(Code::kInvalidArgument, "give the server address (--url)");
  for (const auto& u : p.urls) DALA_RETURN_IF_ERROR(protocol::CheckServerUrl(u));
  if (p.uses == 0) return Status(Code::kInvalidArgument, "an invite needs at least one use");
  if (p.expires_ms <= now_ms) return Status(Code::kInvalidArgument, "the invite would have expired already");
  if (!p.tls_pin.empty() && p.tls_pin.size() != 32) return Status(Code::kInvalidArgument, "a TLS pin is 32 bytes");
  DALA_RETURN_IF_ERROR(AuthoriseServer(org, p.server, now_ms));
  v1::Invite inv;
  for (const auto& u : p.urls) inv.add_urls(u);
  inv.set_server_key(p.server.data(), 32);
  inv.set_uses(p.uses);
  inv.set_expires_ms(p.expires_ms);
  inv.set_issued_ms(now_ms);
  inv.set_tls_pin(p.tls_pin);
  inv.set_addresses_equivalent(p.addresses_equivalent);
  inv.set_statement(org.signed_statement);
  return protocol::EncodeInvite(std::move(inv), org.root);
}

}  // namespace dala::desk
