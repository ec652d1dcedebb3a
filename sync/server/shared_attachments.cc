// CheckSharedAttachments (attachment_store.h): nodes on one database use one attachment store.
#include <sodium.h>

#include "base/encoding.h"
#include "server/attachment_store.h"
#include "server/sql/sql.h"

namespace dala::server {

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
