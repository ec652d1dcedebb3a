// What nodes on one database share: CheckSharedAttachments (attachment_store.h), one attachment store for
// all; ServerCore::RecountSharedBytesLocked, the bytes all of them stored into it.
#include <sodium.h>

#include "base/encoding.h"
#include "server/attachment_store.h"
#include "server/server_core.h"
#include "server/sql/sql.h"

namespace dala::server {

void ServerCore::RecountSharedBytesLocked() {
  if (db_->engine() != sql::Engine::kPostgres) return;  // one node: its own count is the whole
  const auto now = std::chrono::steady_clock::now();
  if (recounted_ != std::chrono::steady_clock::time_point{} && now - recounted_ < std::chrono::seconds(2)) return;
  recounted_ = now;
  auto sum = db_->Prepare("SELECT coalesce(sum(size), 0) FROM attachments WHERE complete = 1");
  if (!sum.ok()) return;  // the limit is checked against this node's count meanwhile (never inside a
                          // transaction: a failed statement would abort it)
  auto row = sum->Step();
  if (!row.ok() || !*row) return;
  // What this node counted includes uploads not yet whole; the database, whole attachments of every node.
  const uint64_t all = static_cast<uint64_t>(sum->Int(0));
  uint64_t mine = stored_bytes_.load();
  while (all > mine && !stored_bytes_.compare_exchange_weak(mine, all)) {
  }
  metrics_.attachment_bytes_held.Set(static_cast<double>(stored_bytes_.load()));
}

Status CheckSharedAttachments(sql::Connection& db, AttachmentStore& store) {
  if (db.engine() != sql::Engine::kPostgres) return Status::Ok();  // one node: nothing to share
  std::string before;
  {
    DALA_ASSIGN_OR_RETURN(sql::Stmt q, db.Prepare("SELECT value FROM meta WHERE key = 'node_mark'"));
    DALA_ASSIGN_OR_RETURN(bool row, q.Step());
    if (row) {
      auto v = q.BlobView(0);
      before.assign(reinterpret_cast<const char*>(v.data()), v.size());
    }
  }
  if (!before.empty()) {
    DALA_ASSIGN_OR_RETURN(bool there, store.HasMark(before));
    if (!there)
      return Status(Code::kState,
                    "the nodes on this database do not all use one attachment store: " + store.Describe() +
                    " does not hold the mark " + before + " that the last node to start left in its own (" +
                    store.MarkName(before) + "). Every node must name the same shared directory, mounted, or the "
                    "same S3 bucket and prefix (blobs.path in the data directory): a node with a store of its own "
                    "keeps attachments that no other node, export or desk sees. Find the nodes whose store holds "
                    "that mark and give this one the same store (or, after restoring the store from a backup, put "
                    "the mark back: an empty file or object of that name). This node did not start.");
  }
  // Marks are never removed: a database restored from an older dump still finds the mark it names.
  uint8_t raw[16];
  randombytes_buf(raw, sizeof raw);
  const std::string token = encoding::ToHex(std::span<const uint8_t>(raw, sizeof raw));
  DALA_RETURN_IF_ERROR(store.PutMark(token));
  DALA_ASSIGN_OR_RETURN(sql::Stmt up, db.Prepare(db.Upsert("meta(key, value) VALUES('node_mark', ?)", "key", "value")));
  up.Bind(1, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(token.data()), token.size()));
  return up.Run();
}

}  // namespace dala::server
