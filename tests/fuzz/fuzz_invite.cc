// Invites arrive as text pasted or scanned from a QR code: DecodeInvite must refuse anything that is not a
// well-formed invite signed by the root it names, with a statement by the same root authorising its server,
// and never crash. First byte odd: the rest is taken as an Invite message and signed with a fixed root
// first (its statement and keys filled in when absent), so the checks behind the signature are reached.
#include "fuzz_common.h"
#include "format/invite.h"
#include "format/organisation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  fuzz::Input in(data, size);
  const bool sign = (in.Byte() & 1) != 0;
  std::string text;
  if (sign) {
    static const crypto::SigningKey root = fuzz::FixedSigningKey(fuzz::kRootLabel);
    static const crypto::SigningKey server = fuzz::FixedSigningKey(fuzz::kServerLabel);
    v1::Invite inv;
    std::string_view rest = in.Rest();
    if (!inv.ParseFromArray(rest.data(), static_cast<int>(rest.size()))) return 0;
    if (inv.server_key().empty()) inv.set_server_key(server.public_key.data(), server.public_key.size());
    if (inv.statement().empty()) inv.set_statement(fuzz::FixedOrgStatement(server.public_key));
    text = protocol::EncodeInvite(inv, root);
  } else {
    text = std::string(in.Rest());
  }
  auto decoded = protocol::DecodeInvite(text);
  if (!decoded.ok()) return 0;
  // What it accepted is complete, well formed and the root's.
  const v1::Invite& invite = decoded->checked.invite;
  if (invite.server_key().size() != 32 || invite.urls_size() == 0 || invite.uses() == 0 ||
      invite.enrol_key().size() != 32 || decoded->enrol_secret.size() != 32)
    std::abort();
  if (!protocol::AuthorisedAt(decoded->checked.statement, crypto::Bytes(invite.server_key()), invite.issued_ms()))
    std::abort();
  if (decoded->checked.statement.organisation_key() != invite.organisation_key()) std::abort();
  for (const auto& r : decoded->checked.statement.recipients())
    if (r.size() != 32) std::abort();
  for (const auto& u : invite.urls())
    if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0) std::abort();
  return 0;
}
