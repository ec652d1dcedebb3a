// Store: attachments of reports (capture, import, read back, remove, sweep) and their manifests.
#include <sodium.h>

#include <cstring>

#include "crypto/attachment_file.h"
#include "base/fsutil.h"
#include "store/outbox_state.h"
#include "store/store.h"
#include "base/encoding.h"
#include "base/failpoint.h"

namespace dala {
namespace {


const char kColumns[] =
    "id, report_id, version, mime, size, plaintext_hash, ciphertext_size, ciphertext_hash, created_ms";

Status Copy(std::span<const uint8_t> from, std::span<uint8_t> to, const char* what) {
  if (from.size() != to.size()) return {Code::kCorrupt, std::string("an attachment's ") + what + " is damaged"};
  std::memcpy(to.data(), from.data(), to.size());
  return Status::Ok();
}

Result<AttachmentInfo> ReadInfo(db::Stmt& st) {
  AttachmentInfo a;
  DALA_RETURN_IF_ERROR(Copy(st.BlobView(0), a.id, "id"));
  DALA_RETURN_IF_ERROR(Copy(st.BlobView(1), a.report_id, "report id"));
  a.version = static_cast<uint32_t>(st.Int(2));
  a.mime = st.Text(3);
  a.size = static_cast<uint64_t>(st.Int(4));
  DALA_RETURN_IF_ERROR(Copy(st.BlobView(5), a.plaintext_hash, "plaintext hash"));
  a.ciphertext_size = static_cast<uint64_t>(st.Int(6));
  DALA_RETURN_IF_ERROR(Copy(st.BlobView(7), a.ciphertext_hash, "ciphertext hash"));
  a.created_ms = st.Int(8);
  return a;
}

Status ValidateMime(const std::string& mime) {
  DALA_RETURN_IF_ERROR(ValidateText("the attachment's MIME type", mime, 127, false));
  if (mime.find('/') == std::string::npos || mime.find_first_of(" \t\r\n;,") != std::string::npos)
    return {Code::kInvalidArgument, "the attachment's MIME type must look like type/subtype (e.g. video/mp4)"};
  return Status::Ok();
}

}  // namespace

std::string Store::AttachmentDir() const { return StorePaths(dir_, options_.names).media(); }

AttachmentCapture::AttachmentCapture(Store& store, ReportId report, uint32_t version, std::string file,
                                     std::unique_ptr<attachment::Writer> writer)
    : store_(store), report_(report), version_(version), file_(std::move(file)), writer_(std::move(writer)) {}

AttachmentCapture::~AttachmentCapture() {
  writer_.reset();  // removes the file unless the capture finished
  store_.EndCapture(file_);
}

Status AttachmentCapture::Write(std::span<const uint8_t> data) {
  if (!writer_) return {Code::kState, "this attachment capture is finished"};
  return writer_->Write(data);
}

Result<AttachmentInfo> AttachmentCapture::Finish() {
  if (!writer_) return Status(Code::kState, "this attachment capture is finished");
  Result<AttachmentInfo> out = Status(Code::kInternal, "not finished");
  Status st = store_.FinishCapture(*this, &out);
  if (!st.ok()) {
    (void)fs::RemoveFile(fs::Join(store_.AttachmentDir(), file_));
    writer_.reset();
    return st;
  }
  writer_.reset();
  return out;
}

void Store::EndCapture(const std::string& file) {
  std::lock_guard lock(mu_);
  capturing_.erase(file);
}

Result<std::unique_ptr<AttachmentCapture>> Store::CaptureAttachment(const ReportId& id, const std::string& mime) {
  DALA_RETURN_IF_ERROR(ValidateMime(mime));
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(Report latest, GetLocked(id, std::nullopt));
  if (latest.sealed())
    return Status(Code::kState, "attachments go into a draft; this report is sealed (edit it to add more)");
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(AttachmentDir()));
  uint8_t name[16];
  randombytes_buf(name, sizeof name);
  // A random name that says nothing (0.1 added ".att"; its files keep their names).
  std::string file = encoding::ToHex(std::span<const uint8_t>(name, sizeof name));
  DALA_ASSIGN_OR_RETURN(std::unique_ptr<attachment::Writer> w, attachment::Writer::Create(fs::Join(AttachmentDir(), file), mime));
  capturing_.insert(file);
  return std::unique_ptr<AttachmentCapture>(
      new AttachmentCapture(*this, id, latest.content.version(), file, std::move(w)));
}

Status Store::FinishCapture(AttachmentCapture& c, Result<AttachmentInfo>* out) {
  DALA_ASSIGN_OR_RETURN(attachment::Finished f, c.writer_->Finish());  // encrypts the rest and syncs, unlocked
  std::lock_guard lock(mu_);
  int64_t now = Now();
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt chk, db_.Prepare("SELECT 1 FROM reports WHERE id = ? AND version = ? AND sealed = 0"));
    chk.Bind(1, c.report_).Bind(2, c.version_);
    DALA_ASSIGN_OR_RETURN(bool row, chk.Step());
    if (!row) return {Code::kState, "the draft was sealed or deleted while the attachment was captured"};
  }
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "INSERT INTO attachments(id, report_id, version, file, mime, size, plaintext_hash, ciphertext_size, "
      "chunk_size, ciphertext_hash, chunk_hashes, key, created_ms) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  st.Bind(1, f.id).Bind(2, c.report_).Bind(3, c.version_).BindText(4, c.file_).BindText(5, f.mime);
  st.Bind(6, static_cast<int64_t>(f.size)).Bind(7, f.plaintext_hash).Bind(8, static_cast<int64_t>(f.ciphertext_size));
  st.Bind(9, static_cast<int64_t>(attachment::kUploadChunk)).Bind(10, f.root).Bind(11, crypto::Bytes(f.chunk_hashes));
  st.Bind(12, f.key.span()).Bind(13, now);
  DALA_RETURN_IF_ERROR(st.Run());
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt touch, db_.Prepare("UPDATE reports SET updated_ms = ? WHERE id = ? AND version = ?"));
    touch.Bind(1, now).Bind(2, c.report_).Bind(3, c.version_);
    DALA_RETURN_IF_ERROR(touch.Run());
  }
  Failpoint("attachment.before_commit");
  DALA_RETURN_IF_ERROR(txn.Commit());
  AttachmentInfo info;
  info.id = f.id;
  info.report_id = c.report_;
  info.version = c.version_;
  info.mime = f.mime;
  info.size = f.size;
  info.plaintext_hash = f.plaintext_hash;
  info.ciphertext_size = f.ciphertext_size;
  info.ciphertext_hash = f.root;
  info.created_ms = now;
  *out = std::move(info);
  return Status::Ok();
}

Result<AttachmentInfo> Store::ImportAttachment(const ReportId& id, const std::string& path, const std::string& mime) {
  if (!fs::Exists(path)) return Status(Code::kNotFound, "no file at '" + path + "' to attach");
  if (fs::IsDirectory(path)) return Status(Code::kInvalidArgument, "'" + path + "' is a directory, not a file");
  DALA_ASSIGN_OR_RETURN(std::unique_ptr<AttachmentCapture> c, CaptureAttachment(id, mime));
  DALA_RETURN_IF_ERROR(attachment::CopyFileInto(path, *c->writer_));
  return c->Finish();
}

Result<std::vector<AttachmentInfo>> Store::Attachments(const ReportId& id, std::optional<uint32_t> version) {
  std::lock_guard lock(mu_);
  std::string sql = std::string("SELECT ") + kColumns + " FROM attachments WHERE report_id = ?";
  sql += version ? " AND version <= ?" : "";
  sql += " ORDER BY created_ms, rowid";
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(sql));
  st.Bind(1, id);
  if (version) st.Bind(2, *version);
  std::vector<AttachmentInfo> out;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    DALA_ASSIGN_OR_RETURN(AttachmentInfo a, ReadInfo(st));
    out.push_back(std::move(a));
  }
  return out;
}

Result<std::unique_ptr<attachment::Reader>> Store::OpenAttachment(const AttachmentId& id) {
  std::string path;
  SecretBuffer key;
  attachment::Reader::Expect expect;
  {
    std::lock_guard lock(mu_);
    DALA_ASSIGN_OR_RETURN(db::Stmt st,
                          db_.Prepare("SELECT file, key, size, plaintext_hash FROM attachments WHERE id = ?"));
    st.Bind(1, id);
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return Status(Code::kNotFound, "no such attachment in this store (removed, or deleted after delivery)");
    path = fs::Join(AttachmentDir(), st.Text(0));
    auto k = st.BlobView(1);
    key = SecretBuffer(k.data(), k.size());
    expect.size = static_cast<uint64_t>(st.Int(2));
    DALA_RETURN_IF_ERROR(Copy(st.BlobView(3), expect.plaintext_hash, "plaintext hash"));
  }
  return attachment::Reader::Open(path, key.span(), expect);
}

Result<AttachmentFile> Store::LocalAttachmentFile(const AttachmentId& id) {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("SELECT file, ciphertext_size FROM attachments WHERE id = ?"));
  st.Bind(1, id);
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kNotFound, "no such attachment in this store");
  return AttachmentFile{fs::Join(AttachmentDir(), st.Text(0)), static_cast<uint64_t>(st.Int(1))};
}

Status Store::RemoveAttachment(const AttachmentId& id) {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "DELETE FROM attachments WHERE id = ? AND EXISTS (SELECT 1 FROM reports r WHERE r.id = attachments.report_id "
      "AND r.version = attachments.version AND r.sealed = 0)"));
  st.Bind(1, id);
  DALA_RETURN_IF_ERROR(st.Run());
  if (db_.Changes() == 0)
    return {Code::kNotFound, "no attachment with that id in a draft (sealed attachments cannot be removed)"};
  sweep_pending_ = erase_pending_ = true;
  SweepAfterCommitLocked();
  return Status::Ok();
}

Status Store::SweepAttachmentsLocked() {
  DALA_ASSIGN_OR_RETURN(std::vector<std::string> files, fs::ListFiles(AttachmentDir()));
  if (files.empty()) return Status::Ok();
  std::set<std::string> known;
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("SELECT file FROM attachments"));
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    known.insert(st.Text(0));
  }
  for (const auto& f : files)
    if (!known.count(f) && !capturing_.count(f)) DALA_RETURN_IF_ERROR(fs::RemoveFile(fs::Join(AttachmentDir(), f)));
  return Status::Ok();
}

Status Store::DropUnusedAttachmentsLocked() {
  DALA_RETURN_IF_ERROR(db_.Exec(
      "DELETE FROM attachments WHERE NOT EXISTS (SELECT 1 FROM reports r WHERE r.id = attachments.report_id "
      "AND r.version >= attachments.version AND r.purged = 0);"));
  if (db_.Changes() > 0) sweep_pending_ = erase_pending_ = true;
  return Status::Ok();
}

// After a commit that erased rows: attachment files no row names go, and the write-ahead log, which still
// holds the page images from before the erasure, is copied into the database (where secure_delete has
// zeroed the freed space) and truncated. If a reader holds the log, the next erasing commit or closing the
// store does it (SQLite checkpoints and removes the log when the last connection closes).
void Store::SweepAfterCommitLocked() {
  if (erase_pending_ && db_.CheckpointTruncate().ok()) erase_pending_ = false;
  if (!sweep_pending_) return;
  sweep_pending_ = false;
  (void)SweepAttachmentsLocked();  // what fails here is swept at the next open
}

Status Store::FillAttachmentsLocked(const ReportId& id, uint32_t version, v1::ReportContent& content, bool with_keys) {
  content.clear_attachments();
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT id, mime, size, plaintext_hash, ciphertext_hash, key, ciphertext_size FROM attachments "
      "WHERE report_id = ? AND version <= ? ORDER BY created_ms, rowid"));
  st.Bind(1, id).Bind(2, version);
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    auto* a = content.add_attachments();
    auto b = [&](int col) { auto v = st.BlobView(col); return std::string(reinterpret_cast<const char*>(v.data()), v.size()); };
    a->set_attachment_id(b(0));
    a->set_mime_type(st.Text(1));
    a->set_size(static_cast<uint64_t>(st.Int(2)));
    a->set_plaintext_hash(b(3));
    a->set_ciphertext_hash(b(4));
    if (with_keys) a->set_key(b(5));
    a->set_ciphertext_size(static_cast<uint64_t>(st.Int(6)));
  }
  return Status::Ok();
}

Status Store::AttachmentManifestsLocked(const ReportId& id, uint32_t version, std::vector<v1::AttachmentManifest>* out) {
  out->clear();
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT id, ciphertext_size, chunk_size, ciphertext_hash, chunk_hashes FROM attachments "
      "WHERE report_id = ? AND version <= ? ORDER BY created_ms, rowid"));
  st.Bind(1, id).Bind(2, version);
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    v1::AttachmentManifest m;
    auto b = [&](int col) { auto v = st.BlobView(col); return std::string(reinterpret_cast<const char*>(v.data()), v.size()); };
    m.set_attachment_id(b(0));
    m.set_size(static_cast<uint64_t>(st.Int(1)));
    m.set_chunk_size(static_cast<uint32_t>(st.Int(2)));
    m.set_root(b(3));
    m.set_chunk_hashes(b(4));
    out->push_back(std::move(m));
  }
  return Status::Ok();
}

}  // namespace dala
