#include "server_core.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <optional>

#include "dala/v1/sync.pb.h"
#include "fsutil.h"
#include "attachment.h"
#include "protocol.h"
#include "store.h"

namespace dala::server {
namespace {

const char kSchema[] = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value BLOB) WITHOUT ROWID;
CREATE TABLE recipients(public_key BLOB PRIMARY KEY NOT NULL) WITHOUT ROWID;
CREATE TABLE invites(
  token BLOB PRIMARY KEY NOT NULL,
  uses_left INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE devices(
  device_key BLOB PRIMARY KEY NOT NULL,
  token BLOB,
  enrolled_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE reports(
  seq INTEGER PRIMARY KEY,
  report_id BLOB NOT NULL,
  version INTEGER NOT NULL,
  device_key BLOB NOT NULL,
  content_hash BLOB NOT NULL,
  envelope BLOB NOT NULL,
  receipt BLOB,
  received_ms INTEGER NOT NULL,
  UNIQUE(report_id, version)
);
CREATE INDEX reports_device ON reports(device_key);
PRAGMA user_version = 1;
)sql";

// 2: attachments. A report whose attachments are not all held waits in `pending`; `blobs` records what
// each device declared (its manifest), and whether every chunk arrived. Files: DIR/blobs/<name>.
const char kSchemaV2[] = R"sql(
CREATE TABLE pending(
  report_id BLOB NOT NULL,
  version INTEGER NOT NULL,
  device_key BLOB NOT NULL,
  content_hash BLOB NOT NULL,
  envelope BLOB NOT NULL,
  received_ms INTEGER NOT NULL,
  PRIMARY KEY(report_id, version)
) WITHOUT ROWID;
CREATE TABLE blobs(
  device_key BLOB NOT NULL,
  attachment_id BLOB NOT NULL,
  size INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL,
  root BLOB NOT NULL,
  chunk_hashes BLOB NOT NULL,
  complete INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY(device_key, attachment_id)
) WITHOUT ROWID;
PRAGMA user_version = 2;
)sql";

Status MigrateServer(db::Db& db) {
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("PRAGMA user_version;"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  int v = row ? static_cast<int>(st.Int(0)) : 0;
  st = db::Stmt();
  if (v > 2) return {Code::kState, "the server data was written by a newer dala-server; upgrade it"};
  if (v < 2) {
    db::Txn txn(db);
    DALA_RETURN_IF_ERROR(txn.Begin());
    DALA_RETURN_IF_ERROR(db.Exec(kSchemaV2));
    DALA_RETURN_IF_ERROR(txn.Commit());
  }
  return Status::Ok();
}

std::string Path(const std::string& dir, const char* name) { return fs::Join(dir, name); }

int64_t WallClock() { return SystemNowMs(); }

const char* kProto = "application/x-protobuf";

HttpResult Reply(int http, v1::ResponseStatus status, const std::string& message, int64_t now) {
  v1::Response r;
  r.set_status(status);
  r.set_message(message);
  r.set_server_time_ms(now);
  return {http, kProto, r.SerializeAsString()};
}

std::span<const uint8_t> B(const std::string& s) { return crypto::Bytes(s); }

}  // namespace

ServerCore::ServerCore(std::string dir, db::Db db, crypto::SigningKey signing, Limits limits)
    : dir_(std::move(dir)), db_(std::move(db)), signing_(std::move(signing)), limits_(limits), clock_(WallClock) {
  writer_ = std::thread([this] { WriterLoop(); });
}

ServerCore::~ServerCore() {
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  writer_.join();  // answers everything still queued first
}

void ServerCore::set_clock(int64_t (*clock)()) {
  std::lock_guard lock(mu_);
  clock_ = clock;
}

Status ServerCore::Init(const std::string& dir, const std::vector<crypto::PublicKey>& recipients) {
  if (!InitSodium()) return {Code::kInternal, "libsodium could not start"};
  if (recipients.empty()) return {Code::kInvalidArgument, "give at least one --recipient (the desk's public key)"};
  for (const auto& r : recipients)
    if (!crypto::IsUsableBoxPublicKey(r)) return {Code::kInvalidArgument, "a recipient key is not a usable X25519 key"};
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(dir));
  if (fs::Exists(Path(dir, kServerKeyFile)) || fs::Exists(Path(dir, kServerDbFile)))
    return {Code::kExists, "'" + dir + "' already holds a dala-server data directory"};
  SecretBuffer key(32);
  randombytes_buf(key.data(), key.size());
  DALA_RETURN_IF_ERROR(fs::CreatePrivateFile(Path(dir, kServerDbFile)));
  {
    DALA_ASSIGN_OR_RETURN(db::Db db, db::Db::Open(Path(dir, kServerDbFile), key, true));
    db::Txn txn(db);
    DALA_RETURN_IF_ERROR(txn.Begin());
    DALA_RETURN_IF_ERROR(db.Exec(kSchema));
    DALA_RETURN_IF_ERROR(db.Exec(kSchemaV2));
    crypto::SigningKey signing = crypto::GenerateSigningKey();
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("INSERT INTO meta(key, value) VALUES('signing_key', ?)"));
    st.Bind(1, signing.secret_key.span());
    DALA_RETURN_IF_ERROR(st.Run());
    DALA_ASSIGN_OR_RETURN(db::Stmt rs, db.Prepare("INSERT OR IGNORE INTO recipients(public_key) VALUES(?)"));
    for (const auto& r : recipients) {
      rs.Bind(1, r);
      DALA_RETURN_IF_ERROR(rs.Run());
      rs.Reset();
    }
    DALA_RETURN_IF_ERROR(txn.Commit());
  }
  return fs::WriteFileAtomic(Path(dir, kServerKeyFile), key.span());
}

Result<std::unique_ptr<ServerCore>> ServerCore::Open(const std::string& dir, Limits limits) {
  if (!InitSodium()) return Status(Code::kInternal, "libsodium could not start");
  auto key = fs::ReadFile(Path(dir, kServerKeyFile), 64);
  if (!key.ok()) {
    if (key.status().code() == Code::kNotFound)
      return Status(Code::kNotFound, "no dala-server data in '" + dir + "'; run 'dala-server init' first");
    return key.status();
  }
  if (key->size() != 32) return Status(Code::kCorrupt, "the server key file is damaged");
  SecretBuffer k(key->data(), key->size());
  sodium_memzero(key->data(), key->size());
  DALA_ASSIGN_OR_RETURN(db::Db db, db::Db::Open(Path(dir, kServerDbFile), k, false));
  DALA_RETURN_IF_ERROR(MigrateServer(db));
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(Path(dir, kBlobDirName)));
  uint64_t stored = 0;
  {
    DALA_ASSIGN_OR_RETURN(std::vector<std::string> blobs, fs::ListFiles(Path(dir, kBlobDirName)));
    struct stat sb;
    for (const auto& b : blobs)
      if (::stat(fs::Join(Path(dir, kBlobDirName), b).c_str(), &sb) == 0) stored += static_cast<uint64_t>(sb.st_size);
  }
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("SELECT value FROM meta WHERE key = 'signing_key'"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kCorrupt, "the server database has no signing key");
  DALA_ASSIGN_OR_RETURN(crypto::SigningKey signing, crypto::SigningKeyFromSecret(st.BlobView(0)));
  st = db::Stmt();
  DALA_ASSIGN_OR_RETURN(db::Stmt mx, db.Prepare("SELECT coalesce(max(seq), 0) FROM reports"));
  DALA_ASSIGN_OR_RETURN(bool got, mx.Step());
  int64_t next = got ? mx.Int(0) + 1 : 1;
  mx = db::Stmt();
  auto core = std::unique_ptr<ServerCore>(new ServerCore(dir, std::move(db), std::move(signing), limits));
  core->next_sequence_ = next;
  core->stored_bytes_ = stored;
  return core;
}

Result<std::string> ServerCore::CreateInvite(const std::vector<std::string>& urls, uint32_t uses, int64_t expires_ms,
                                             const std::string& organisation, const std::string& tls_pin) {
  if (urls.empty()) return Status(Code::kInvalidArgument, "give the server address (--url)");
  for (const auto& u : urls)
    if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0)
      return Status(Code::kInvalidArgument, "a server address must start with http:// or https://");
  if (uses == 0) return Status(Code::kInvalidArgument, "an invite needs at least one use");
  std::lock_guard lock(mu_);
  v1::Invite inv;
  for (const auto& u : urls) inv.add_urls(u);
  inv.set_server_key(signing_.public_key.data(), 32);
  DALA_ASSIGN_OR_RETURN(db::Stmt rs, db_.Prepare("SELECT public_key FROM recipients"));
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, rs.Step());
    if (!row) break;
    auto pk = rs.BlobView(0);
    inv.add_recipients(pk.data(), pk.size());
  }
  rs = db::Stmt();
  uint8_t token[16];
  randombytes_buf(token, sizeof token);
  inv.set_token(token, sizeof token);
  inv.set_uses(uses);
  inv.set_expires_ms(expires_ms);
  inv.set_organisation(organisation);
  inv.set_tls_pin(tls_pin);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "INSERT INTO invites(token, uses_left, expires_ms, created_ms) VALUES(?, ?, ?, ?)"));
  st.Bind(1, std::span<const uint8_t>(token, 16)).Bind(2, uses).Bind(3, expires_ms).Bind(4, clock_());
  DALA_RETURN_IF_ERROR(st.Run());
  return protocol::EncodeInvite(inv, signing_);
}

HttpResult ServerCore::Handle(std::string_view method, std::string_view target, std::string_view content_type,
                              std::string_view body) {
  std::mutex m;
  std::condition_variable cv;
  std::optional<HttpResult> out;
  HandleAsync(method, target, content_type, body, [&](HttpResult r) {
    std::lock_guard lock(m);
    out = std::move(r);
    cv.notify_one();
  });
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return out.has_value(); });
  return std::move(*out);
}

void ServerCore::HandleAsync(std::string_view method, std::string_view target, std::string_view content_type,
                             std::string_view body, Done done) {
  int64_t now = clock_();
  if (target == protocol::kPathHealth) {
    if (method != "GET") return done(Reply(405, v1::BAD_REQUEST, "use GET", now));
    return done({200, "application/json",
                 "{\"status\":\"ok\",\"server_key\":\"" + crypto::ToHex(signing_.public_key) + "\"}"});
  }
  if (target != protocol::kPathEnrol && target != protocol::kPathPush)
    return done(Reply(404, v1::BAD_REQUEST, "no such endpoint", now));
  if (method != "POST") return done(Reply(405, v1::BAD_REQUEST, "use POST", now));
  if (content_type.substr(0, content_type.find(';')) != protocol::kContentType)
    return done(Reply(415, v1::BAD_REQUEST, "the body must be application/x-protobuf", now));
  if (body.size() > limits_.max_body_bytes) return done(Reply(413, v1::TOO_LARGE, "the request body is too large", now));
  auto req = protocol::VerifyRequest(crypto::Bytes(body));
  if (!req.ok()) return done(Reply(400, v1::BAD_REQUEST, req.status().message(), now));
  if (req->server_key() != std::string_view(reinterpret_cast<const char*>(signing_.public_key.data()), 32))
    return done(Reply(403, v1::WRONG_SERVER, "this request was signed for another server", now));
  if (target == protocol::kPathEnrol) {
    if (!req->has_enrol()) return done(Reply(400, v1::BAD_REQUEST, "an enrol request was expected", now));
    return done(Enrol(req->device_key(), req->enrol().token()));
  }
  if (!req->has_push()) return done(Reply(400, v1::BAD_REQUEST, "a push request was expected", now));
  const auto& envelopes = req->push().envelopes();
  if (static_cast<size_t>(envelopes.size()) > limits_.max_batch)
    return done(Reply(413, v1::TOO_LARGE, "too many reports in one push", now));
  // Here, on the caller's thread (in parallel across connections): every envelope's device signature.
  PushJob job;
  job.device_key = req->device_key();
  job.done = std::move(done);
  job.items.resize(static_cast<size_t>(envelopes.size()));
  for (int i = 0; i < envelopes.size(); ++i) {
    PushItem& it = job.items[static_cast<size_t>(i)];
    it.envelope = envelopes[i];
    if (it.envelope.size() > limits_.max_envelope_bytes) {
      it.reject = "the sealed report is too large";
    } else if (Status st = crypto::VerifyEnvelope(B(it.envelope), &it.h); !st.ok()) {
      it.reject = st.message();
    } else if (std::memcmp(it.h.device_key.data(), job.device_key.data(), 32) != 0) {
      it.reject = "the sealed report was signed by another device";
    }
    it.hash = crypto::Blake2b256(B(it.envelope));
  }
  {
    std::lock_guard lock(queue_mu_);
    queue_.push_back(std::move(job));
  }
  queue_cv_.notify_one();
}

// The storage writer: takes every push waiting, stores them in one transaction, commits (one fsync), and
// only then answers each. A failed commit answers all of them 503, so the phones send again.
void ServerCore::WriterLoop() {
  for (;;) {
    std::vector<PushJob> jobs;
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      while (!queue_.empty() && jobs.size() < 256) {
        jobs.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::vector<HttpResult> answers(jobs.size());
    {
      std::lock_guard lock(mu_);
      int64_t now = clock_();
      const int64_t first_sequence = next_sequence_;
      bool ok = true;
      db::Txn txn(db_);
      ok = txn.Begin().ok();
      for (size_t i = 0; ok && i < jobs.size(); ++i) {
        auto r = PushLocked(jobs[i], now);
        if (r.ok()) answers[i] = std::move(*r);
        else ok = false;
      }
      ok = ok && txn.Commit().ok();
      if (!ok) {
        next_sequence_ = first_sequence;  // the transaction rolled back
        for (auto& a : answers) a = Reply(503, v1::UNAVAILABLE, "storage unavailable; try again later", now);
      }
    }
    for (size_t i = 0; i < jobs.size(); ++i) jobs[i].done(std::move(answers[i]));
  }
}

HttpResult ServerCore::Enrol(const std::string& device_key, const std::string& token) {
  std::lock_guard lock(mu_);
  int64_t now = clock_();
  auto dev = db_.Prepare("SELECT revoked FROM devices WHERE device_key = ?");
  if (!dev.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  dev->Bind(1, B(device_key));
  auto row = dev->Step();
  if (!row.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  if (*row) {
    // Idempotent: enrolling again (a retry, a replay) changes nothing.
    if (dev->Int(0) != 0) return Reply(403, v1::DEVICE_REVOKED, "this device was revoked by the organisation", now);
    return Reply(200, v1::OK, "already enrolled", now);
  }
  *dev = db::Stmt();
  db::Txn txn(db_);
  if (!txn.Begin().ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  auto inv = db_.Prepare("SELECT uses_left, expires_ms FROM invites WHERE token = ?");
  if (!inv.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  inv->Bind(1, B(token));
  auto irow = inv->Step();
  if (!irow.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  if (!*irow) return Reply(403, v1::INVITE_INVALID, "the invite is not known to this server", now);
  if (inv->Int(1) <= now) return Reply(403, v1::INVITE_EXPIRED, "the invite has expired; ask for a new one", now);
  if (inv->Int(0) <= 0) return Reply(403, v1::INVITE_USED_UP, "the invite has been used up; ask for a new one", now);
  *inv = db::Stmt();
  auto use = db_.Prepare("UPDATE invites SET uses_left = uses_left - 1 WHERE token = ?");
  auto add = db_.Prepare(
      "INSERT INTO devices(device_key, token, enrolled_ms, last_seen_ms, revoked) VALUES(?, ?, ?, ?, 0)");
  if (!use.ok() || !add.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  use->Bind(1, B(token));
  add->Bind(1, B(device_key)).Bind(2, B(token)).Bind(3, now).Bind(4, now);
  if (!use->Run().ok() || !add->Run().ok() || !txn.Commit().ok())
    return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  return Reply(200, v1::OK, "enrolled", now);
}

Result<HttpResult> ServerCore::PushLocked(PushJob& job, int64_t now) {
  const std::string& device_key = job.device_key;
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt dev, db_.Prepare("SELECT revoked FROM devices WHERE device_key = ?"));
    dev.Bind(1, B(device_key));
    DALA_ASSIGN_OR_RETURN(bool row, dev.Step());
    if (!row) return Reply(401, v1::UNKNOWN_DEVICE, "this device is not enrolled; enrol first", now);
    if (dev.Int(0) != 0) return Reply(403, v1::DEVICE_REVOKED, "this device was revoked by the organisation", now);
  }
  v1::Response resp;
  resp.set_status(v1::OK);
  resp.set_server_time_ms(now);
  for (PushItem& it : job.items) {
    v1::PushResult* res = resp.add_results();
    res->set_report_id(it.h.report_id.data(), 16);
    res->set_version(it.h.version);
    if (!it.reject.empty()) {
      res->set_code(v1::REJECTED);
      res->set_reason(it.reject);
      continue;
    }
    {
      DALA_ASSIGN_OR_RETURN(db::Stmt find,
                            db_.Prepare("SELECT content_hash, receipt FROM reports WHERE report_id = ? AND version = ?"));
      find.Bind(1, it.h.report_id).Bind(2, it.h.version);
      DALA_ASSIGN_OR_RETURN(bool row, find.Step());
      if (row) {
        auto stored = find.BlobView(0);
        if (stored.size() == 32 && std::memcmp(stored.data(), it.hash.data(), 32) == 0) {
          // The same report again (a retry, a replay, or twice in one group): one copy, the original receipt.
          auto rc = find.BlobView(1);
          v1::SignedReceipt original;
          v1::Receipt fields;
          if (!original.ParseFromArray(rc.data(), static_cast<int>(rc.size())) ||
              !fields.ParseFromString(original.receipt()))
            return Status(Code::kCorrupt, "a stored receipt is damaged");
          res->set_code(v1::DUPLICATE);
          res->set_sequence(fields.sequence());
          res->set_server_time_ms(fields.server_time_ms());
          res->set_receipt_signature(original.signature());
        } else {
          res->set_code(v1::REJECTED);
          res->set_reason("a different report with this id and version is already stored");
        }
        continue;
      }
    }
    if (!it.h.attachments.empty()) {
      std::string conflict;
      DALA_ASSIGN_OR_RETURN(bool complete, AttachmentsLocked(device_key, it.h, &conflict));
      if (!conflict.empty()) {
        res->set_code(v1::REJECTED);
        res->set_reason(conflict);
        continue;
      }
      if (!complete && limits_.max_storage_bytes != 0) {
        // No room for what is missing: say so now, before the phone sends any of it.
        uint64_t missing = 0;
        for (const auto& m : it.h.attachments) {
          missing += m.size() - std::min(m.size(), ReceivedFor(device_key, m));
        }
        if (stored_bytes_ + missing > limits_.max_storage_bytes) {
          res->set_code(v1::RETRY_LATER);
          res->set_reason("the server's storage is full; try again later");
          continue;
        }
      }
      if (!complete) {
        // Held until every attachment is here; no receipt yet. The phone uploads, then pushes again.
        DALA_ASSIGN_OR_RETURN(db::Stmt p, db_.Prepare(
            "INSERT OR REPLACE INTO pending(report_id, version, device_key, content_hash, envelope, received_ms) "
            "VALUES(?, ?, ?, ?, ?, ?)"));
        p.Bind(1, it.h.report_id).Bind(2, it.h.version).Bind(3, B(device_key)).Bind(4, it.hash);
        p.Bind(5, B(it.envelope)).Bind(6, now);
        DALA_RETURN_IF_ERROR(p.Run());
        res->set_code(v1::INCOMPLETE);
        for (const auto& m : it.h.attachments) {
          auto* ap = res->add_attachments();
          ap->set_attachment_id(m.attachment_id());
          ap->set_received(ReceivedFor(device_key, m));
        }
        continue;
      }
      DALA_ASSIGN_OR_RETURN(db::Stmt done, db_.Prepare("DELETE FROM pending WHERE report_id = ? AND version = ?"));
      done.Bind(1, it.h.report_id).Bind(2, it.h.version);
      DALA_RETURN_IF_ERROR(done.Run());
    }
    // The writer is the only writer: it numbers reports itself and stores each row once, receipt included.
    int64_t sequence = next_sequence_;
    v1::Receipt receipt;
    receipt.set_report_id(it.h.report_id.data(), 16);
    receipt.set_version(it.h.version);
    receipt.set_content_hash(it.hash.data(), 32);
    receipt.set_server_time_ms(now);
    receipt.set_sequence(static_cast<uint64_t>(sequence));
    receipt.set_server_key(signing_.public_key.data(), 32);
    receipt.set_device_key(device_key);
    std::string signed_receipt = protocol::SignReceipt(signing_, receipt);
    DALA_ASSIGN_OR_RETURN(db::Stmt ins, db_.Prepare(
        "INSERT INTO reports(seq, report_id, version, device_key, content_hash, envelope, receipt, received_ms) "
        "VALUES(?, ?, ?, ?, ?, ?, ?, ?)"));
    ins.Bind(1, sequence).Bind(2, it.h.report_id).Bind(3, it.h.version).Bind(4, B(device_key)).Bind(5, it.hash);
    ins.Bind(6, B(it.envelope)).Bind(7, B(signed_receipt)).Bind(8, now);
    DALA_RETURN_IF_ERROR(ins.Run());
    ++next_sequence_;
    v1::SignedReceipt sent;
    sent.ParseFromString(signed_receipt);
    res->set_code(v1::STORED);
    res->set_sequence(static_cast<uint64_t>(sequence));
    res->set_server_time_ms(now);
    res->set_receipt_signature(sent.signature());
    Failpoint("server.push.stored");  // crash tests stop the server here, inside the transaction
  }
  DALA_ASSIGN_OR_RETURN(db::Stmt seen, db_.Prepare("UPDATE devices SET last_seen_ms = ? WHERE device_key = ?"));
  seen.Bind(1, now).Bind(2, B(device_key));
  DALA_RETURN_IF_ERROR(seen.Run());
  return HttpResult{200, kProto, resp.SerializeAsString()};
}

// --- Attachments and uploads ---

std::string ServerCore::BlobPath(const std::string& name) const { return fs::Join(Path(dir_, kBlobDirName), name); }

Result<bool> ServerCore::AttachmentsLocked(const std::string& device_key, const crypto::EnvelopeHeader& h,
                                           std::string* conflict) {
  bool all = true;
  for (const auto& m : h.attachments) {
    DALA_ASSIGN_OR_RETURN(db::Stmt q, db_.Prepare(
        "SELECT size, chunk_size, root, complete FROM blobs WHERE device_key = ? AND attachment_id = ?"));
    q.Bind(1, B(device_key)).Bind(2, B(m.attachment_id()));
    DALA_ASSIGN_OR_RETURN(bool row, q.Step());
    if (row) {
      auto root = q.BlobView(2);
      if (static_cast<uint64_t>(q.Int(0)) != m.size() || static_cast<uint32_t>(q.Int(1)) != m.chunk_size() ||
          root.size() != 32 || std::memcmp(root.data(), m.root().data(), 32) != 0) {
        *conflict = "an attachment id of this device is already declared with other contents";
        return false;
      }
      bool complete = q.Int(3) != 0;
      q = db::Stmt();
      if (!complete) {
        DALA_ASSIGN_OR_RETURN(complete, CompleteOnDiskLocked(device_key, m));
      }
      all = all && complete;
      continue;
    }
    q = db::Stmt();
    DALA_ASSIGN_OR_RETURN(db::Stmt ins, db_.Prepare(
        "INSERT INTO blobs(device_key, attachment_id, size, chunk_size, root, chunk_hashes, complete, created_ms) "
        "VALUES(?, ?, ?, ?, ?, ?, 0, ?)"));
    ins.Bind(1, B(device_key)).Bind(2, B(m.attachment_id())).Bind(3, static_cast<int64_t>(m.size()));
    ins.Bind(4, static_cast<int64_t>(m.chunk_size())).Bind(5, B(m.root())).Bind(6, B(m.chunk_hashes()));
    ins.Bind(7, clock_());
    DALA_RETURN_IF_ERROR(ins.Run());
    all = false;
  }
  return all;
}

namespace {

// How much of a blob file is verified, after a restart: whole chunks from the start, each checked
// against the manifest, up to the first that is missing or does not match (a crash may leave chunks that
// were written but never synced). Runs once per unfinished attachment per server start.
uint64_t VerifiedPrefix(const std::string& path, uint64_t size, uint32_t chunk_size, std::string_view hashes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::vector<uint8_t> buf(chunk_size);
  uint64_t good = 0;
  for (uint64_t i = 0; good < size; ++i) {
    uint64_t len = std::min<uint64_t>(chunk_size, size - good);
    ssize_t n = ::pread(fd, buf.data(), len, static_cast<off_t>(good));
    if (n != static_cast<ssize_t>(len)) break;
    crypto::Hash h = media::ChunkTree::HashChunk({buf.data(), len});
    if (std::memcmp(h.data(), hashes.data() + 32 * i, 32) != 0) break;
    good += len;
  }
  ::close(fd);
  return good;
}

}  // namespace

// A server killed between an upload's last fdatasync and the update that records the attachment complete
// leaves every byte in its file, verified, and the flag unset. The phone, told that every byte is here,
// has nothing left to send, so nothing else would ever finish the report: the file is made durable and
// recorded complete here, when the report is pushed again.
Result<bool> ServerCore::CompleteOnDiskLocked(const std::string& device_key, const v1::AttachmentManifest& m) {
  if (m.size() == 0 || ReceivedFor(device_key, m) != m.size()) return false;
  int fd = ::open(BlobPath(protocol::AttachmentFileName(B(device_key), B(m.attachment_id()))).c_str(),
                  O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool durable = ::fdatasync(fd) == 0;
  ::close(fd);
  if (!durable) return false;
  DALA_RETURN_IF_ERROR(MarkCompleteLocked(device_key, m.attachment_id()));
  return true;
}

uint64_t ServerCore::ReceivedFor(const std::string& device_key, const v1::AttachmentManifest& m) {
  Blob b;
  b.size = m.size();
  b.chunk_size = m.chunk_size();
  b.chunk_hashes = m.chunk_hashes();
  return Received(protocol::AttachmentFileName(B(device_key), B(m.attachment_id())), b);
}

uint64_t ServerCore::Received(const std::string& name, const Blob& blob) {
  std::lock_guard lock(uploads_mu_);
  auto it = uploads_.find(name);
  if (it != uploads_.end()) return it->second.received;
  uint64_t r = VerifiedPrefix(BlobPath(name), blob.size, blob.chunk_size, blob.chunk_hashes);
  uploads_[name].received = r;
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
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "UPDATE blobs SET complete = 1 WHERE device_key = ? AND attachment_id = ?"));
  st.Bind(1, B(device_key)).Bind(2, B(attachment_id));
  return st.Run();
}

ServerCore::UploadStart ServerCore::BeginUpload(std::string_view header, uint64_t body_length) {
  int64_t now = clock_();
  std::string raw;
  if (header.empty() || header.size() > protocol::kMaxUploadHeader || !protocol::FromBase64Url(header, &raw))
    return Reply(400, v1::BAD_REQUEST, "an upload needs its signed request in the X-Dala-Request header", now);
  auto req = protocol::VerifyRequest(B(raw));
  if (!req.ok()) return Reply(400, v1::BAD_REQUEST, req.status().message(), now);
  if (req->server_key() != std::string_view(reinterpret_cast<const char*>(signing_.public_key.data()), 32))
    return Reply(403, v1::WRONG_SERVER, "this request was signed for another server", now);
  if (!req->has_upload()) return Reply(400, v1::BAD_REQUEST, "an upload request was expected", now);
  const auto& up = req->upload();
  if (up.attachment_id().size() != 16 || up.length() != body_length)
    return Reply(400, v1::BAD_REQUEST, "the upload request does not match its body", now);
  Blob blob;
  {
    std::lock_guard lock(mu_);
    auto dev = db_.Prepare("SELECT revoked FROM devices WHERE device_key = ?");
    if (!dev.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
    dev->Bind(1, B(req->device_key()));
    auto row = dev->Step();
    if (!row.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
    if (!*row) return Reply(401, v1::UNKNOWN_DEVICE, "this device is not enrolled; enrol first", now);
    if (dev->Int(0) != 0) return Reply(403, v1::DEVICE_REVOKED, "this device was revoked by the organisation", now);
    *dev = db::Stmt();
    auto q = db_.Prepare("SELECT size, chunk_size, chunk_hashes, complete FROM blobs WHERE device_key = ? AND attachment_id = ?");
    if (!q.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
    q->Bind(1, B(req->device_key())).Bind(2, B(up.attachment_id()));
    auto brow = q->Step();
    if (!brow.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
    std::unique_ptr<UploadSession> probe(new UploadSession(*this));
    if (!*brow) return probe->Reply(v1::UPLOAD_UNKNOWN);
    blob.size = static_cast<uint64_t>(q->Int(0));
    blob.chunk_size = static_cast<uint32_t>(q->Int(1));
    auto hv = q->BlobView(2);
    blob.chunk_hashes.assign(reinterpret_cast<const char*>(hv.data()), hv.size());
    blob.complete = q->Int(3) != 0;
  }
  std::unique_ptr<UploadSession> s(new UploadSession(*this));
  s->name_ = protocol::AttachmentFileName(B(req->device_key()), B(up.attachment_id()));
  s->device_key_ = req->device_key();
  s->attachment_id_ = up.attachment_id();
  s->size_ = blob.size;
  s->chunk_size_ = blob.chunk_size;
  s->chunk_hashes_ = std::move(blob.chunk_hashes);
  if (blob.complete) {
    s->received_ = blob.size;
    return s->Reply(v1::UPLOAD_OK);
  }
  const uint64_t end = up.offset() + up.length();
  if (up.offset() % blob.chunk_size != 0 || end > blob.size || (end != blob.size && end % blob.chunk_size != 0))
    return Reply(400, v1::BAD_REQUEST, "an upload must cover whole chunks of the attachment", now);
  uint64_t received = Received(s->name_, blob);
  {
    std::lock_guard lock(uploads_mu_);
    auto& st = uploads_[s->name_];
    if (st.busy) return Reply(409, v1::UNAVAILABLE, "another upload of this attachment is in progress", now);
    received = st.received;
    if (up.length() == 0) {  // a probe: where the server stands once no upload is running
      s->received_ = received;
      return s->Reply(up.offset() == received ? v1::UPLOAD_OK : v1::UPLOAD_OFFSET);
    }
    st.busy = true;
  }
  s->holds_ = true;  // from here the destructor releases the attachment
  s->received_ = s->written_ = received;
  s->offset_ = s->start_ = up.offset();
  s->skip_until_ = received;
  s->end_ = end;
  if (up.offset() > received) return s->Reply(v1::UPLOAD_OFFSET);
  if (limits_.max_storage_bytes != 0 && stored_bytes_ + (end - std::max(received, up.offset())) > limits_.max_storage_bytes)
    return Reply(507, v1::UNAVAILABLE, "the server's storage is full; try again later", now);
  s->fd_ = ::open(BlobPath(s->name_).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (s->fd_ < 0) return Reply(503, v1::UNAVAILABLE, "storage unavailable; try again later", now);
  if (::ftruncate(s->fd_, static_cast<off_t>(received)) != 0)  // drops an unverified tail
    return Reply(503, v1::UNAVAILABLE, "storage unavailable; try again later", now);
  return s;
}

UploadSession::~UploadSession() {
  (void)Commit();  // a cut connection: what arrived whole is made durable and counted
  if (fd_ >= 0) ::close(fd_);
  if (holds_) core_.EndUpload(name_, received_);
}

// Chunks are verified and written as they arrive, then made durable together (one fdatasync per request
// instead of one per chunk) before anything counts them: before the answer, or when the connection drops.
bool UploadSession::Commit() {
  if (fd_ < 0 || written_ <= received_) return true;
  if (::fdatasync(fd_) != 0) {
    (void)::ftruncate(fd_, static_cast<off_t>(received_));
    written_ = received_;
    storage_failed_ = true;
    return false;
  }
  received_ = written_;
  {
    std::lock_guard lock(core_.uploads_mu_);
    core_.uploads_[name_].received = received_;
  }
  // Every chunk matched the signed manifest, whose root the push checked: the file is the declared one.
  if (received_ == size_) {
    Failpoint("server.upload.before_complete");  // crash tests stop the server here: durable, not recorded
    if (!core_.MarkComplete(device_key_, attachment_id_).ok()) storage_failed_ = true;
  }
  return !storage_failed_;
}

size_t UploadSession::want_at(uint64_t fed) const {
  if (fd_ < 0) return 0;
  uint64_t at = start_ + fed;
  if (at >= end_) return 0;
  if (at < skip_until_) return static_cast<size_t>(std::min<uint64_t>(skip_until_ - at, chunk_size_));
  return static_cast<size_t>(std::min<uint64_t>(chunk_size_, end_ - at));
}

size_t UploadSession::want() const {
  if (stop_ != v1::UPLOAD_OK || storage_failed_ || fd_ < 0 || offset_ >= end_) return 0;
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
  crypto::Hash h = media::ChunkTree::HashChunk(data);
  if (std::memcmp(h.data(), chunk_hashes_.data() + 32 * index, 32) != 0) {
    stop_ = v1::UPLOAD_BAD_CHUNK;  // nothing of it is kept
    return false;
  }
  Failpoint("server.upload.before_write");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset_ + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += static_cast<size_t>(w);
  }
  if (done != data.size()) {  // e.g. the disk is full
    (void)::ftruncate(fd_, static_cast<off_t>(written_));
    storage_failed_ = true;
    return false;
  }
  // Start writing it to disk now, without waiting: the fdatasync before the answer then has little
  // left to do, and the disk works while the next chunks arrive.
#ifdef __linux__
  (void)::sync_file_range(fd_, static_cast<off_t>(offset_), static_cast<off_t>(data.size()), SYNC_FILE_RANGE_WRITE);
#endif
  core_.stored_bytes_ += data.size();
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
  return {200, kProto, r.SerializeAsString()};
}

HttpResult UploadSession::Answer() {
  if (!Commit() || storage_failed_) {
    v1::Response r;
    r.set_status(v1::UNAVAILABLE);
    r.set_message("the server's storage is full or failing; try again later");
    r.set_server_time_ms(core_.clock_());
    return {507, kProto, r.SerializeAsString()};
  }
  return Reply(stop_);
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

Result<std::vector<DeviceInfo>> ServerCore::Devices() {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT d.device_key, d.enrolled_ms, d.last_seen_ms, d.revoked, "
      "(SELECT count(*) FROM reports r WHERE r.device_key = d.device_key) FROM devices d ORDER BY d.enrolled_ms"));
  std::vector<DeviceInfo> out;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    DeviceInfo d;
    auto k = st.BlobView(0);
    if (k.size() != 32) return Status(Code::kCorrupt, "a device key in the server database is damaged");
    std::memcpy(d.key.data(), k.data(), 32);
    d.enrolled_ms = st.Int(1);
    d.last_seen_ms = st.Int(2);
    d.revoked = st.Int(3) != 0;
    d.reports = static_cast<uint64_t>(st.Int(4));
    out.push_back(d);
  }
  return out;
}

Status ServerCore::Revoke(const crypto::PublicKey& device) {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("UPDATE devices SET revoked = 1 WHERE device_key = ?"));
  st.Bind(1, device);
  DALA_RETURN_IF_ERROR(st.Run());
  if (db_.Changes() == 0) return {Code::kNotFound, "no enrolled device with that key"};
  return Status::Ok();
}

Result<uint64_t> ServerCore::ReportCount() {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("SELECT count(*) FROM reports"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? static_cast<uint64_t>(st.Int(0)) : 0;
}

Result<uint64_t> ServerCore::Export(const std::string& path) {
  v1::Export ex;
  {
    std::lock_guard lock(mu_);
    ex.set_server_key(signing_.public_key.data(), 32);
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("SELECT envelope, receipt FROM reports ORDER BY seq"));
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      auto* r = ex.add_reports();
      auto e = st.BlobView(0), rc = st.BlobView(1);
      r->set_envelope(reinterpret_cast<const char*>(e.data()), e.size());
      r->set_receipt(reinterpret_cast<const char*>(rc.data()), rc.size());
    }
  }
  // Attachments beside the export (hard links where the file system allows, else streamed copies).
  const std::string media = path + ".media";
  for (const auto& r : ex.reports()) {
    crypto::EnvelopeHeader h;
    if (!crypto::VerifyEnvelope(B(r.envelope()), &h).ok() || h.attachments.empty()) continue;
    DALA_RETURN_IF_ERROR(fs::EnsureDirectory(media));
    for (const auto& m : h.attachments) {
      std::string name = protocol::AttachmentFileName(h.device_key, B(m.attachment_id()));
      std::string to = fs::Join(media, name);
      if (fs::Exists(to)) continue;
      if (::link(BlobPath(name).c_str(), to.c_str()) == 0) continue;
      DALA_RETURN_IF_ERROR(fs::CopyFile(BlobPath(name), to));
    }
  }
  std::string bytes = ex.SerializeAsString();
  DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(path, crypto::Bytes(bytes)));
  return static_cast<uint64_t>(ex.reports_size());
}

}  // namespace dala::server
