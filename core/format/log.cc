#include "format/log.h"

#include <cstring>

#include "format/receipt.h"

namespace dala::protocol {
namespace {

void PutBe(std::string& m, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) m.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetBe(const std::string& m, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(m[at + i]);
  return v;
}
void PutFixed(std::string& m, std::string_view f, size_t n) {
  std::string v(f.substr(0, n));
  v.resize(n, '\0');
  m += v;
}
void PutHash(std::string& m, std::string_view bytes) {
  const crypto::Hash h = crypto::Blake2b256(crypto::Bytes(bytes));
  m.append(reinterpret_cast<const char*>(h.data()), h.size());
}

}  // namespace

std::string ReportLeaf(const v1::Receipt& receipt) {
  return std::string(1, static_cast<char>(LeafType::kReport)) + ReceiptMessage(receipt);
}

std::string EnrolmentLeaf(std::string_view device_key, std::string_view invite, std::string_view proof,
                          int64_t enrolled_ms) {
  std::string m(1, static_cast<char>(LeafType::kEnrolment));
  PutFixed(m, device_key, 32);
  PutHash(m, invite);
  PutHash(m, proof);
  PutBe(m, static_cast<uint64_t>(enrolled_ms), 8);
  return m;
}

std::string StatementLeaf(std::string_view signed_statement, uint64_t version) {
  std::string m(1, static_cast<char>(LeafType::kStatement));
  PutHash(m, signed_statement);
  PutBe(m, version, 8);
  return m;
}

std::string DeviceRevokedLeaf(std::string_view device_key, int64_t revoked_ms) {
  std::string m(1, static_cast<char>(LeafType::kDeviceRevoked));
  PutFixed(m, device_key, 32);
  PutBe(m, static_cast<uint64_t>(revoked_ms), 8);
  return m;
}

std::string LogHeadMessage(const LogHead& h) {
  std::string m;
  PutBe(m, h.size, 8);
  m.append(reinterpret_cast<const char*>(h.root.data()), h.root.size());
  PutBe(m, static_cast<uint64_t>(h.time_ms), 8);
  m.append(reinterpret_cast<const char*>(h.server_key.data()), h.server_key.size());
  return m;
}

std::string SignLogHead(const crypto::SigningKey& server, const LogHead& head) {
  v1::SignedLogHead s;
  s.set_head(LogHeadMessage(head));
  const crypto::Signature sig = crypto::Sign(server, kDomainLogHead, crypto::Bytes(s.head()));
  s.set_signature(sig.data(), sig.size());
  return s.SerializeAsString();
}

Result<LogHead> VerifyLogHead(std::span<const uint8_t> signed_head) {
  v1::SignedLogHead s;
  // Exactly the 148 bytes of {head, signature}: nothing unsigned rides along into receipts and witnesses.
  if (signed_head.size() != kSignedLogHeadBytes ||
      !s.ParseFromArray(signed_head.data(), static_cast<int>(signed_head.size())) || s.head().size() != 80 ||
      s.signature().size() != 64 || s.SerializeAsString() != std::string_view(reinterpret_cast<const char*>(signed_head.data()), signed_head.size()))
    return Status(Code::kVerify, "the log head is malformed");
  LogHead h;
  h.size = GetBe(s.head(), 0, 8);
  std::memcpy(h.root.data(), s.head().data() + 8, 32);
  h.time_ms = static_cast<int64_t>(GetBe(s.head(), 40, 8));
  std::memcpy(h.server_key.data(), s.head().data() + 48, 32);
  if (!crypto::Verify(h.server_key, kDomainLogHead, crypto::Bytes(s.head()), crypto::Bytes(s.signature())))
    return Status(Code::kVerify, "the log head's signature does not verify");
  return h;
}

uint64_t LogHeadSize(std::string_view signed_head) {
  v1::SignedLogHead s;
  if (signed_head.size() != kSignedLogHeadBytes ||
      !s.ParseFromArray(signed_head.data(), static_cast<int>(signed_head.size())) || s.head().size() != 80)
    return 0;
  return GetBe(s.head(), 0, 8);
}

Result<std::vector<merkle::Hash>> ProofHashes(const google::protobuf::RepeatedPtrField<std::string>& hashes) {
  if (hashes.size() > 128) return Status(Code::kVerify, "the proof is longer than any tree needs");
  std::vector<merkle::Hash> out(static_cast<size_t>(hashes.size()));
  for (int i = 0; i < hashes.size(); ++i) {
    if (hashes[i].size() != 32) return Status(Code::kVerify, "a proof hash is not 32 bytes");
    std::memcpy(out[static_cast<size_t>(i)].data(), hashes[i].data(), 32);
  }
  return out;
}

bool ReceiptInLog(const v1::Receipt& receipt, uint64_t leaf_index,
                  const google::protobuf::RepeatedPtrField<std::string>& proof, const LogHead& head) {
  auto hashes = ProofHashes(proof);
  if (!hashes.ok()) return false;
  const std::string leaf = ReportLeaf(receipt);
  return merkle::VerifyInclusion(merkle::LeafHash(crypto::Bytes(leaf)), leaf_index, head.size, *hashes, head.root);
}

Result<KeptReceipt> VerifyKeptReceipt(std::span<const uint8_t> signed_receipt, std::span<const uint8_t> server_key) {
  v1::SignedReceipt sr;
  if (!sr.ParseFromArray(signed_receipt.data(), static_cast<int>(signed_receipt.size())))
    return Status(Code::kVerify, "the receipt is malformed");
  KeptReceipt kept;
  if (!sr.signature().empty()) {
    DALA_ASSIGN_OR_RETURN(kept.receipt, VerifyReceipt(signed_receipt, server_key));
    return kept;
  }
  v1::Receipt& r = kept.receipt;
  if (!r.ParseFromString(sr.receipt()) || r.report_id().size() != 16 || r.content_hash().size() != 32 ||
      r.device_key().size() != 32 || server_key.size() != 32)
    return Status(Code::kVerify, "the receipt is malformed");
  if (r.server_key() != std::string_view(reinterpret_cast<const char*>(server_key.data()), server_key.size()))
    return Status(Code::kVerify, "the receipt names another server");
  if (sr.log_head().empty() || !sr.has_leaf_index())
    return Status(Code::kVerify, "the receipt has neither a signature nor its place in the server's log");
  DALA_ASSIGN_OR_RETURN(LogHead head, VerifyLogHead(crypto::Bytes(sr.log_head())));
  if (std::memcmp(head.server_key.data(), server_key.data(), 32) != 0)
    return Status(Code::kVerify, "the receipt's log head is another server's");
  if (!ReceiptInLog(r, sr.leaf_index(), sr.inclusion_proof(), head))
    return Status(Code::kVerify, "the receipt is not where its log head's tree has it");
  kept.head = head;
  return kept;
}

bool Extends(const LogHead& new_head, const LogHead& old_head,
             const google::protobuf::RepeatedPtrField<std::string>& proof) {
  if (old_head.size > new_head.size) return false;
  if (old_head.size == new_head.size) return old_head.root == new_head.root;  // nothing to prove
  if (old_head.size == 0) return true;
  auto hashes = ProofHashes(proof);
  return hashes.ok() && merkle::VerifyConsistency(old_head.size, new_head.size, old_head.root, new_head.root, *hashes);
}

}  // namespace dala::protocol
