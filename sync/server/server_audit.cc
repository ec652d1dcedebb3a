// dala-server: a data directory checked whole (dala-server check; after a restore).
#include <cstring>

#include "base/fsutil.h"
#include "format/log.h"
#include "format/manifest.h"
#include "format/merkle.h"
#include "server/server_core.h"
#include "server/server_internal.h"

namespace dala::server {

Result<AuditReport> ServerCore::Audit() {
  std::lock_guard lock(mu_);
  // One snapshot for every read: a push that a running server commits meanwhile is all in or all out.
  sql::Txn snapshot(*db_);
  DALA_RETURN_IF_ERROR(snapshot.Begin(sql::TxnKind::kRead));
  AuditReport out;
  auto problem = [&](std::string p) {
    if (out.problems.size() < 20) out.problems.push_back(std::move(p));
  };
  if (db_->engine() == sql::Engine::kSqlite) {  // PostgreSQL checks its pages itself (data checksums, amcheck)
    DALA_ASSIGN_OR_RETURN(sql::Stmt ic, db_->Prepare("PRAGMA integrity_check"));
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool row, ic.Step());
      if (!row) break;
      if (std::string t = ic.Text(0); t != "ok") problem("database: " + t);
    }
  }

  // The log: its leaves rebuilt into a tree here, against the nodes stored and every signed head.
  DALA_RETURN_IF_ERROR(log_.Load());
  DALA_ASSIGN_OR_RETURN(std::vector<std::string> leaves, log_.Leaves());
  out.log_size = leaves.size();
  if (out.log_size != log_.size()) problem("the log's leaves are not numbered 0 to " + std::to_string(log_.size()));
  merkle::MemoryTree tree;
  for (const auto& l : leaves) tree.Append(merkle::LeafHash(B(l)));
  if (!leaves.empty()) {
    auto stored = merkle::Root(log_, out.log_size);
    auto rebuilt = merkle::Root(tree, out.log_size);
    if (!stored.ok() || !rebuilt.ok() || *stored != *rebuilt)
      problem("the log's stored nodes do not match its leaves");
  }
  bool whole_log_signed = leaves.empty();
  {
    DALA_ASSIGN_OR_RETURN(sql::Stmt h, db_->Prepare("SELECT size, signed FROM log_heads ORDER BY size"));
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool row, h.Step());
      if (!row) break;
      ++out.heads;
      const auto size = static_cast<uint64_t>(h.Int(0));
      const std::string what = "the signed head of " + std::to_string(size) + " leaves";
      auto head = protocol::VerifyLogHead(h.BlobView(1));
      if (!head.ok()) {
        problem(what + " does not verify: " + head.status().message());
        continue;
      }
      if (head->server_key != signing_.public_key) {
        problem(what + " is signed by another key than this server's");
        continue;
      }
      if (head->size != size || size > out.log_size) {
        problem(what + " is not over the first " + std::to_string(size) + " leaves of the log");
        continue;
      }
      auto root = merkle::Root(tree, size);
      if (!root.ok() || *root != head->root) {
        problem(what + " does not match the log's leaves (a fork, or damaged data)");
        continue;
      }
      whole_log_signed = whole_log_signed || size == out.log_size;
    }
  }
  if (!whole_log_signed) problem("no signed head covers the whole log of " + std::to_string(out.log_size) + " leaves");

  {
    DALA_ASSIGN_OR_RETURN(sql::Stmt r, db_->Prepare("SELECT count(*), count(leaf), coalesce(max(leaf), -1) FROM reports"));
    DALA_ASSIGN_OR_RETURN(bool row, r.Step());
    if (row) {
      out.reports = static_cast<uint64_t>(r.Int(0));
      if (r.Int(2) >= static_cast<int64_t>(out.log_size))
        problem("a report names leaf " + std::to_string(r.Int(2)) + ", beyond the log's " +
                std::to_string(out.log_size) + " leaves");
    }
  }

  DALA_ASSIGN_OR_RETURN(sql::Stmt a, db_->Prepare(
      "SELECT device_key, attachment_id, size, chunk_size, chunk_hashes FROM attachments WHERE complete = 1"));
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, a.Step());
    if (!row) break;
    ++out.attachments;
    const auto size = static_cast<uint64_t>(a.Int(2));
    out.attachment_bytes += size;
    const std::string name = attachment::FileName(a.BlobView(0), a.BlobView(1));
    auto hashes = a.BlobView(4);
    const auto chunk = static_cast<uint64_t>(a.Int(3));
    if (chunk == 0 || chunk > (64u << 20) || hashes.size() != 32 * ((size + chunk - 1) / chunk)) {
      problem("the attachment " + name + " has a damaged record");
      continue;
    }
    auto verified = attachments_->Verified(
        name, {size, static_cast<uint32_t>(chunk), std::string_view(reinterpret_cast<const char*>(hashes.data()), hashes.size())});
    if (!verified.ok()) return verified.status();  // the store cannot be read now: no verdict
    if (*verified != size)
      problem("the attachment " + name + " is recorded complete but its file is missing or damaged");
  }
  return out;
}

}  // namespace dala::server
