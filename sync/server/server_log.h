// dala-server's append-only log in its database (docs/protocol.md, "The log"): leaves in `log`, the hash
// of every complete subtree in `log_nodes` (level 0: the leaf hashes), heads in `log_heads`. Appends run
// inside the caller's transaction; Rollback() forgets what a failed transaction appended.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "server/sql/sql.h"
#include "base/status.h"
#include "format/merkle.h"

namespace dala::server {

class ServerLog : public merkle::Tree {
 public:
  explicit ServerLog(sql::Connection& db) : db_(db) {}
  Status Load();  // the size from the database (Append reads it again: other processes may append)
  uint64_t size() const override { return size_; }
  Result<merkle::Hash> Perfect(uint32_t level, uint64_t index) const override;
  // Appends one leaf (its data as hashed); returns its index.
  Result<uint64_t> Append(std::string_view leaf);
  void Rollback(uint64_t size) {
    size_ = size;
    cache_.clear();  // it may hold nodes of leaves the failed transaction appended
  }
  Result<std::vector<std::string>> Leaves() const;

 private:
  sql::Connection& db_;
  uint64_t size_ = 0;
  // Nodes never change once written, so the ones read or written lately are kept: a group commit's heads
  // and its reports' inclusion proofs read the same few nodes again and again. Bounded; cleared whole.
  mutable std::map<std::pair<uint32_t, uint64_t>, merkle::Hash> cache_;
  static constexpr size_t kCacheNodes = 1 << 14;
  void Remember(uint32_t level, uint64_t index, const merkle::Hash& h) const {
    if (cache_.size() >= kCacheNodes) cache_.clear();
    cache_.emplace(std::make_pair(level, index), h);
  }
};

}  // namespace dala::server
