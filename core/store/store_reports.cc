// Store: drafts, sealing and versions of reports.
#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <system_error>
#include <thread>
#include <vector>

#include "base/fsutil.h"
#include "store/outbox_state.h"
#include "store/store.h"
#include "base/failpoint.h"
#include "format/envelope.h"

namespace dala {

namespace {

// Runs fn(0) ... fn(n - 1), each index once, on helper threads that start at once (up to 3, when the machine
// has more than one core), while the calling thread does other work; Finish() has the calling thread take
// what is left and joins the helpers. fn must not throw (SignAndSeal keeps its failures in its job). Every
// thread started is joined before Finish() or the destructor returns (the destructor leaves what no thread
// has begun undone: the caller's work failed, and the items are not wanted).
class SharedWork {
 public:
  SharedWork(size_t n, std::function<void(size_t)> fn) : n_(n), fn_(std::move(fn)) {
    constexpr size_t kPerThread = 32;
    const size_t cores = std::max<unsigned>(1, std::thread::hardware_concurrency());
    const size_t helpers = n < 2 ? 0 : std::min<size_t>({cores - 1, 3, (n + kPerThread - 1) / kPerThread});
    helpers_.reserve(helpers);
    for (size_t t = 0; t < helpers; ++t) {
      try {
        helpers_.emplace_back([this] { Work(); });
      } catch (const std::exception&) {  // no thread to be had (or no memory for one): fewer do it
        break;
      }
    }
  }
  SharedWork(const SharedWork&) = delete;
  SharedWork& operator=(const SharedWork&) = delete;
  ~SharedWork() {
    next_ = n_;
    Join();
  }

  void Finish() {
    Work();
    Join();
  }

 private:
  void Work() {
    for (size_t i = next_++; i < n_; i = next_++) fn_(i);
  }
  void Join() {
    for (auto& h : helpers_) h.join();
    helpers_.clear();
  }

  const size_t n_;
  const std::function<void(size_t)> fn_;
  std::atomic<size_t> next_{0};
  std::vector<std::thread> helpers_;
};

// A draft's stored body: its attachments live in the attachments table (with their keys), not here.
std::string DraftBody(const v1::ReportContent& content) {
  if (content.attachments_size() == 0) return content.SerializeAsString();
  v1::ReportContent copy = content;
  copy.clear_attachments();
  return copy.SerializeAsString();
}

const Status kNoReport(Code::kNotFound, "no such report in this store");


}  // namespace

Result<uint64_t> Store::NextCounterLocked() {
  DALA_RETURN_IF_ERROR(db_.Exec("UPDATE meta SET value = value + 1 WHERE key = 'counter';"));
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("SELECT value FROM meta WHERE key = 'counter'"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kCorrupt, "the store's counter is missing; it is damaged");
  return static_cast<uint64_t>(st.Int(0));
}

// Stamps the capture metadata (device time, next store-wide counter) and inserts the draft version.
Status Store::InsertDraftLocked(Report& r, int64_t now) {
  r.updated_ms = now;
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_ASSIGN_OR_RETURN(uint64_t counter, NextCounterLocked());
  r.content.mutable_capture()->set_device_time_ms(now);
  r.content.mutable_capture()->set_counter(counter);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "INSERT INTO reports(id, version, sealed, form, created_ms, updated_ms, priority, body) "
      "VALUES(?, ?, 0, ?, ?, ?, ?, ?)"));
  std::string body = DraftBody(r.content);
  ReportId id = r.id();
  st.Bind(1, id).Bind(2, r.content.version()).BindText(3, r.form()).Bind(4, r.content.created_ms());
  st.Bind(5, now).Bind(6, r.priority).Bind(7, crypto::Bytes(body));
  DALA_RETURN_IF_ERROR(st.Run());
  return txn.Commit();
}

Result<Report> Store::CreateDraft(const std::string& form) {
  std::string name;
  uint32_t form_version = 0;
  DALA_RETURN_IF_ERROR(ParseForm(form, &name, &form_version));
  std::lock_guard lock(mu_);
  int64_t now = Now();
  Report r;
  ReportId id;
  randombytes_buf(id.data(), id.size());
  r.content.set_report_id(id.data(), id.size());
  r.content.set_version(1);
  r.content.set_form(name);
  r.content.set_form_version(form_version);
  r.content.set_created_ms(now);
  DALA_RETURN_IF_ERROR(InsertDraftLocked(r, now));
  return r;
}

Result<ReportState> Store::StateLocked(const ReportId& id, uint32_t version) {
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT count(*), sum(state = " DALA_OUTBOX_DELIVERED "), sum(state = " DALA_OUTBOX_REJECTED ") FROM outbox WHERE report_id = ? AND version = ?"));
  st.Bind(1, id).Bind(2, version);
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return ReportState::kSealed;
  return DeriveState(true, st.Int(0), st.Int(1), st.Int(2));
}

Result<Report> Store::GetLocked(const ReportId& id, std::optional<uint32_t> version) {
  std::string sql =
      "SELECT version, sealed, form, created_ms, updated_ms, priority, body, content_hash, purged "
      "FROM reports WHERE id = ?";
  sql += version ? " AND version = ?" : " ORDER BY version DESC LIMIT 1";
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(sql));
  st.Bind(1, id);
  if (version) st.Bind(2, *version);
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return kNoReport;
  Report r;
  uint32_t ver = static_cast<uint32_t>(st.Int(0));
  bool sealed = st.Int(1) != 0;
  r.updated_ms = st.Int(4);
  r.priority = static_cast<int32_t>(st.Int(5));
  r.purged = st.Int(8) != 0;
  if (!sealed) {
    auto body = st.BlobView(6);
    if (!r.content.ParseFromArray(body.data(), static_cast<int>(body.size())))
      return Status(Code::kCorrupt, "a draft in the store is damaged");
    st = db::Stmt();
    // A draft shows its attachments (without keys); sealing records them from the attachments table.
    DALA_RETURN_IF_ERROR(FillAttachmentsLocked(id, ver, r.content, /*with_keys=*/false));
    return r;
  }
  auto hash = st.BlobView(7);
  if (hash.size() != r.content_hash.size()) return Status(Code::kCorrupt, "a sealed report's hash is damaged");
  std::memcpy(r.content_hash.data(), hash.data(), hash.size());
  if (r.purged) {
    // Content deleted after delivery: only what identifies the version remains.
    r.content.set_report_id(id.data(), id.size());
    r.content.set_version(ver);
    std::string name;
    uint32_t fv = 0;
    if (ParseForm(st.Text(2), &name, &fv).ok()) {
      r.content.set_form(name);
      r.content.set_form_version(fv);
    }
    r.content.set_created_ms(st.Int(3));
  } else {
    auto body = st.BlobView(6);
    // Verified on every read: a sealed version that was altered in the database is refused.
    if (crypto::Blake2b256(body) != r.content_hash)
      return Status(Code::kVerify, "a sealed report does not match its recorded hash (altered or damaged)");
    DALA_ASSIGN_OR_RETURN(r.content, VerifySignedReport(body));
    if (r.id() != id || r.content.version() != ver)
      return Status(Code::kVerify, "a sealed report's content names another report or version (altered)");
  }
  st = db::Stmt();
  DALA_ASSIGN_OR_RETURN(r.state, StateLocked(id, ver));
  return r;
}

Result<Report> Store::Get(const ReportId& id, std::optional<uint32_t> version) {
  std::lock_guard lock(mu_);
  return GetLocked(id, version);
}

Result<Report> Store::Edit(const ReportId& id) {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(Report latest, GetLocked(id, std::nullopt));
  if (!latest.sealed()) return latest;
  if (latest.purged)
    return Status(Code::kState, "this report's content was deleted after delivery; it cannot be edited");
  int64_t now = Now();
  Report r;
  r.content = latest.content;
  r.content.set_version(latest.content.version() + 1);
  r.content.set_previous_hash(latest.content_hash.data(), latest.content_hash.size());
  r.content.clear_sealed_ms();
  r.content.clear_device_key();
  r.content.clear_attachments();  // carried on by the attachments table
  r.priority = latest.priority;
  DALA_RETURN_IF_ERROR(InsertDraftLocked(r, now));
  DALA_RETURN_IF_ERROR(FillAttachmentsLocked(id, r.content.version(), r.content, /*with_keys=*/false));
  return r;
}

Status Store::SaveDraft(Report& r) {
  if (r.sealed()) return {Code::kState, "this version is sealed and cannot change; edit the report instead"};
  DALA_RETURN_IF_ERROR(CheckSerializedSize(r.content));
  std::lock_guard lock(mu_);
  int64_t now = Now();
  ReportId id = r.id();
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "UPDATE reports SET body = ?, updated_ms = ?, priority = ? WHERE id = ? AND version = ? AND sealed = 0"));
  std::string body = DraftBody(r.content);
  st.Bind(1, crypto::Bytes(body)).Bind(2, now).Bind(3, r.priority).Bind(4, id).Bind(5, r.content.version());
  DALA_RETURN_IF_ERROR(st.Run());
  if (db_.Changes() == 0)
    return {Code::kState, "this draft no longer exists as a draft (sealed or deleted elsewhere)"};
  r.updated_ms = now;
  return Status::Ok();
}

Status Store::InsertOutboxLocked(const std::string& destination, const ReportId& id, uint32_t version,
                                 int32_t priority, const std::string& env, int64_t now) {
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "INSERT INTO outbox(destination, report_id, version, state, priority, size, envelope, enqueued_ms, "
      "updated_ms) VALUES(?, ?, ?, 0, ?, ?, ?, ?, ?)"));
  st.BindText(1, destination).Bind(2, id).Bind(3, version).Bind(4, priority);
  st.Bind(5, static_cast<int64_t>(env.size())).Bind(6, crypto::Bytes(env)).Bind(7, now).Bind(8, now);
  return st.Run();
}

Status Store::EnqueueLocked(const std::string& destination, const std::vector<crypto::PublicKey>& recipients,
                            const ReportId& id, uint32_t version, int32_t priority,
                            std::span<const uint8_t> signed_bytes, int64_t now) {
  envelope::Header h;
  h.report_id = id;
  h.version = version;
  h.device_key = device_.public_key;
  DALA_RETURN_IF_ERROR(AttachmentManifestsLocked(id, version, &h.attachments));
  DALA_ASSIGN_OR_RETURN(std::string env, envelope::Seal(device_, h, signed_bytes, recipients));
  return InsertOutboxLocked(destination, id, version, priority, env, now);
}

// Step 1, reads only: the content as it will be signed, and the destinations this version goes to.
Result<Store::SealJob> Store::PrepareSealLocked(Report r, int64_t now, const Destinations& destinations) {
  if (r.sealed()) return Status(Code::kState, "this version is already sealed");
  DALA_RETURN_IF_ERROR(CheckSerializedSize(r.content));
  Failpoint("seal.begin");
  SealJob job;
  job.id = r.id();
  job.content = std::move(r.content);  // one copy of the content per job: WriteSealLocked puts it back
  job.report = std::move(r);
  job.report.content.Clear();
  const ReportId& id = job.id;
  DALA_RETURN_IF_ERROR(FillAttachmentsLocked(id, job.content.version(), job.content, /*with_keys=*/true));
  job.content.set_sealed_ms(now);
  job.content.set_device_key(device_.public_key.data(), device_.public_key.size());
  for (const auto& [dest, keys] : destinations) {
    // A report begun before this destination was joined (without include_existing) is not its: no later
    // version goes there either, so that neither the edit nor the history reaches a newly joined
    // organisation.
    if (job.content.version() > 1) {
      DALA_ASSIGN_OR_RETURN(db::Stmt has, db_.Prepare(
          "SELECT 1 FROM outbox WHERE destination = ? AND report_id = ? AND version < ? LIMIT 1"));
      has.BindText(1, dest).Bind(2, id).Bind(3, job.content.version());
      DALA_ASSIGN_OR_RETURN(bool row, has.Step());
      if (!row) continue;
    }
    SealJob::Queued q;
    q.destination = dest;
    q.recipients = &keys;
    DALA_RETURN_IF_ERROR(AttachmentManifestsLocked(id, job.content.version(), &q.attachments));
    job.queued.push_back(std::move(q));
  }
  return job;
}

// Step 2, no database: the device's signature, then an envelope for each destination.
void Store::SignAndSeal(SealJob& job) const {
  try {
    SignAndSealOrThrow(job);
  } catch (const std::bad_alloc&) {
    job.status = Status(Code::kNoMemory, "out of memory while sealing");
  }
}

void Store::SignAndSealOrThrow(SealJob& job) const {
  Failpoint("seal.sign");  // on a worker thread in a batch (tests make it run out of memory here)
  job.signed_bytes = SignContent(device_, job.content);
  job.hash = crypto::Blake2b256(crypto::Bytes(job.signed_bytes));
  for (auto& q : job.queued) {
    envelope::Header h;
    h.report_id = job.id;
    h.version = job.content.version();
    h.device_key = device_.public_key;
    h.attachments = q.attachments;
    auto env = envelope::Seal(device_, h, crypto::Bytes(job.signed_bytes), *q.recipients);
    if (!env.ok()) {
      job.status = env.status();
      return;
    }
    q.envelope = std::move(*env);
  }
}

// Step 3, within the caller's transaction: the sealed version stored and queued. A crash at any point before
// COMMIT leaves the draft untouched (SQLite's atomic commit).
Status Store::WriteSealLocked(SealJob& job, int64_t now) {
  DALA_RETURN_IF_ERROR(job.status);
  Failpoint("seal.signed");
  Report& r = job.report;
  const ReportId& id = job.id;
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
        "UPDATE reports SET sealed = 1, body = ?, content_hash = ?, updated_ms = ?, priority = ? "
        "WHERE id = ? AND version = ? AND sealed = 0"));
    st.Bind(1, crypto::Bytes(job.signed_bytes)).Bind(2, job.hash).Bind(3, now).Bind(4, r.priority);
    st.Bind(5, id).Bind(6, job.content.version());
    DALA_RETURN_IF_ERROR(st.Run());
    if (db_.Changes() == 0) return {Code::kState, "this draft no longer exists as a draft (sealed or deleted)"};
  }
  Failpoint("seal.stored");
  for (const auto& q : job.queued) {
    DALA_RETURN_IF_ERROR(InsertOutboxLocked(q.destination, id, job.content.version(), r.priority, q.envelope, now));
    Failpoint("seal.queued");
  }
  r.content = std::move(job.content);
  r.content_hash = job.hash;
  r.updated_ms = now;
  r.state = job.queued.empty() ? ReportState::kSealed : ReportState::kQueued;
  return Status::Ok();
}

Status Store::SealLocked(Report& r, int64_t now, const Destinations& destinations) {
  DALA_ASSIGN_OR_RETURN(SealJob job, PrepareSealLocked(r, now, destinations));
  SignAndSeal(job);
  DALA_RETURN_IF_ERROR(WriteSealLocked(job, now));
  r = std::move(job.report);
  return Status::Ok();
}

Status Store::Seal(Report& r) {
  std::lock_guard lock(mu_);
  Report work = r;  // the caller's handle changes only if the transaction commits
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  {
    // Save the handle's latest edits as part of the same transaction.
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
        "UPDATE reports SET body = ? WHERE id = ? AND version = ? AND sealed = 0"));
    std::string body = DraftBody(work.content);
    ReportId id = work.id();
    st.Bind(1, crypto::Bytes(body)).Bind(2, id).Bind(3, work.content.version());
    DALA_RETURN_IF_ERROR(st.Run());
  }
  DALA_ASSIGN_OR_RETURN(Destinations destinations, DestinationsLocked());
  DALA_RETURN_IF_ERROR(SealLocked(work, Now(), destinations));
  Failpoint("seal.before_commit");
  DALA_RETURN_IF_ERROR(txn.Commit());
  Failpoint("seal.committed");
  r = std::move(work);
  return Status::Ok();
}

Status Store::SealMany(const std::vector<ReportId>& ids) {
  std::lock_guard lock(mu_);
  int64_t now = Now();
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_ASSIGN_OR_RETURN(Destinations destinations, DestinationsLocked());
  // In windows of at most 256 reports and 8 MiB of content (what a window holds, its reports and their
  // envelopes, stays small whatever the batch and its reports' sizes), as a pipeline: while the phone's
  // other cores sign and seal one window (about 60% of a batch's CPU), this thread writes the window before
  // it and reads the one after (the database has one connection: only this thread uses it), then helps
  // finish the sealing. At most three windows are held at once.
  constexpr size_t kWindow = 256, kWindowBytes = 8u << 20;
  size_t next = 0;
  auto read_window = [&](std::vector<SealJob>& jobs) -> Status {
    size_t bytes = 0;
    while (next < ids.size() && jobs.size() < kWindow && bytes < kWindowBytes) {
      DALA_ASSIGN_OR_RETURN(Report r, GetLocked(ids[next++], std::nullopt));
      if (r.sealed()) return {Code::kState, "a report in the batch has no draft to seal"};
      DALA_ASSIGN_OR_RETURN(SealJob job, PrepareSealLocked(std::move(r), now, destinations));
      bytes += job.content.ByteSizeLong() * (1 + job.queued.size());  // the signed report and its envelopes
      jobs.push_back(std::move(job));
    }
    return Status::Ok();
  };
  std::vector<SealJob> written, sealing, read;
  DALA_RETURN_IF_ERROR(read_window(sealing));
  while (!sealing.empty()) {
    {
      SharedWork seal(sealing.size(), [&](size_t i) { SignAndSeal(sealing[i]); });  // joined on every path
      for (SealJob& job : written) DALA_RETURN_IF_ERROR(WriteSealLocked(job, now));
      written.clear();
      DALA_RETURN_IF_ERROR(read_window(read));
      seal.Finish();
    }
    written.swap(sealing);
    sealing.swap(read);
  }
  for (SealJob& job : written) DALA_RETURN_IF_ERROR(WriteSealLocked(job, now));
  return txn.Commit();
}

Status Store::DeleteDraft(const ReportId& id) {
  std::lock_guard lock(mu_);
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("DELETE FROM reports WHERE id = ? AND sealed = 0"));
    st.Bind(1, id);
    DALA_RETURN_IF_ERROR(st.Run());
    if (db_.Changes() == 0) return {Code::kNotFound, "this report has no draft to delete"};
    erase_pending_ = true;
  }
  DALA_RETURN_IF_ERROR(DropUnusedAttachmentsLocked());  // the draft's own attachments
  DALA_RETURN_IF_ERROR(txn.Commit());
  SweepAfterCommitLocked();
  return Status::Ok();
}

}  // namespace dala
