#include "desk/log_verifier.h"
#include "desk/export_file.h"

#include <algorithm>
#include <optional>

#include "base/encoding.h"
#include "base/fsutil.h"
#include "dala/v1/sync.pb.h"
#include "format/log.h"
#include "format/merkle.h"
#include "format/organisation.h"
#include "format/receipt.h"
#include "timestamp/rfc3161.h"

namespace dala::desk {

Result<StampedHead> CheckLogTimestamp(const v1::LogTimestamp& t, std::string_view server_key,
                                      const v1::OrgStatement& statement, const merkle::Tree* log,
                                      const std::string& trusted_pem) {
  auto head = protocol::VerifyLogHead(crypto::Bytes(t.head()));
  if (!head.ok() || std::string_view(reinterpret_cast<const char*>(head->server_key.data()), 32) != server_key ||
      !protocol::AuthorisedAt(statement, head->server_key, head->time_ms))
    return Status(Code::kVerify, "is over a head this export's server did not sign under an authorised key");
  auto root = log != nullptr && head->size <= log->size() ? merkle::Root(*log, head->size)
                                                          : Result<merkle::Hash>(Status(Code::kVerify, ""));
  if (!root.ok() || *root != head->root)
    return Status(Code::kVerify,
                  "is over a head of " + std::to_string(head->size) + " leaves that is not of this export's log");
  if (trusted_pem.empty()) return StampedHead{head->size, 0, std::string()};  // the head only: no authority to trust
  auto stamp = rfc3161::Verify(crypto::Bytes(t.token()), crypto::Bytes(t.head()), trusted_pem);
  if (!stamp.ok())
    return Status(Code::kVerify, "(the head of " + std::to_string(head->size) + " leaves): " + stamp.status().message());
  return StampedHead{head->size, stamp->time_ms, stamp->tsa};
}

Result<LogVerdict> VerifyLog(const crypto::PublicKey& root, const LogVerifyInputs& in) {
  LogVerdict v;
  ExportFile ex;  // its log, head, statement and time-stamps: the reports are skipped over
  if (!in.export_path.empty()) {
    auto read = ReadExport(in.export_path, ExportParts{false, true, false, true});
    if (!read.ok() && read.status().code() != Code::kCorrupt) return read.status();
    if (!read.ok() || read->server_key.size() != 32)
      return Status(Code::kCorrupt, "'" + in.export_path + "' is not a dala-server export");
    ex = std::move(*read);
    if (ex.log_from != 0)
      return Status(Code::kInvalidArgument, "'" + in.export_path + "' is an incremental export (the log from position " +
                                                std::to_string(ex.log_from) + " on): audit a full export");
    v.server_key = encoding::ToHex(crypto::Bytes(ex.server_key));
    v.leaves = ex.log.size();
  }

  // The organisation's statement (which server keys, when): the newest of those the root signed, the
  // export's and the verifier's own.
  std::optional<v1::OrgStatement> statement;
  std::vector<std::string> candidates = in.statements;
  if (!ex.statement.empty()) candidates.push_back(ex.statement);
  for (const auto& s : candidates) {
    auto st = protocol::VerifyStatement(crypto::Bytes(s), root);
    if (!st.ok()) {
      v.problems.push_back("a statement is not signed by the organisation's root: " + st.status().message());
      continue;
    }
    if (!statement || st->version() > statement->version()) statement = *st;
  }
  if (!statement) {
    v.problems.push_back("no statement of the organisation: nothing says which server keys it authorised");
    return v;
  }
  v.statement_version = statement->version();
  auto authorised_head = [&](std::string_view signed_head) -> Result<protocol::LogHead> {
    DALA_ASSIGN_OR_RETURN(protocol::LogHead h, protocol::VerifyLogHead(crypto::Bytes(signed_head)));
    if (!protocol::AuthorisedAt(*statement, h.server_key, h.time_ms))
      return Status(Code::kVerify, "signed by a server key the organisation did not authorise at its time");
    return h;
  };

  // The export's log: its leaves make its signed head.
  merkle::MemoryTree tree;
  bool log_ok = false;
  if (!in.export_path.empty()) {
    for (const auto& leaf : ex.log) tree.Append(merkle::LeafHash(crypto::Bytes(leaf)));
    auto head = authorised_head(ex.log_head);
    if (!head.ok()) {
      v.problems.push_back("the export's log head: " + head.status().message());
    } else if (std::string_view(reinterpret_cast<const char*>(head->server_key.data()), 32) != ex.server_key) {
      v.problems.push_back("the export's log head is another server's");
    } else {
      auto r = merkle::Root(tree, tree.size());
      if (head->size != tree.size() || !r.ok() || *r != head->root) {
        v.problems.push_back("the export's " + std::to_string(tree.size()) + " leaves do not make its signed head of " +
                             std::to_string(head->size) + " leaves (a leaf changed, added, dropped or reordered)");
      } else {
        log_ok = true;
        v.head_size = head->size;
        v.head_time_ms = head->time_ms;
      }
    }
  }

  // Each phone receipt: signed by an authorised server key, at its proven place in a head that key signed,
  // and, for the export's server, that head a prefix of the export's log holding the same leaf there.
  for (size_t i = 0; i < in.phone_receipts.size(); ++i) {
    ++v.receipts;
    const std::string what = "phone receipt " + std::to_string(i + 1);
    v1::SignedReceipt sr;
    v1::Receipt claimed;
    if (!sr.ParseFromString(in.phone_receipts[i]) || !claimed.ParseFromString(sr.receipt()) ||
        claimed.server_key().size() != 32) {
      v.problems.push_back(what + " is malformed");
      continue;
    }
    // Signed, or (as phones keep them) proven by its place in a head its server signed; the head's own checks
    // follow.
    auto kept = protocol::VerifyKeptReceipt(crypto::Bytes(in.phone_receipts[i]), crypto::Bytes(claimed.server_key()));
    const v1::Receipt* r = kept.ok() ? &kept->receipt : nullptr;
    if (r == nullptr || !protocol::AuthorisedAt(*statement, crypto::Bytes(r->server_key()), r->server_time_ms())) {
      v.problems.push_back(what + " is not signed, nor proven by a log head, by a server key the organisation "
                                  "authorised at its time");
      continue;
    }
    if (sr.log_head().empty()) {
      v.problems.push_back(what + " carries no place in the log (kept before the log, or stripped)");
      continue;
    }
    auto head = authorised_head(sr.log_head());
    if (!head.ok() || std::string_view(reinterpret_cast<const char*>(head->server_key.data()), 32) != r->server_key()) {
      v.problems.push_back(what + ": its log head is not its server's under an authorised key");
      continue;
    }
    if (!sr.has_leaf_index() || !protocol::ReceiptInLog(*r, sr.leaf_index(), sr.inclusion_proof(), *head)) {
      v.problems.push_back(what + ": its inclusion proof does not hold in its head");
      continue;
    }
    if (log_ok && r->server_key() == ex.server_key) {
      auto prefix = head->size <= tree.size() ? merkle::Root(tree, head->size)
                                              : Result<merkle::Hash>(Status(Code::kVerify, ""));
      if (!prefix.ok() || *prefix != head->root ||
          ex.log[sr.leaf_index()] != protocol::ReportLeaf(*r)) {
        v.problems.push_back(what + ": its head is not a prefix of the export's log holding it there (a fork, or an "
                             "export cut short)");
        continue;
      }
    }
    ++v.receipts_in_log;
  }

  // Time-stamps of the export's heads.
  if (!in.trusted_tsa_pem.empty() && log_ok) {
    for (size_t i = 0; i < ex.timestamps.size(); ++i) {
      auto stamp = CheckLogTimestamp(ex.timestamps[i], ex.server_key, *statement, &tree, in.trusted_tsa_pem);
      if (!stamp.ok()) {
        v.problems.push_back("time-stamp " + std::to_string(i + 1) + " " + stamp.status().message());
        continue;
      }
      ++v.timestamps;
    }
  }
  return v;
}

}  // namespace dala::desk
