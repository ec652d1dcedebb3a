// Invites arrive as text pasted or scanned from a QR code: DecodeInvite must refuse anything that is not
// a well-formed invite signed by its own server key, and never crash. First byte odd: the rest is taken
// as an Invite message and signed with a fixed key first, so the checks behind the signature are reached.
#include "fuzz_common.h"
#include "format/invite.h"
#include "format/receipt.h"
#include "format/request.h"
#include "protocol/http_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  fuzz::Input in(data, size);
  const bool sign = (in.Byte() & 1) != 0;
  std::string text;
  if (sign) {
    static const crypto::SigningKey server = fuzz::FixedSigningKey(fuzz::kServerLabel);
    v1::Invite inv;
    std::string_view rest = in.Rest();
    if (!inv.ParseFromArray(rest.data(), static_cast<int>(rest.size()))) return 0;
    inv.set_server_key(server.public_key.data(), server.public_key.size());
    text = protocol::EncodeInvite(inv, server);
  } else {
    text = std::string(in.Rest());
  }
  auto invite = protocol::DecodeInvite(text);
  if (!invite.ok()) return 0;
  // What it accepted is complete and well formed.
  if (invite->server_key().size() != 32 || invite->urls_size() == 0 || invite->token().size() != 16) std::abort();
  for (const auto& r : invite->recipients())
    if (r.size() != 32) std::abort();
  for (const auto& u : invite->urls())
    if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0) std::abort();
  return 0;
}
