#include "server/server_log.h"

#include <cstring>

namespace dala::server {

Status ServerLog::Load() {
  // max(idx) is a lookup in the table's b-tree (count(*) would read every leaf).
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_.Prepare("SELECT coalesce(max(idx) + 1, 0) FROM log"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  size_ = row ? static_cast<uint64_t>(st.Int(0)) : 0;
  return Status::Ok();
}

Result<merkle::Hash> ServerLog::Perfect(uint32_t level, uint64_t index) const {
  if (auto it = cache_.find({level, index}); it != cache_.end()) return it->second;
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_.Prepare("SELECT hash FROM log_nodes WHERE level = ? AND idx = ?"));
  st.Bind(1, static_cast<int64_t>(level)).Bind(2, static_cast<int64_t>(index));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row || st.BlobView(0).size() != 32) return Status(Code::kCorrupt, "the log is missing a node");
  merkle::Hash h{};
  std::memcpy(h.data(), st.BlobView(0).data(), 32);
  Remember(level, index, h);
  return h;
}

Result<uint64_t> ServerLog::Append(std::string_view leaf) {
  // Read again inside the caller's (write) transaction: another process on the same data directory
  // (dala-server revoke, statement) may have appended since.
  DALA_RETURN_IF_ERROR(Load());
  const uint64_t index = size_;
  {
    DALA_ASSIGN_OR_RETURN(sql::Stmt ins, db_.Prepare("INSERT INTO log(idx, leaf) VALUES(?, ?)"));
    ins.Bind(1, static_cast<int64_t>(index)).Bind(2, crypto::Bytes(leaf));
    DALA_RETURN_IF_ERROR(ins.Run());
  }
  DALA_ASSIGN_OR_RETURN(sql::Stmt node, db_.Prepare("INSERT INTO log_nodes(level, idx, hash) VALUES(?, ?, ?)"));
  merkle::Hash h = merkle::LeafHash(crypto::Bytes(leaf));
  uint64_t at = index;
  for (uint32_t level = 0;; ++level) {
    node.Bind(1, static_cast<int64_t>(level)).Bind(2, static_cast<int64_t>(at)).Bind(3, h);
    DALA_RETURN_IF_ERROR(node.Run());
    node.Reset();
    Remember(level, at, h);
    if ((at & 1) == 0) break;  // a left child: its parent is not complete yet
    DALA_ASSIGN_OR_RETURN(merkle::Hash left, Perfect(level, at - 1));
    h = merkle::NodeHash(left, h);
    at >>= 1;
  }
  size_ = index + 1;
  return index;
}

Result<std::vector<std::string>> ServerLog::Leaves() const {
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_.Prepare("SELECT leaf FROM log ORDER BY idx"));
  std::vector<std::string> out;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    auto b = st.BlobView(0);
    out.emplace_back(reinterpret_cast<const char*>(b.data()), b.size());
  }
  return out;
}

}  // namespace dala::server
