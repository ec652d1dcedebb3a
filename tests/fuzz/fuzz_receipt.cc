// Receipts: the phone keeps the server's signed receipt; the desk verifies receipts from an export.
// First byte odd: the rest is a Receipt signed with the fixed server key (the checks behind the
// signature; bit 1 also names that server); even: the rest is a signed receipt as stored. Only receipts the key signed verify.
#include "fuzz_common.h"
#include "format/invite.h"
#include "format/receipt.h"
#include "format/request.h"
#include "protocol/http_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  static const crypto::SigningKey server = fuzz::FixedSigningKey(fuzz::kServerLabel);
  fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  const bool sign = (mode & 1) != 0;
  std::string_view rest = in.Rest();
  std::string signed_receipt;
  if (sign) {
    v1::Receipt r;
    if (!r.ParseFromArray(rest.data(), static_cast<int>(rest.size()))) return 0;
    if (mode & 2) r.set_server_key(server.public_key.data(), server.public_key.size());
    v1::SignedReceipt sr;
    if (!sr.ParseFromString(protocol::SignReceipt(server, r))) std::abort();
    auto completed = protocol::CompleteReceipt(r, sr.signature(), server.public_key);
    // The phone completes a receipt from the fields it knows and the server's signature over them.
    if (!completed.ok()) return 0;
    signed_receipt = *completed;
  } else {
    signed_receipt = std::string(rest);
  }
  auto verified = protocol::VerifyReceipt(crypto::Bytes(signed_receipt), server.public_key);
  if (sign && !verified.ok()) std::abort();  // what the key signed verifies
  if (verified.ok() && verified->server_key().size() != 32) std::abort();
  return 0;
}
