// Receipts: a phone keeps a receipt proven by its place in a log head the server signed; an export carries
// receipts the server signed. First byte odd: the rest is a Receipt; the fixed server key signs it (bit 1
// also names that server), and (bit 2) it is kept as a phone keeps one, the only leaf of a one-leaf log
// under a head that key signed. Even: the rest is a SignedReceipt as stored or kept. Only what the key
// signed, directly or through a head, holds.
#include "fuzz_common.h"
#include "format/log.h"
#include "format/receipt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  static const crypto::SigningKey server = fuzz::FixedSigningKey(fuzz::kServerLabel);
  fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  const bool sign = (mode & 1) != 0;
  std::string_view rest = in.Rest();
  std::string signed_receipt;
  bool well_formed = false;
  if (sign) {
    v1::Receipt r;
    if (!r.ParseFromArray(rest.data(), static_cast<int>(rest.size()))) return 0;
    if (mode & 2) r.set_server_key(server.public_key.data(), server.public_key.size());
    well_formed = r.report_id().size() == 16 && r.content_hash().size() == 32 && r.device_key().size() == 32 &&
                  r.server_key() == std::string_view(reinterpret_cast<const char*>(server.public_key.data()), 32);
    if (mode & 4) {
      protocol::LogHead head;
      head.size = 1;
      head.root = merkle::LeafHash(crypto::Bytes(protocol::ReportLeaf(r)));
      head.time_ms = r.server_time_ms();
      head.server_key = server.public_key;
      v1::SignedReceipt kept;
      kept.set_receipt(r.SerializeAsString());
      kept.set_leaf_index(0);
      kept.set_log_head(protocol::SignLogHead(server, head));
      signed_receipt = kept.SerializeAsString();
    } else {
      signed_receipt = protocol::SignReceipt(server, r);
    }
  } else {
    signed_receipt = std::string(rest);
  }
  auto verified = protocol::VerifyReceipt(crypto::Bytes(signed_receipt), server.public_key);
  auto kept = protocol::VerifyKeptReceipt(crypto::Bytes(signed_receipt), server.public_key);
  if (sign && well_formed && !kept.ok()) std::abort();                 // what the key signed holds
  if (sign && well_formed && (mode & 4) == 0 && !verified.ok()) std::abort();
  if (sign && (mode & 4) != 0 && verified.ok()) std::abort();          // a kept receipt carries no signature
  if (verified.ok() && verified->server_key().size() != 32) std::abort();
  if (kept.ok() && (kept->receipt.server_key().size() != 32 || kept->receipt.report_id().size() != 16)) std::abort();
  if (kept.ok() && kept->head && kept->head->server_key != server.public_key) std::abort();
  return 0;
}
