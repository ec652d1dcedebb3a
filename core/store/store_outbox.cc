// Store: the durable outbox. One row per (destination, report version): pending (0), in flight (1),
// delivered (2, receipt kept) or rejected (3, reason kept), with attempts and the next attempt time.
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "store/outbox_state.h"
#include "store/store.h"

namespace dala {
namespace {

constexpr size_t kReasonMax = 1024;


Status ValidateDestination(const std::string& d) {
  return ValidateText("the destination name", d, 128, false);
}

// A reason comes from a server: keep it bounded and valid UTF-8.
std::string CleanReason(std::string_view reason) {
  std::string r(reason.substr(0, kReasonMax));
  while (!r.empty() && !IsValidUtf8(r)) r.pop_back();
  return r;
}

}  // namespace

// Rows per statement when many rows change at once: within a transaction a statement that may abort half
// way journals each page it changes (encrypted, in SQLCipher) before changing it, so one statement per row
// would pay for the same pages again and again. The batch statements say OR FAIL: the only constraint they
// could break is NOT NULL, with values that are never NULL, and an error rolls the whole transaction back
// anyway; so SQLite keeps no statement journal for them at all. A chunk's list is padded (repeating its
// last row) to a power of two, so that few statements are cached.
constexpr size_t kRowsPerStatement = 256;  // 2 parameters each stay below SQLite's 999
size_t PaddedRows(size_t n) {
  size_t p = 8;
  while (p < n) p *= 2;
  return p;
}

// Marks the rows `seqs` in flight (one more attempt).
Status Store::UpdateInFlightLocked(const std::vector<int64_t>& seqs, int64_t now) {
  for (size_t start = 0; start < seqs.size(); start += kRowsPerStatement) {
    const size_t n = std::min(kRowsPerStatement, seqs.size() - start), padded = PaddedRows(n);
    std::string sql = "UPDATE OR FAIL outbox SET state = " DALA_OUTBOX_IN_FLIGHT ", attempts = attempts + 1, updated_ms = ? WHERE seq IN (";
    for (size_t i = 0; i < padded; ++i) sql += i == 0 ? "?" : ",?";
    sql += ")";
    DALA_ASSIGN_OR_RETURN(db::Stmt upd, db_.Prepare(sql));
    upd.Bind(1, now);
    for (size_t i = 0; i < padded; ++i) upd.Bind(static_cast<int>(i + 2), seqs[start + std::min(i, n - 1)]);
    DALA_RETURN_IF_ERROR(upd.Run());
  }
  return Status::Ok();
}

// MarkDeliveredLocked for many versions, the rows changed by few statements. Each version must be queued
// (kNotFound otherwise); one delivered already keeps its first receipt.
Status Store::MarkDeliveredManyLocked(const std::string& destination, std::span<const OutboxOutcome* const> items,
                                      bool purge) {
  DALA_RETURN_IF_ERROR(ValidateDestination(destination));
  std::vector<std::pair<int64_t, const OutboxOutcome*>> rows;  // seq, outcome
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt find, db_.Prepare(
        "SELECT seq, state FROM outbox WHERE destination = ? AND report_id = ? AND version = ?"));
    for (const OutboxOutcome* o : items) {
      if (o->receipt.empty() || o->receipt.size() > 64 * 1024)
        return {Code::kInvalidArgument, "a receipt must be 1 byte to 64 KiB"};
      find.BindText(1, destination).Bind(2, o->id).Bind(3, o->version);
      DALA_ASSIGN_OR_RETURN(bool row, find.Step());
      if (!row) return {Code::kNotFound, "no outbox item for that report version and destination"};
      const int64_t seq = find.Int(0);
      const bool delivered = find.Int(1) == static_cast<int64_t>(OutboxState::kDelivered);
      find.Reset();
      bool again = false;  // the same version twice: the first receipt counts
      for (const auto& r : rows) again = again || r.first == seq;
      if (!delivered && !again) rows.emplace_back(seq, o);
    }
  }
  const int64_t now = Now();
  for (size_t start = 0; start < rows.size(); start += kRowsPerStatement) {
    const size_t n = std::min(kRowsPerStatement, rows.size() - start), padded = PaddedRows(n);
    std::string sql = "UPDATE OR FAIL outbox SET state = " DALA_OUTBOX_DELIVERED ", receipt = CASE seq";
    for (size_t i = 0; i < padded; ++i) sql += " WHEN ? THEN ?";
    sql += " END, envelope = NULL, last_error = NULL, updated_ms = ? WHERE state <> " DALA_OUTBOX_DELIVERED " AND seq IN (";
    for (size_t i = 0; i < padded; ++i) sql += i == 0 ? "?" : ",?";
    sql += ")";
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(sql));
    int k = 1;
    for (size_t i = 0; i < padded; ++i) {
      const auto& [seq, o] = rows[start + std::min(i, n - 1)];
      st.Bind(k, seq).Bind(k + 1, o->receipt);
      k += 2;
    }
    st.Bind(k++, now);
    for (size_t i = 0; i < padded; ++i) st.Bind(k++, rows[start + std::min(i, n - 1)].first);
    DALA_RETURN_IF_ERROR(st.Run());
  }
  if (purge)
    for (const auto& [seq, o] : rows) DALA_RETURN_IF_ERROR(PurgeDeliveredLocked(&o->id, o->version));
  return Status::Ok();
}

Result<std::vector<OutboxItem>> Store::NextBatch(const std::string& destination, size_t max_items,
                                                 size_t max_bytes) {
  DALA_RETURN_IF_ERROR(ValidateDestination(destination));
  std::vector<OutboxItem> out;
  if (max_items == 0) return out;
  std::lock_guard lock(mu_);
  // A claim is committed without waiting for the disk: items in flight are pending again at the next open,
  // so a claim a power cut takes back changes nothing, and the next commit that syncs (the outcomes, in the
  // same write-ahead log) makes it durable with its own. One sync a push saved (docs/storage-format.md).
  DALA_RETURN_IF_ERROR(db_.Exec("PRAGMA synchronous = NORMAL;"));
  Result<std::vector<OutboxItem>> claimed = ClaimLocked(destination, max_items, max_bytes);
  Status synced = db_.Exec("PRAGMA synchronous = FULL;");
  if (!synced.ok()) return synced;
  return claimed;
}

Result<std::vector<OutboxItem>> Store::ClaimLocked(const std::string& destination, size_t max_items,
                                                   size_t max_bytes) {
  std::vector<OutboxItem> out;
  int64_t now = Now();
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_ASSIGN_OR_RETURN(db::Stmt sel, db_.Prepare(
      "SELECT seq, report_id, version, priority, attempts, envelope FROM outbox "
      "WHERE destination = ? AND state = " DALA_OUTBOX_PENDING " AND next_attempt_ms <= ? ORDER BY priority DESC, seq LIMIT ?"));
  sel.BindText(1, destination).Bind(2, now).Bind(3, static_cast<int64_t>(std::min<size_t>(max_items, 1u << 20)));
  size_t bytes = 0;
  std::vector<int64_t> seqs;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, sel.Step());
    if (!row) break;
    auto env = sel.BlobView(5);
    if (!out.empty() && bytes + env.size() > max_bytes) break;  // keep priority order; the first always fits
    OutboxItem item;
    auto idv = sel.BlobView(1);
    if (idv.size() != item.id.size()) return Status(Code::kCorrupt, "a queued report id is damaged");
    std::memcpy(item.id.data(), idv.data(), idv.size());
    item.version = static_cast<uint32_t>(sel.Int(2));
    item.priority = static_cast<int32_t>(sel.Int(3));
    item.attempts = static_cast<uint32_t>(sel.Int(4)) + 1;
    item.envelope.assign(env.begin(), env.end());
    bytes += env.size();
    seqs.push_back(sel.Int(0));
    out.push_back(std::move(item));
  }
  sel = db::Stmt();
  // All in flight in as few statements as possible: within a transaction each statement journals every page
  // it changes (encrypted), so one statement per row would pay for the same pages again and again.
  DALA_RETURN_IF_ERROR(UpdateInFlightLocked(seqs, now));
  DALA_RETURN_IF_ERROR(txn.Commit());
  return out;
}

Status Store::MarkLocked(const std::string& destination, const ReportId& id, uint32_t version, OutboxState state,
                         std::string_view reason, int64_t next_attempt_ms) {
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "UPDATE outbox SET state = ?, last_error = ?, next_attempt_ms = ?, updated_ms = ? "
      "WHERE destination = ? AND report_id = ? AND version = ? AND state IN (" DALA_OUTBOX_PENDING ", " DALA_OUTBOX_IN_FLIGHT ")"));
  st.Bind(1, static_cast<int64_t>(state));
  if (reason.empty()) st.BindNull(2); else st.BindText(2, reason);
  st.Bind(3, next_attempt_ms).Bind(4, Now()).BindText(5, destination).Bind(6, id).Bind(7, version);
  DALA_RETURN_IF_ERROR(st.Run());
  if (db_.Changes() == 0) return {Code::kNotFound, "no pending or in-flight outbox item for that report version"};
  return Status::Ok();
}

Status Store::MarkDeliveredLocked(const std::string& destination, const ReportId& id, uint32_t version,
                                  std::span<const uint8_t> receipt, bool purge) {
  DALA_RETURN_IF_ERROR(ValidateDestination(destination));
  if (receipt.empty() || receipt.size() > 64 * 1024)
    return {Code::kInvalidArgument, "a receipt must be 1 byte to 64 KiB"};
  {
    // Idempotent: a second receipt for a delivered item is ignored (the first one is kept).
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
        "UPDATE outbox SET state = " DALA_OUTBOX_DELIVERED ", receipt = ?, envelope = NULL, last_error = NULL, updated_ms = ? "
        "WHERE destination = ? AND report_id = ? AND version = ? AND state <> " DALA_OUTBOX_DELIVERED));
    st.Bind(1, receipt).Bind(2, Now()).BindText(3, destination).Bind(4, id).Bind(5, version);
    DALA_RETURN_IF_ERROR(st.Run());
    if (db_.Changes() == 0) {
      DALA_ASSIGN_OR_RETURN(db::Stmt chk, db_.Prepare(
          "SELECT 1 FROM outbox WHERE destination = ? AND report_id = ? AND version = ?"));
      chk.BindText(1, destination).Bind(2, id).Bind(3, version);
      DALA_ASSIGN_OR_RETURN(bool exists, chk.Step());
      if (!exists) return {Code::kNotFound, "no outbox item for that report version and destination"};
    }
  }
  if (purge) DALA_RETURN_IF_ERROR(PurgeDeliveredLocked(&id, version));
  return Status::Ok();
}

Status Store::MarkDelivered(const std::string& destination, const ReportId& id, uint32_t version,
                            std::span<const uint8_t> receipt) {
  std::lock_guard lock(mu_);
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_ASSIGN_OR_RETURN(bool purge, DeleteAfterDeliveryLocked());
  DALA_RETURN_IF_ERROR(MarkDeliveredLocked(destination, id, version, receipt, purge));
  DALA_RETURN_IF_ERROR(txn.Commit());
  SweepAfterCommitLocked();
  return Status::Ok();
}

// One answer's outcomes, one commit: a phone draining its outbox pays one synced write per answer, not one
// per report. A crash before the commit leaves them all in flight, pending again at the next open: they are
// sent again and the server answers with the receipts it gave the first time.
Status Store::RecordOutcomes(const std::string& destination, std::span<const OutboxOutcome> outcomes,
                             const std::string* log_witness) {
  DALA_RETURN_IF_ERROR(ValidateDestination(destination));
  if (outcomes.empty() && log_witness == nullptr) return Status::Ok();
  if (log_witness != nullptr && log_witness->size() > 64 * 1024)
    return Status(Code::kInvalidArgument, "a log witness is at most 64 KiB");
  std::lock_guard lock(mu_);
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  // In order; consecutive deliveries together (few statements).
  std::optional<bool> purge;
  std::vector<const OutboxOutcome*> delivered;
  auto flush = [&]() -> Status {
    if (delivered.empty()) return Status::Ok();
    if (!purge) {
      DALA_ASSIGN_OR_RETURN(bool p, DeleteAfterDeliveryLocked());
      purge = p;
    }
    DALA_RETURN_IF_ERROR(MarkDeliveredManyLocked(destination, delivered, *purge));
    delivered.clear();
    return Status::Ok();
  };
  for (const OutboxOutcome& o : outcomes) {
    if (o.kind == OutboxOutcome::Kind::kDelivered) {
      delivered.push_back(&o);
      continue;
    }
    DALA_RETURN_IF_ERROR(flush());
    if (o.kind == OutboxOutcome::Kind::kRetry) {
      DALA_RETURN_IF_ERROR(MarkRetryLocked(destination, o.id, o.version, o.reason));
    } else {
      DALA_RETURN_IF_ERROR(MarkRejectedLocked(destination, o.id, o.version, o.reason));
    }
  }
  DALA_RETURN_IF_ERROR(flush());
  if (log_witness != nullptr) {
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("UPDATE servers SET log_witness = ? WHERE destination = ?"));
    st.Bind(1, crypto::Bytes(*log_witness)).BindText(2, destination);
    DALA_RETURN_IF_ERROR(st.Run());
  }
  DALA_RETURN_IF_ERROR(txn.Commit());
  SweepAfterCommitLocked();
  return Status::Ok();
}

Status Store::Unclaim(const std::string& destination, std::span<const OutboxItem> items) {
  DALA_RETURN_IF_ERROR(ValidateDestination(destination));
  if (items.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "UPDATE outbox SET state = " DALA_OUTBOX_PENDING ", attempts = max(attempts - 1, 0), updated_ms = ? "
      "WHERE destination = ? AND report_id = ? AND version = ? AND state = " DALA_OUTBOX_IN_FLIGHT));
  for (const OutboxItem& item : items) {
    st.Bind(1, Now()).BindText(2, destination).Bind(3, item.id).Bind(4, item.version);
    DALA_RETURN_IF_ERROR(st.Run());
    st.Reset();
  }
  st = db::Stmt();
  return txn.Commit();
}

// Deletes the content of sealed versions that every destination has delivered (receipts, ids and hashes
// stay). secure_delete zeroes the freed pages.
Status Store::PurgeDeliveredLocked(const ReportId* only_id, std::optional<uint32_t> only_version) {
  std::string sql =
      "UPDATE reports SET body = NULL, purged = 1 WHERE sealed = 1 AND purged = 0 "
      "AND EXISTS (SELECT 1 FROM outbox o WHERE o.report_id = reports.id AND o.version = reports.version) "
      "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.report_id = reports.id AND o.version = reports.version "
      "AND o.state <> " DALA_OUTBOX_DELIVERED ")";
  if (only_id != nullptr) sql += " AND id = ? AND version = ?";
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(sql));
  if (only_id != nullptr) st.Bind(1, std::span<const uint8_t>(*only_id)).Bind(2, only_version.value_or(0));
  DALA_RETURN_IF_ERROR(st.Run());
  if (db_.Changes() == 0) return Status::Ok();
  erase_pending_ = true;
  return DropUnusedAttachmentsLocked();
}

Status Store::MarkRetryLocked(const std::string& destination, const ReportId& id, uint32_t version,
                              std::string_view reason) {
  DALA_RETURN_IF_ERROR(ValidateDestination(destination));
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT attempts FROM outbox WHERE destination = ? AND report_id = ? AND version = ?"));
  st.BindText(1, destination).Bind(2, id).Bind(3, version);
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return {Code::kNotFound, "no outbox item for that report version and destination"};
  int64_t attempts = std::max<int64_t>(1, st.Int(0));
  st = db::Stmt();
  // Exponential backoff, capped, with jitter: a delay in [d/2, d] so devices that failed together spread out.
  uint64_t d = options_.backoff_base_ms;
  for (int64_t i = 1; i < attempts && d < options_.backoff_max_ms; ++i) d *= 2;
  d = std::min<uint64_t>(d, options_.backoff_max_ms);
  uint64_t half = d / 2;
  uint64_t delay = half + (half > 0 ? randombytes_uniform(static_cast<uint32_t>(std::min<uint64_t>(half, UINT32_MAX - 1)) + 1) : 0);
  return MarkLocked(destination, id, version, OutboxState::kPending, CleanReason(reason), Now() + static_cast<int64_t>(delay));
}

Status Store::MarkRetry(const std::string& destination, const ReportId& id, uint32_t version,
                        std::string_view reason) {
  std::lock_guard lock(mu_);
  return MarkRetryLocked(destination, id, version, reason);
}

Status Store::MarkRejectedLocked(const std::string& destination, const ReportId& id, uint32_t version,
                                 std::string_view reason) {
  DALA_RETURN_IF_ERROR(ValidateDestination(destination));
  std::string r = CleanReason(reason);
  return MarkLocked(destination, id, version, OutboxState::kRejected, r.empty() ? "rejected by the server" : r, 0);
}

Status Store::MarkRejected(const std::string& destination, const ReportId& id, uint32_t version,
                           std::string_view reason) {
  std::lock_guard lock(mu_);
  return MarkRejectedLocked(destination, id, version, reason);
}

Status Store::RetryOfflineNow() {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "UPDATE outbox SET next_attempt_ms = 0 WHERE state = " DALA_OUTBOX_PENDING " AND last_error = ?"));
  st.BindText(1, kOfflineReason);
  return st.Run();
}

Status Store::RetryNow() {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("UPDATE outbox SET next_attempt_ms = 0 WHERE state = " DALA_OUTBOX_PENDING));
  return st.Run();
}

Status Store::RetryRejected(const ReportId& id) {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "UPDATE outbox SET state = " DALA_OUTBOX_PENDING ", attempts = 0, next_attempt_ms = 0, last_error = NULL, "
      "updated_ms = ? WHERE report_id = ? AND state = " DALA_OUTBOX_REJECTED " AND envelope IS NOT NULL"));
  st.Bind(1, Now()).Bind(2, id);
  DALA_RETURN_IF_ERROR(st.Run());
  if (db_.Changes() == 0) return {Code::kNotFound, "no version of that report was rejected"};
  return Status::Ok();
}

Status Store::Requeue(const std::string& destination, const ReportId& id, uint32_t version) {
  DALA_RETURN_IF_ERROR(ValidateDestination(destination));
  std::lock_guard lock(mu_);
  return MarkLocked(destination, id, version, OutboxState::kPending, "", 0);
}

Result<OutboxStats> Store::Stats(const std::string& destination) {
  DALA_RETURN_IF_ERROR(ValidateDestination(destination));
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT sum(state = " DALA_OUTBOX_PENDING "), sum(state = " DALA_OUTBOX_IN_FLIGHT "), sum(state = " DALA_OUTBOX_DELIVERED "), sum(state = " DALA_OUTBOX_REJECTED "), "
      "min(CASE WHEN state = " DALA_OUTBOX_PENDING " THEN next_attempt_ms END) FROM outbox WHERE destination = ?"));
  st.BindText(1, destination);
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  OutboxStats s;
  if (row) {
    s.pending = static_cast<uint64_t>(st.Int(0));
    s.in_flight = static_cast<uint64_t>(st.Int(1));
    s.delivered = static_cast<uint64_t>(st.Int(2));
    s.rejected = static_cast<uint64_t>(st.Int(3));
    s.next_attempt_ms = st.Int(4);
  }
  return s;
}

Result<std::vector<uint8_t>> Store::Receipt(const std::string& destination, const ReportId& id, uint32_t version) {
  DALA_RETURN_IF_ERROR(ValidateDestination(destination));
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT receipt FROM outbox WHERE destination = ? AND report_id = ? AND version = ? AND state = " DALA_OUTBOX_DELIVERED));
  st.BindText(1, destination).Bind(2, id).Bind(3, version);
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kNotFound, "no receipt for that report version and destination");
  return st.Blob(0);
}

}  // namespace dala
