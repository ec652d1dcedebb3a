// dala-server: trusted time for its log heads (docs/protocol.md, "Trusted time").
#include "server/server_core.h"

#include "server/server_internal.h"
#include "timestamp/rfc3161.h"

namespace dala::server {

Result<uint64_t> ServerCore::StampNewestHead(const TsaPost& post) {
  std::string head;
  uint64_t size = 0;
  {
    std::lock_guard lock(mu_);
    DALA_ASSIGN_OR_RETURN(sql::Stmt q, db_->Prepare(
        "SELECT size, signed FROM log_heads WHERE size = (SELECT max(size) FROM log_heads) AND "
        "size > (SELECT coalesce(max(size), 0) FROM log_timestamps)"));
    DALA_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) return uint64_t{0};  // nothing signed since the last stamp
    size = static_cast<uint64_t>(q.Int(0));
    auto b = q.BlobView(1);
    head.assign(reinterpret_cast<const char*>(b.data()), b.size());
  }
  // No lock while the authority answers: phones are served meanwhile.
  DALA_ASSIGN_OR_RETURN(rfc3161::Request request, rfc3161::MakeRequest(B(head)));
  DALA_ASSIGN_OR_RETURN(std::string answer, post(request.der));
  DALA_ASSIGN_OR_RETURN(std::string token, rfc3161::TokenFromResponse(B(answer), request, B(head)));
  // Kept only if no head as large is stamped yet, checked in a writing transaction (which every node takes
  // in turn): stamps are stored in the order of their heads' sizes, each size once, whichever node asked
  // and however long its authority took. A desk asks for stamps over heads larger than its largest, so it
  // then misses none (docs/protocol.md, "Pulling exports"). A later stamp already dates these leaves.
  std::lock_guard lock(mu_);
  sql::Txn txn(*db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_ASSIGN_OR_RETURN(sql::Stmt ins, db_->Prepare(
      "INSERT INTO log_timestamps(size, token, stamped_ms) SELECT ?, ?, ? WHERE NOT EXISTS "
      "(SELECT 1 FROM log_timestamps WHERE size >= ?)"));
  ins.Bind(1, static_cast<int64_t>(size)).Bind(2, B(token)).Bind(3, clock_()).Bind(4, static_cast<int64_t>(size));
  DALA_RETURN_IF_ERROR(ins.Run());
  const bool kept = db_->Changes() == 1;
  DALA_RETURN_IF_ERROR(txn.Commit());
  return kept ? size : uint64_t{0};
}

}  // namespace dala::server
