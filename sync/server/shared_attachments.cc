// What nodes on one database share: CheckSharedAttachments (attachment_store.h) and ServerCore::CheckNodes,
// one attachment store for all, at start and while they run; ServerCore::RecountSharedBytesLocked, the
// bytes all of them stored into it.
#include <sodium.h>

#include <charconv>
#include <optional>
#include <set>
#include <vector>

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

// A running node's row in meta: key "node.ID", value "TOKEN PREVIOUS WRITTEN_MS INTERVAL_S APART": its
// newest mark and the one before ("-" if none), when it wrote the row by its own clock, how often it writes
// one, and whether its own store lacked another node's mark at this check (1) or not (0). The others look
// for the one before (at least an interval old: a store that shows new files late, or a replica, has had
// that long to show it).
constexpr std::string_view kNodeKeyPrefix = "node.";

struct NodeRow {
  std::string token, previous;
  int64_t written_ms = 0;
  int64_t interval_s = 0;
  bool apart = false;
};

std::string NodeRowValue(const NodeRow& r) {
  return r.token + " " + (r.previous.empty() ? "-" : r.previous) + " " + std::to_string(r.written_ms) + " " +
         std::to_string(r.interval_s) + (r.apart ? " 1" : " 0");
}

std::optional<NodeRow> ParseNodeRow(std::span<const uint8_t> v) {
  std::string_view s(reinterpret_cast<const char*>(v.data()), v.size());
  std::vector<std::string_view> f;
  for (size_t at = 0; at <= s.size();) {
    size_t sp = s.find(' ', at);
    if (sp == std::string_view::npos) sp = s.size();
    f.push_back(s.substr(at, sp - at));
    at = sp + 1;
  }
  auto num = [](std::string_view t, int64_t* out) {
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), *out);
    return ec == std::errc() && p == t.data() + t.size();
  };
  // A mark's token names a file or object in the store: 32 lowercase hex digits, nothing else. An interval
  // within what `run` accepts keeps the arithmetic on it far from overflow.
  auto token = [](std::string_view t) {
    return t.size() == 32 && t.find_first_not_of("0123456789abcdef") == std::string_view::npos;
  };
  NodeRow r;
  if (f.size() != 5 || !token(f[0]) || (f[1] != "-" && !token(f[1])) || !num(f[2], &r.written_ms) ||
      !num(f[3], &r.interval_s) || r.interval_s <= 0 || r.interval_s > 86400 || (f[4] != "0" && f[4] != "1"))
    return std::nullopt;
  r.token.assign(f[0]);
  if (f[1] != "-") r.previous.assign(f[1]);
  r.apart = f[4] == "1";
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
  // that the others would then miss, and does not replace the one the next node to start checks. It is
  // refused only while the nodes say their stores are one: while some say they are apart (one of them
  // maybe killed so, its row not yet stale), it starts and its checks keep uploads refused as theirs do,
  // so that a node restarted on a mended store is not kept from starting.
  DALA_ASSIGN_OR_RETURN(NodeVerdict v, CheckOtherNodes());
  if (!v.missing_from_joined.empty() && v.reported_apart.empty()) {
    std::string which;
    for (const auto& m : v.missing_from_joined) which += (which.empty() ? "" : "; ") + m;
    return Status(Code::kState, "the nodes on this database do not all use one attachment store: " +
                                    attachments_->Describe() + " lacks a recent mark of a running node (" + which +
                                    "). Every node must name the same shared directory, mounted, or the same S3 "
                                    "bucket and prefix (blobs.path in the data directory). This node did not start.");
  }
  {
    std::lock_guard lock(mu_);
    DALA_RETURN_IF_ERROR(CheckSharedAttachments(*db_, *attachments_));
  }
  DALA_ASSIGN_OR_RETURN(bool written, WriteNodeMark(check_interval_s, !v.missing.empty()));
  PublishNodeVerdict(v, written);
  return Status::Ok();
}

Status ServerCore::CheckNodes(int interval_s) {
  if (db_->engine() != sql::Engine::kPostgres) return Status::Ok();  // one node: nothing to share
  std::lock_guard check(nodes_mu_);
  DALA_ASSIGN_OR_RETURN(NodeVerdict v, CheckOtherNodes());  // the database unreachable: nothing changes
  // This node's new mark, and its row saying whether its store lacked another node's mark just now.
  DALA_ASSIGN_OR_RETURN(bool written, WriteNodeMark(interval_s, !v.missing.empty()));
  PublishNodeVerdict(v, written);
  return Status::Ok();
}

void ServerCore::PublishNodeVerdict(const NodeVerdict& v, bool written) {
  const bool apart = !v.missing.empty() || !v.unreadable.empty() || !v.reported_apart.empty();
  metrics_.nodes_apart.Set(static_cast<double>(v.nodes.size()));
  auto list = [](const std::vector<std::string>& l) {
    std::string out = "[";
    for (size_t i = 0; i < l.size(); ++i) out += (i ? "," : "") + JsonString(l[i]);
    return out + "]";
  };
  if (apart) {
    LogLine("error", "\"event\":\"attachment_stores_apart\",\"store\":" + JsonString(attachments_->Describe()) +
                         ",\"node\":" + JsonString(node_id_) + ",\"missing\":" + list(v.missing) +
                         ",\"unreadable\":" + list(v.unreadable) + ",\"reported_by\":" + list(v.reported_apart) +
                         ",\"mark_written\":" + (written ? "true" : "false") +
                         ",\"error\":\"the nodes on this database do not all use one attachment store: uploads are "
                         "refused (phones keep their attachments and try later) until every node names the same "
                         "store, mounted. Attachments this node or the others stored since the stores parted are in "
                         "the store that took them: dala-server check, on a node of the shared store, names each one "
                         "it lacks; copy them into it.\"");
  } else if (stores_apart_.load()) {
    LogLine("info", "\"event\":\"attachment_stores_joined\",\"store\":" + JsonString(attachments_->Describe()) +
                        ",\"node\":" + JsonString(node_id_));
  }
  if (!written)  // the others check the mark before it meanwhile; this node's uploads fail on their own
    LogLine("warn", "\"event\":\"node_mark_not_written\",\"store\":" + JsonString(attachments_->Describe()));
  stores_apart_.store(apart);
}

Result<bool> ServerCore::WriteNodeMark(int interval_s, bool apart) {
  if (node_id_.empty()) node_id_ = RandomHex(8);
  // In the store first, then named in the database, so that whoever reads the name finds the mark if their
  // store is this one. A mark that could not be written is named as the newest, never as the one before:
  // the others look for the one before.
  NodeRow row;
  row.token = RandomHex(16);
  const bool written = attachments_->PutMark(row.token).ok();
  if (!node_marks_.empty()) row.previous = node_marks_.back();
  row.written_ms = clock_();
  row.interval_s = interval_s;
  row.apart = apart;
  Status recorded = [&]() -> Status {
    std::lock_guard lock(mu_);
    DALA_ASSIGN_OR_RETURN(sql::Stmt up, db_->Prepare(db_->Upsert("meta(key, value) VALUES(?, ?)", "key", "value")));
    const std::string value = NodeRowValue(row);
    up.BindText(1, std::string(kNodeKeyPrefix) + node_id_).Bind(2, crypto::Bytes(value));
    return up.Run();
  }();
  if (!recorded.ok()) {
    if (written) (void)attachments_->RemoveMark(row.token);
    return recorded;
  }
  if (!written) return false;
  node_marks_.push_back(row.token);
  while (node_marks_.size() > 3) {  // the newest two are named in the row; one more for a slow reader
    (void)attachments_->RemoveMark(node_marks_.front());
    node_marks_.pop_front();
  }
  return true;
}

Result<ServerCore::NodeVerdict> ServerCore::CheckOtherNodes() {
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
  NodeVerdict v;
  std::set<std::string> present;
  for (auto& [key, row] : rows) {
    present.insert(key);
    const std::string id = key.substr(kNodeKeyPrefix.size());
    const auto patience = std::chrono::seconds(3 * row.interval_s + 5);
    SeenNode& seen = seen_nodes_[key];
    if (seen.token != row.token) {
      const bool first = seen.token.empty();
      seen.token = row.token;
      seen.since = steady;
      // Seen for the first time with a row written long ago (by its clock, which may differ from this
      // one's: a minute is allowed): a node that stopped without leaving (killed).
      if (first && now - row.written_ms > 3000 * row.interval_s + 60000) seen.since = steady - 2 * patience;
    }
    if (steady - seen.since > patience) {  // not running: its row has not changed for three of its intervals
      if (now - row.written_ms > 86400000) {  // gone a day: its row is removed
        std::lock_guard lock(mu_);
        if (auto del = db_->Prepare("DELETE FROM meta WHERE key = ?"); del.ok()) (void)del->BindText(1, key).Run();
      }
      continue;
    }
    if (row.apart) {
      v.reported_apart.push_back("node " + id);
      v.nodes.insert(id);
    }
    // A node's first mark is not looked for (a store may show a new file late): its second names it as the
    // one before, an interval later.
    if (row.previous.empty()) continue;
    Result<bool> there = attachments_->HasMark(row.previous);
    if (there.ok() && !*there) {  // the node may have moved on (and removed that mark) as this one read: read again
      DALA_ASSIGN_OR_RETURN(auto again, read_rows(key));
      if (again.empty()) continue;  // it left
      if (again[0].second.token != row.token) {
        row = again[0].second;
        seen.token = row.token;
        seen.since = steady;
        if (row.previous.empty()) continue;
        there = attachments_->HasMark(row.previous);
      }
    }
    const std::string mark = "node " + id + "'s mark " + attachments_->MarkName(row.previous);
    if (!there.ok()) {  // the store cannot say: it fails, and this node's uploads with it
      v.unreadable.push_back(mark + ": " + there.status().message());
      v.nodes.insert(id);
    } else if (!*there) {
      if (!row.apart) v.missing_from_joined.push_back(mark);
      v.missing.push_back(mark);
      v.nodes.insert(id);
    }
  }
  for (auto it = seen_nodes_.begin(); it != seen_nodes_.end();)
    it = present.count(it->first) ? std::next(it) : seen_nodes_.erase(it);
  return v;
}

void ServerCore::LeaveNodes() {
  if (db_->engine() != sql::Engine::kPostgres) return;
  std::lock_guard check(nodes_mu_);
  if (node_id_.empty()) return;
  {
    std::lock_guard lock(mu_);
    auto del = db_->Prepare("DELETE FROM meta WHERE key = ?");
    // Not removed from the database: the marks stay, else the others would miss them until the row is stale.
    if (!del.ok() || !del->BindText(1, std::string(kNodeKeyPrefix) + node_id_).Run().ok()) return;
  }
  for (const auto& t : node_marks_) (void)attachments_->RemoveMark(t);
  node_marks_.clear();
}

}  // namespace dala::server
