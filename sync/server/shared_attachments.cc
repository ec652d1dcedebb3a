// What nodes on one database share: CheckSharedAttachments (attachment_store.h) and ServerCore::CheckNodes,
// one attachment store for all, at start and while they run; ServerCore::RecountSharedBytesLocked, the
// bytes all of them stored into it.
#include <sodium.h>

#include <charconv>
#include <cstdio>

#include "base/encoding.h"
#include "server/attachment_store.h"
#include "server/log_line.h"
#include "server/server_core.h"
#include "server/sql/sql.h"

namespace dala::server {
namespace {

std::string RandomHex(size_t n) {
  uint8_t raw[16];
  randombytes_buf(raw, n);
  return encoding::ToHex(std::span<const uint8_t>(raw, n));
}

// A running node's row in meta: key "node.ID", value "TOKEN WRITTEN_MS INTERVAL_S" (its newest mark, when it
// wrote it by its own clock, and how often it writes one).
constexpr std::string_view kNodeKeyPrefix = "node.";

struct NodeRow {
  std::string token;
  int64_t written_ms = 0;
  int64_t interval_s = 0;
};

std::optional<NodeRow> ParseNodeRow(std::span<const uint8_t> v) {
  std::string_view s(reinterpret_cast<const char*>(v.data()), v.size());
  const size_t a = s.find(' '), b = a == std::string_view::npos ? a : s.find(' ', a + 1);
  if (b == std::string_view::npos || a != 32) return std::nullopt;
  NodeRow r;
  r.token.assign(s.substr(0, a));
  auto num = [](std::string_view t, int64_t* out) {
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), *out);
    return ec == std::errc() && p == t.data() + t.size();
  };
  if (!num(s.substr(a + 1, b - a - 1), &r.written_ms) || !num(s.substr(b + 1), &r.interval_s) || r.interval_s <= 0)
    return std::nullopt;
  return r;
}

}  // namespace

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
  const std::string token = RandomHex(16);
  DALA_RETURN_IF_ERROR(store.PutMark(token));
  DALA_ASSIGN_OR_RETURN(sql::Stmt up, db.Prepare(db.Upsert("meta(key, value) VALUES('node_mark', ?)", "key", "value")));
  up.Bind(1, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(token.data()), token.size()));
  return up.Run();
}

Status ServerCore::JoinNodes(int check_interval_s) {
  if (db_->engine() != sql::Engine::kPostgres) return Status::Ok();  // one node: nothing to share
  std::lock_guard check(nodes_mu_);
  // The running nodes' marks first, before this node writes anything: a node refused here leaves no mark
  // that the others would then miss, and does not replace the one the next node to start checks.
  DALA_ASSIGN_OR_RETURN(std::vector<std::string> missing, MissingNodeMarks());
  if (!missing.empty()) {
    std::string which;
    for (const auto& m : missing) which += (which.empty() ? "" : "; ") + m;
    return Status(Code::kState, "the nodes on this database do not all use one attachment store: " +
                                    attachments_->Describe() + " lacks the newest mark of a running node (" + which +
                                    "). Every node must name the same shared directory, mounted, or the same S3 "
                                    "bucket and prefix (blobs.path in the data directory). This node did not start.");
  }
  {
    std::lock_guard lock(mu_);
    DALA_RETURN_IF_ERROR(CheckSharedAttachments(*db_, *attachments_));
  }
  return WriteNodeMark(check_interval_s);
}

Status ServerCore::CheckNodes(int interval_s) {
  if (db_->engine() != sql::Engine::kPostgres) return Status::Ok();  // one node: nothing to share
  std::lock_guard check(nodes_mu_);
  DALA_RETURN_IF_ERROR(WriteNodeMark(interval_s));
  DALA_ASSIGN_OR_RETURN(std::vector<std::string> missing, MissingNodeMarks());
  metrics_.nodes_apart.Set(static_cast<double>(missing.size()));
  if (!missing.empty()) {
    std::string list = "[";
    for (size_t i = 0; i < missing.size(); ++i) list += (i ? "," : "") + JsonString(missing[i]);
    list += "]";
    LogLine("error", "\"event\":\"attachment_stores_apart\",\"store\":" + JsonString(attachments_->Describe()) +
                         ",\"node\":" + JsonString(node_id_) + ",\"missing\":" + list +
                         ",\"error\":\"the nodes on this database do not all use one attachment store: uploads are "
                         "refused (phones keep their attachments and try later) until every node names the same "
                         "store, mounted. Attachments this node or the others stored since the stores parted are in "
                         "the store that took them: copy them into the shared one.\"");
  } else if (stores_apart_.load()) {
    LogLine("info", "\"event\":\"attachment_stores_joined\",\"store\":" + JsonString(attachments_->Describe()) +
                        ",\"node\":" + JsonString(node_id_));
  }
  stores_apart_.store(!missing.empty());
  return Status::Ok();
}

Status ServerCore::WriteNodeMark(int interval_s) {
  if (node_id_.empty()) node_id_ = RandomHex(8);
  // In the store first, then named in the database, so that whoever reads the name finds the mark if their
  // store is this one.
  const std::string token = RandomHex(16);
  DALA_RETURN_IF_ERROR(attachments_->PutMark(token));
  const std::string value = token + " " + std::to_string(clock_()) + " " + std::to_string(interval_s);
  {
    std::lock_guard lock(mu_);
    DALA_ASSIGN_OR_RETURN(sql::Stmt up, db_->Prepare(db_->Upsert("meta(key, value) VALUES(?, ?)", "key", "value")));
    up.BindText(1, std::string(kNodeKeyPrefix) + node_id_).Bind(2, crypto::Bytes(value));
    DALA_RETURN_IF_ERROR(up.Run());
  }
  node_marks_.push_back(token);
  while (node_marks_.size() > 2) {  // the one before stays: another node may have read its name just now
    (void)attachments_->RemoveMark(node_marks_.front());
    node_marks_.pop_front();
  }
  return Status::Ok();
}

Result<std::vector<std::string>> ServerCore::MissingNodeMarks() {
  const std::string my_key = node_id_.empty() ? std::string() : std::string(kNodeKeyPrefix) + node_id_;
  auto read_rows = [&](const std::string& only) -> Result<std::vector<std::pair<std::string, NodeRow>>> {
    std::vector<std::pair<std::string, NodeRow>> rows;
    std::lock_guard lock(mu_);
    DALA_ASSIGN_OR_RETURN(sql::Stmt q, db_->Prepare(only.empty() ? "SELECT key, value FROM meta WHERE key LIKE 'node.%'"
                                                                 : "SELECT key, value FROM meta WHERE key = ?"));
    if (!only.empty()) q.BindText(1, only);
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      std::string key = q.Text(0);
      if (key == my_key || !key.starts_with(kNodeKeyPrefix)) continue;
      if (auto r = ParseNodeRow(q.BlobView(1))) rows.emplace_back(std::move(key), std::move(*r));
    }
    return rows;
  };
  DALA_ASSIGN_OR_RETURN(auto rows, read_rows(""));
  const int64_t now = clock_();
  const auto steady = std::chrono::steady_clock::now();
  std::vector<std::string> missing;  // for the log: which node's mark, where it should be
  std::set<std::string> present;
  for (auto& [key, row] : rows) {
    present.insert(key);
    const auto patience = std::chrono::seconds(3 * row.interval_s + 5);
    SeenNode& seen = seen_nodes_[key];
    if (seen.token != row.token) {
      const bool first = seen.token.empty();
      seen.token = row.token;
      seen.since = steady;
      // Seen for the first time with a mark written long ago (by its clock, which may differ from this
      // one's: a minute is allowed): a node that stopped without leaving (killed).
      if (first && now - row.written_ms > 3000 * row.interval_s + 60000) seen.since = steady - 2 * patience;
    }
    if (steady - seen.since > patience) {  // not running: its mark has not changed for three of its intervals
      if (now - row.written_ms > 86400000) {  // gone a day: its row is removed
        std::lock_guard lock(mu_);
        if (auto del = db_->Prepare("DELETE FROM meta WHERE key = ?"); del.ok()) (void)del->BindText(1, key).Run();
      }
      continue;
    }
    DALA_ASSIGN_OR_RETURN(bool there, attachments_->HasMark(row.token));
    if (!there) {  // the node may have replaced it (and removed the one before) as this one read: read again
      DALA_ASSIGN_OR_RETURN(auto again, read_rows(key));
      if (again.empty()) {
        there = true;  // it left
      } else if (again[0].second.token != row.token) {
        seen.token = again[0].second.token;
        seen.since = steady;
        DALA_ASSIGN_OR_RETURN(there, attachments_->HasMark(seen.token));
      }
    }
    if (!there) missing.push_back("node " + key.substr(kNodeKeyPrefix.size()) + "'s mark " + attachments_->MarkName(seen.token));
  }
  for (auto it = seen_nodes_.begin(); it != seen_nodes_.end();)
    it = present.count(it->first) ? std::next(it) : seen_nodes_.erase(it);
  return missing;
}

void ServerCore::LeaveNodes() {
  if (db_->engine() != sql::Engine::kPostgres) return;
  std::lock_guard check(nodes_mu_);
  if (node_id_.empty()) return;
  {
    std::lock_guard lock(mu_);
    if (auto del = db_->Prepare("DELETE FROM meta WHERE key = ?"); del.ok())
      (void)del->BindText(1, std::string(kNodeKeyPrefix) + node_id_).Run();
  }
  for (const auto& t : node_marks_) (void)attachments_->RemoveMark(t);
  node_marks_.clear();
}

}  // namespace dala::server
