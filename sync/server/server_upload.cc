// dala-server: attachment uploads, streamed chunk by chunk, each chunk checked against the signed manifest.
#include "server/server_core.h"


#include <fcntl.h>
#include <sys/file.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <optional>

#include "dala/v1/sync.pb.h"
#include "base/fsutil.h"
#include "crypto/attachment_file.h"
#include "format/invite.h"
#include "format/receipt.h"
#include "format/request.h"
#include "format/response.h"
#include "protocol/http_api.h"
#include "base/clock.h"
#include "base/failpoint.h"
#include "format/envelope.h"
#include "format/manifest.h"
#include "crypto/chunk_tree.h"
#include "base/encoding.h"

#include "server/log_line.h"
#include "server/server_internal.h"

namespace dala::server {

// A server killed between the upload's last durable byte and the update that records the attachment
// complete leaves every byte stored, verified, and the flag unset. The phone, told that every byte is
// here, has nothing left to send, so nothing else would ever finish the report: the attachment is made
// whole (synced; on S3 the upload completed) and recorded complete here, when the report is pushed again.
Result<bool> ServerCore::CompleteOnDiskLocked(const std::string& device_key, const v1::AttachmentManifest& m) {
  if (m.size() == 0 || stores_apart_.load()) return false;  // apart: whole maybe only where others do not look
  const std::string name = attachment::FileName(B(device_key), B(m.attachment_id()));
  {
    std::lock_guard lock(uploads_mu_);
    auto it = uploads_.find(name);
    if (it != uploads_.end() && it->second.busy) return false;  // its session completes it
  }
  StoredAttachment b;
  b.size = m.size();
  b.chunk_size = m.chunk_size();
  b.chunk_hashes = m.chunk_hashes();
  auto held = Received(name, b);
  if (!held.ok() || *held != m.size()) return false;
  auto w = attachments_->Open(name, {b.size, b.chunk_size, b.chunk_hashes}, *held);
  if (!w.ok() || (*w)->held() != m.size() || !(*w)->Finish().ok()) return false;
  DALA_RETURN_IF_ERROR(MarkCompleteLocked(device_key, m.attachment_id()));
  return true;
}

uint64_t ServerCore::ReceivedFor(const std::string& device_key, const v1::AttachmentManifest& m) {
  StoredAttachment b;
  b.size = m.size();
  b.chunk_size = m.chunk_size();
  b.chunk_hashes = m.chunk_hashes();
  auto r = Received(attachment::FileName(B(device_key), B(m.attachment_id())), b);
  return r.ok() ? *r : 0;
}

Result<uint64_t> ServerCore::Received(const std::string& name, const StoredAttachment& stored) {
  // The store's version (a file's size) tells whether another node (sharing the attachment directory)
  // changed it since this node last knew: then it is read again. A store without one is always read.
  const std::optional<uint64_t> version = attachments_->Version(name);
  {
    std::lock_guard lock(uploads_mu_);
    auto it = uploads_.find(name);
    if (it != uploads_.end() && (it->second.busy || (version && it->second.received == *version)))
      return it->second.received;
  }
  DALA_ASSIGN_OR_RETURN(uint64_t r, attachments_->Held(name, {stored.size, stored.chunk_size, stored.chunk_hashes}));
  std::lock_guard lock(uploads_mu_);
  auto& st = uploads_[name];
  if (!st.busy) st.received = r;
  return r;
}

void ServerCore::EndUpload(const std::string& name, uint64_t received) {
  std::lock_guard lock(uploads_mu_);
  auto& st = uploads_[name];
  st.received = received;
  st.busy = false;
}

Status ServerCore::MarkComplete(const std::string& device_key, const std::string& attachment_id) {
  std::lock_guard lock(mu_);
  return MarkCompleteLocked(device_key, attachment_id);
}

Status ServerCore::MarkCompleteLocked(const std::string& device_key, const std::string& attachment_id) {
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare(
      "UPDATE attachments SET complete = 1 WHERE device_key = ? AND attachment_id = ?"));
  st.Bind(1, B(device_key)).Bind(2, B(attachment_id));
  return st.Run();
}

ServerCore::UploadStart ServerCore::BeginUpload(std::string_view header, uint64_t body_length) {
  std::string raw;
  std::string_view value = header;
  bool scheme = value.starts_with(protocol::kUploadScheme);
  if (scheme) value.remove_prefix(protocol::kUploadScheme.size());
  if (!scheme || value.empty() || value.size() > protocol::kMaxUploadHeader || !encoding::FromBase64Url(value, &raw))
    return Signed(Reply(400, v1::BAD_REQUEST, "an upload needs its signed request in the Authorization header",
                        clock_()),
                  protocol::RequestHash(crypto::Bytes(header)));
  const crypto::Hash hash = protocol::RequestHash(B(raw));
  auto start = BeginUploadUnsigned(body_length, hash, raw);
  if (auto* r = std::get_if<HttpResult>(&start)) return Signed(std::move(*r), hash);
  return start;
}

// BeginUpload once the header decoded: its answers are signed by BeginUpload, a session's by the session.
ServerCore::UploadStart ServerCore::BeginUploadUnsigned(uint64_t body_length, const crypto::Hash& hash,
                                                        const std::string& raw) {
  int64_t now = clock_();
  auto req = protocol::VerifyRequest(B(raw));
  if (!req.ok()) return Reply(400, v1::BAD_REQUEST, req.status().message(), now);
  if (req->server_key() != std::string_view(reinterpret_cast<const char*>(signing_.public_key.data()), 32))
    return Reply(403, v1::WRONG_SERVER, "this request was signed for another server", now);
  if (!req->has_upload()) return Reply(400, v1::BAD_REQUEST, "an upload request was expected", now);
  if (!AuthorisedNow(now)) return Reply(403, v1::WRONG_SERVER, kNotAuthorisedNow, now);
  // The nodes' attachment stores apart (CheckNodes): what this node stored, the others' exports and desks
  // would not see. The phone keeps the attachment and tries later.
  if (stores_apart_.load()) return Reply(503, v1::UNAVAILABLE, "storage unavailable; try again later", now);
  const auto& up = req->upload();
  if (up.attachment_id().size() != 16 || up.length() != body_length)
    return Reply(400, v1::BAD_REQUEST, "the upload request does not match its body", now);
  StoredAttachment stored;
  {
    std::lock_guard lock(mu_);
    auto dev = db_->Prepare("SELECT revoked FROM devices WHERE device_key = ?");
    if (!dev.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
    dev->Bind(1, B(req->device_key()));
    auto row = dev->Step();
    if (!row.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
    if (!*row) return Reply(401, v1::UNKNOWN_DEVICE, "this device is not enrolled; enrol first", now);
    if (dev->Int(0) != 0) return Reply(403, v1::DEVICE_REVOKED, "this device was revoked by the organisation", now);
    *dev = sql::Stmt();
    auto q = db_->Prepare("SELECT size, chunk_size, chunk_hashes, complete FROM attachments WHERE device_key = ? AND attachment_id = ?");
    if (!q.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
    q->Bind(1, B(req->device_key())).Bind(2, B(up.attachment_id()));
    auto brow = q->Step();
    if (!brow.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
    std::unique_ptr<UploadSession> probe(new UploadSession(*this));
    if (!*brow) return probe->Reply(v1::UPLOAD_UNKNOWN);
    stored.size = static_cast<uint64_t>(q->Int(0));
    stored.chunk_size = static_cast<uint32_t>(q->Int(1));
    auto hv = q->BlobView(2);
    stored.chunk_hashes.assign(reinterpret_cast<const char*>(hv.data()), hv.size());
    stored.complete = q->Int(3) != 0;
    if (limits_.max_storage_bytes != 0 && !stored.complete) RecountSharedBytesLocked();
  }
  std::unique_ptr<UploadSession> s(new UploadSession(*this));
  s->request_hash_ = hash;
  s->name_ = attachment::FileName(B(req->device_key()), B(up.attachment_id()));
  s->device_key_ = req->device_key();
  s->attachment_id_ = up.attachment_id();
  s->size_ = stored.size;
  s->chunk_size_ = stored.chunk_size;
  s->chunk_hashes_ = stored.chunk_hashes;  // a copy: Received() below reads them (moved, it read none)
  if (stored.complete) {
    s->received_ = stored.size;
    return s->Reply(v1::UPLOAD_OK);
  }
  const uint64_t end = up.offset() + up.length();
  if (up.offset() % stored.chunk_size != 0 || end > stored.size || (end != stored.size && end % stored.chunk_size != 0))
    return Reply(400, v1::BAD_REQUEST, "an upload must cover whole chunks of the attachment", now);
  if (up.length() == 0) {  // a probe: where the server stands once no upload is running
    {
      std::lock_guard lock(uploads_mu_);
      auto it = uploads_.find(s->name_);
      if (it != uploads_.end() && it->second.busy)
        return Reply(409, v1::UNAVAILABLE, "another upload of this attachment is in progress", now);
    }
    auto held = Received(s->name_, stored);
    if (!held.ok()) {
      LogLine("error", "\"event\":\"storage_failed\",\"during\":\"probe\",\"error\":" +
                           JsonString(held.status().message()));
      return Reply(503, v1::UNAVAILABLE, "storage unavailable; try again later", now);
    }
    s->received_ = *held;
    return s->Reply(up.offset() == *held ? v1::UPLOAD_OK : v1::UPLOAD_OFFSET);
  }
  std::optional<uint64_t> known;
  {
    std::lock_guard lock(uploads_mu_);
    auto& st = uploads_[s->name_];
    if (st.busy) return Reply(409, v1::UNAVAILABLE, "another upload of this attachment is in progress", now);
    st.busy = true;
    known = st.received;
  }
  s->holds_ = true;  // from here the destructor releases the attachment
  metrics_.uploads_in_progress.Add(1);
  // Opened under the store's own hold across nodes (an flock on a shared directory); what it holds is
  // read again there if another node changed it.
  auto writer = attachments_->Open(s->name_, {stored.size, stored.chunk_size, s->chunk_hashes_}, known);
  if (!writer.ok()) {
    if (writer.status().code() == Code::kBusy)
      return Reply(409, v1::UNAVAILABLE, "another upload of this attachment is in progress", now);
    LogLine("error", "\"event\":\"storage_failed\",\"during\":\"upload\",\"error\":" +
                         JsonString(writer.status().message()));
    return Reply(503, v1::UNAVAILABLE, "storage unavailable; try again later", now);
  }
  s->writer_ = std::move(*writer);
  const uint64_t received = s->writer_->held();
  {
    std::lock_guard lock(uploads_mu_);
    uploads_[s->name_].received = received;
  }
  s->received_ = s->written_ = received;
  s->offset_ = s->start_ = up.offset();
  s->skip_until_ = received;
  s->end_ = end;
  if (up.offset() > received) return s->Reply(v1::UPLOAD_OFFSET);
  if (limits_.max_storage_bytes != 0 && stored_bytes_ + (end - std::max(received, up.offset())) > limits_.max_storage_bytes)
    return Reply(507, v1::UNAVAILABLE, "the server's storage is full; try again later", now);
  return s;
}

UploadSession::~UploadSession() {
  (void)Commit();  // a cut connection: what arrived whole is made durable and counted
  writer_.reset();
  if (holds_) {
    core_.EndUpload(name_, received_);
    core_.metrics_.uploads_in_progress.Add(-1);
  }
}

// Chunks are verified and written as they arrive, then made durable together (one fdatasync, or one S3
// request, per request instead of one per chunk) before anything counts them: before the answer, or when
// the connection drops.
bool UploadSession::Commit() {
  if (!writer_ || written_ <= received_) return true;
  auto durable = writer_->Sync();
  if (!durable.ok()) {
    written_ = received_;
    StorageFailed(durable.status());
    return false;
  }
  core_.metrics_.attachment_bytes_stored.Inc(*durable - received_);
  received_ = written_ = *durable;
  {
    std::lock_guard lock(core_.uploads_mu_);
    core_.uploads_[name_].received = received_;
  }
  // Every chunk matched the signed manifest, whose root the push checked: the file is the declared one.
  if (received_ == size_) {
    if (Status st = writer_->Finish(); !st.ok()) {
      StorageFailed(st);
      return false;
    }
    Failpoint("server.upload.before_complete");  // crash tests stop the server here: whole, not recorded
    if (core_.stores_apart_.load()) {  // parted while this upload ran: whole where no other node may see it
      StorageFailed(Status(Code::kState, "the nodes' attachment stores are apart: not recorded complete"));
      return false;
    }
    if (Status st = core_.MarkComplete(device_key_, attachment_id_); !st.ok()) StorageFailed(st);
  }
  return !storage_failed_;
}

// The phone is told to try later; the operator's log says why (the store's words: never a key or bytes).
void UploadSession::StorageFailed(const Status& st) {
  if (storage_failed_) return;  // said once
  storage_failed_ = true;
  LogLine("error", "\"event\":\"storage_failed\",\"during\":\"upload\",\"error\":" + JsonString(st.message()));
}

size_t UploadSession::want_at(uint64_t fed) const {
  if (!writer_) return 0;
  uint64_t at = start_ + fed;
  if (at >= end_) return 0;
  if (at < skip_until_) return static_cast<size_t>(std::min<uint64_t>(skip_until_ - at, chunk_size_));
  return static_cast<size_t>(std::min<uint64_t>(chunk_size_, end_ - at));
}

size_t UploadSession::want() const {
  if (stop_ != v1::UPLOAD_OK || storage_failed_ || !writer_ || offset_ >= end_) return 0;
  if (offset_ < received_) return static_cast<size_t>(std::min<uint64_t>(received_ - offset_, chunk_size_));
  return static_cast<size_t>(std::min<uint64_t>(chunk_size_, end_ - offset_));
}

bool UploadSession::Feed(std::span<const uint8_t> data) {
  if (data.size() != want() || data.empty()) {
    stop_ = v1::UPLOAD_OFFSET;
    return false;
  }
  if (offset_ < received_) {  // already held: skipped
    offset_ += data.size();
    return true;
  }
  const uint64_t index = offset_ / chunk_size_;
  crypto::Hash h = attachment::ChunkTree::HashChunk(data);
  if (std::memcmp(h.data(), chunk_hashes_.data() + 32 * index, 32) != 0) {
    stop_ = v1::UPLOAD_BAD_CHUNK;  // nothing of it is kept
    return false;
  }
  Failpoint("server.upload.before_write");
  if (Status st = writer_->Append(offset_, data); !st.ok()) {  // e.g. the disk is full, or the S3 store failing
    StorageFailed(st);
    return false;
  }
  core_.stored_bytes_ += data.size();
  core_.metrics_.attachment_bytes_held.Add(static_cast<double>(data.size()));
  offset_ += data.size();
  written_ = offset_;
  return true;
}

HttpResult UploadSession::Reply(v1::UploadCode code) {
  v1::Response r;
  r.set_status(v1::OK);
  r.set_server_time_ms(core_.clock_());
  auto* u = r.mutable_upload();
  u->set_code(code);
  u->set_received(received_);
  u->set_complete(size_ != 0 && received_ == size_);
  return {200, kProto, r.SerializeAsString()};  // unsigned: BeginUpload or Answer signs it
}

HttpResult UploadSession::Answer() {
  if (!Commit() || storage_failed_) {
    v1::Response r;
    r.set_status(v1::UNAVAILABLE);
    r.set_message("the server's storage is full or failing; try again later");
    r.set_server_time_ms(core_.clock_());
    return core_.Signed({507, kProto, r.SerializeAsString()}, request_hash_);
  }
  return core_.Signed(Reply(stop_), request_hash_);
}

HttpResult ServerCore::HandleUpload(std::string_view header, std::string_view body,
                                    std::optional<uint64_t> declared_length) {
  auto start = BeginUpload(header, declared_length.value_or(body.size()));
  if (auto* r = std::get_if<HttpResult>(&start)) return std::move(*r);
  auto& s = *std::get<std::unique_ptr<UploadSession>>(start);
  size_t pos = 0;
  for (size_t want; (want = s.want()) > 0;) {
    if (body.size() - pos < want) break;
    if (!s.Feed(B(std::string(body.substr(pos, want))))) break;
    pos += want;
  }
  return s.Answer();
}

}  // namespace dala::server
