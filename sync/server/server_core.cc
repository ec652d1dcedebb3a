// dala-server's core: start-up, routing, the group-commit storage writer, enrolment and devices. Exports (to a
// file, or pulled by a desk) are in server_export.cc, pushes in server_push.cc, attachment uploads in
// server_upload.cc, the schema in server_schema.cc.
#include "server/server_core.h"

#include "server/sql/sqlite_connection.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <optional>
#include <set>
#include <system_error>
#include <thread>

#include "dala/v1/sync.pb.h"
#include "base/fsutil.h"
#include "crypto/attachment_file.h"
#include "format/invite.h"
#include "format/organisation.h"
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

#include "format/log.h"
#include "server/server_internal.h"

namespace dala::server {
namespace {

int64_t WallClock() { return SystemNowMs(); }

}  // namespace

ServerCore::ServerCore(std::string dir, std::unique_ptr<sql::Connection> db, crypto::SigningKey signing,
                       ServerLimits limits)
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

Status ServerCore::Init(const std::string& dir, const crypto::PublicKey& organisation, const std::string& database,
                        const std::string& blobs) {
  if (!InitSodium()) return {Code::kInternal, "libsodium could not start"};
  if (!blobs.empty() && blobs.front() != '/' && !IsS3(blobs))
    return {Code::kInvalidArgument, "--blobs must be an absolute path (every node names the same directory) or s3://BUCKET?endpoint=URL"};
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(dir));
  if (fs::Exists(Path(dir, kServerKeyFile)) || fs::Exists(Path(dir, kServerDbFile)))
    return {Code::kExists, "'" + dir + "' already holds a dala-server data directory"};
  if (IsS3(blobs)) {
    // The bucket must exist and take writes with the credentials given now (and at every start).
    DALA_ASSIGN_OR_RETURN(std::unique_ptr<AttachmentStore> s3, OpenS3Store(blobs, true));
    DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(Path(dir, kBlobsPathFile), crypto::Bytes(blobs)));
  } else if (!blobs.empty()) {
    DALA_RETURN_IF_ERROR(fs::EnsureDirectory(blobs));
    DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(Path(dir, kBlobsPathFile), crypto::Bytes(blobs)));
  }
  SecretBuffer key(32);
  randombytes_buf(key.data(), key.size());
  if (!database.empty()) return InitPostgres(dir, organisation, database, key);
  DALA_RETURN_IF_ERROR(fs::CreatePrivateFile(Path(dir, kServerDbFile)));
  {
    DALA_ASSIGN_OR_RETURN(db::Db db, db::Db::Open(Path(dir, kServerDbFile), key, true));
    DALA_RETURN_IF_ERROR(MigrateServerSchema(db));
    db::Txn txn(db);
    DALA_RETURN_IF_ERROR(txn.Begin());
    crypto::SigningKey signing = crypto::GenerateSigningKey();
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("INSERT INTO meta(key, value) VALUES('signing_key', ?)"));
    st.Bind(1, signing.secret_key.span());
    DALA_RETURN_IF_ERROR(st.Run());
    DALA_ASSIGN_OR_RETURN(db::Stmt org, db.Prepare("INSERT INTO meta(key, value) VALUES('organisation_key', ?)"));
    org.Bind(1, organisation);
    DALA_RETURN_IF_ERROR(org.Run());
    DALA_RETURN_IF_ERROR(txn.Commit());
  }
  return fs::WriteFileAtomic(Path(dir, kServerKeyFile), key.span());
}

namespace {

// On PostgreSQL the signing key is kept sealed under the data directory's key (server.key), so that the
// database alone (a dump, a replica, a raided database server) does not yield it.
constexpr char kSealedSigningKeyAd[] = "dala/v1/server-signing-key";

// The associated data: the label, then the organisation's key, so that a database whose organisation key
// was swapped (by someone who can write to it) opens no signing key.
std::string SealedKeyAd(const crypto::PublicKey& organisation) {
  return std::string(kSealedSigningKeyAd) + std::string(reinterpret_cast<const char*>(organisation.data()), 32);
}

std::vector<uint8_t> SealSigningKey(const crypto::SigningKey& signing, const SecretBuffer& data_key,
                                    const crypto::PublicKey& organisation) {
  const std::string ad = SealedKeyAd(organisation);
  std::vector<uint8_t> out(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + signing.secret_key.size() +
                           crypto_aead_xchacha20poly1305_ietf_ABYTES);
  randombytes_buf(out.data(), crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data() + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &clen,
                                             signing.secret_key.data(), signing.secret_key.size(),
                                             reinterpret_cast<const uint8_t*>(ad.data()), ad.size(), nullptr,
                                             out.data(), data_key.data());
  return out;
}

}  // namespace

Result<db::Db> OpenServerDatabase(const std::string& path, const SecretBuffer& key, bool create) {
  auto opened = db::Db::Open(path, key, create, db::Db::Sqlcipher3::kRefuse);
  if (!opened.ok() && opened.status().code() == Code::kState)
    return Status(Code::kState,
                  "this data directory was made by dala-server 0.1 (its database is SQLCipher 3); it was not "
                  "changed. Export it with that version ('dala-server export'), then make a new one with "
                  "'dala-server init --organisation'");
  return opened;
}

Result<std::string> AttachmentsLocation(const std::string& dir) {
  if (!fs::Exists(Path(dir, kBlobsPathFile))) return Path(dir, kAttachmentDirName);
  DALA_ASSIGN_OR_RETURN(std::vector<uint8_t> path, fs::ReadFile(Path(dir, kBlobsPathFile), 4096));
  std::string p(path.begin(), path.end());
  if (p.empty() || (p.front() != '/' && !IsS3(p)))
    return Status(Code::kCorrupt, "the data directory's blobs.path is neither an absolute path nor an s3:// URL");
  return p;
}

Result<std::unique_ptr<AttachmentStore>> OpenAttachments(const std::string& dir, bool probe,
                                                         std::function<void(const char*, int, double)> observe) {
  DALA_ASSIGN_OR_RETURN(std::string where, AttachmentsLocation(dir));
  if (IsS3(where)) return OpenS3Store(where, probe, std::move(observe));
  return OpenDirectoryStore(where);
}

Result<crypto::SigningKey> ServerCore::ReadSigningKey(sql::Connection& db, const SecretBuffer& data_key) {
  const bool sealed = db.engine() == sql::Engine::kPostgres;
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db.Prepare(sealed ? "SELECT value FROM meta WHERE key = 'signing_key_sealed'"
                                                         : "SELECT value FROM meta WHERE key = 'signing_key'"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kCorrupt, "the server database has no signing key");
  if (!sealed) return crypto::SigningKeyFromSecret(st.BlobView(0));
  const std::vector<uint8_t> v = st.Blob(0);
  st = sql::Stmt();
  DALA_ASSIGN_OR_RETURN(sql::Stmt o, db.Prepare("SELECT value FROM meta WHERE key = 'organisation_key'"));
  DALA_ASSIGN_OR_RETURN(bool has_org, o.Step());
  if (!has_org || o.BlobView(0).size() != 32) return Status(Code::kCorrupt, "the server database has no organisation key");
  crypto::PublicKey organisation{};
  std::memcpy(organisation.data(), o.BlobView(0).data(), 32);
  const std::string ad = SealedKeyAd(organisation);
  constexpr size_t kN = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, kA = crypto_aead_xchacha20poly1305_ietf_ABYTES;
  if (v.size() < kN + kA) return Status(Code::kCorrupt, "the server database's signing key is damaged");
  SecretBuffer secret(v.size() - kN - kA);
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(secret.data(), &mlen, nullptr, v.data() + kN, v.size() - kN,
                                                 reinterpret_cast<const uint8_t*>(ad.data()), ad.size(), v.data(),
                                                 data_key.data()) != 0)
    return Status(Code::kWrongKey, "this data directory's server.key does not open the signing key held in the "
                                   "PostgreSQL database: the data directory belongs to another database, or the "
                                   "database's organisation key was changed");
  return crypto::SigningKeyFromSecret(secret.span());
}

Status ServerCore::InitPostgres(const std::string& dir, const crypto::PublicKey& organisation,
                                const std::string& database, const SecretBuffer& key) {
  if (database.rfind("postgresql://", 0) != 0 && database.rfind("postgres://", 0) != 0)
    return Status(Code::kInvalidArgument, "--database must be a postgresql:// URL");
  DALA_ASSIGN_OR_RETURN(std::unique_ptr<sql::Connection> pg, sql::ConnectPostgres(database));
  DALA_RETURN_IF_ERROR(MigratePostgresSchema(*pg));
  // The data directory first (a failure below removes it again), then the database's rows.
  DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(Path(dir, kServerKeyFile), key.span()));
  DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(Path(dir, kDatabaseUrlFile), crypto::Bytes(database)));
  Status st = [&]() -> Status {
    sql::Txn txn(*pg);
    DALA_RETURN_IF_ERROR(txn.Begin());
    DALA_ASSIGN_OR_RETURN(sql::Stmt held, pg->Prepare("SELECT count(*) FROM meta WHERE key = 'organisation_key'"));
    DALA_ASSIGN_OR_RETURN(bool row, held.Step());
    if (row && held.Int(0) > 0)
      return Status(Code::kExists, "this PostgreSQL database holds a dala-server's data already: start more nodes "
                                   "on copies of that server's data directory, or give another database");
    held = sql::Stmt();
    crypto::SigningKey signing = crypto::GenerateSigningKey();
    DALA_ASSIGN_OR_RETURN(sql::Stmt sk, pg->Prepare("INSERT INTO meta(key, value) VALUES('signing_key_sealed', ?)"));
    DALA_RETURN_IF_ERROR(sk.Bind(1, SealSigningKey(signing, key, organisation)).Run());
    DALA_ASSIGN_OR_RETURN(sql::Stmt org, pg->Prepare("INSERT INTO meta(key, value) VALUES('organisation_key', ?)"));
    DALA_RETURN_IF_ERROR(org.Bind(1, organisation).Run());
    return txn.Commit();
  }();
  if (!st.ok()) {
    (void)fs::RemoveFile(Path(dir, kServerKeyFile));
    (void)fs::RemoveFile(Path(dir, kDatabaseUrlFile));
  }
  return st;
}

Result<std::unique_ptr<ServerCore>> ServerCore::Open(const std::string& dir, ServerLimits limits) {
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
  if (fs::Exists(Path(dir, kDatabaseUrlFile))) {  // PostgreSQL
    DALA_ASSIGN_OR_RETURN(std::vector<uint8_t> url, fs::ReadFile(Path(dir, kDatabaseUrlFile), 4096));
    DALA_ASSIGN_OR_RETURN(std::unique_ptr<sql::Connection> pg,
                          sql::ConnectPostgres(std::string(url.begin(), url.end())));
    DALA_RETURN_IF_ERROR(MigratePostgresSchema(*pg));
    return OpenOn(dir, std::move(pg), k, limits);
  }
  DALA_ASSIGN_OR_RETURN(db::Db db, OpenServerDatabase(Path(dir, kServerDbFile), k));
  // Before any migration: data of dala-server 0.1 (no organisation key) is left exactly as it is, so that
  // the 0.1 binary can still export it.
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt m, db.Prepare("SELECT length(value) FROM meta WHERE key = 'organisation_key'"));
    DALA_ASSIGN_OR_RETURN(bool has_org, m.Step());
    if (!has_org || m.Int(0) != 32)
      return Status(Code::kState,
                    "this data directory was made by dala-server 0.1, before organisation keys; it was not "
                    "changed. Export it with that version ('dala-server export'), then make a new one with "
                    "'dala-server init --organisation'");
  }
  DALA_RETURN_IF_ERROR(MigrateServerSchema(db));
  // More page cache than a phone's 8 MiB: a page read again from the cache is not decrypted again.
  DALA_RETURN_IF_ERROR(db.Exec("PRAGMA cache_size = -65536;"));
  return OpenOn(dir, std::make_unique<sql::SqliteConnection>(std::move(db)), k, limits);
}

Result<std::unique_ptr<ServerCore>> ServerCore::OpenOn(const std::string& dir, std::unique_ptr<sql::Connection> conn,
                                                       const SecretBuffer& data_key, ServerLimits limits) {
  sql::Connection& db = *conn;
  auto observer = std::make_shared<ServerCore*>(nullptr);  // set once the core exists: S3 requests in its metrics
  DALA_ASSIGN_OR_RETURN(std::unique_ptr<AttachmentStore> attachments,
                        OpenAttachments(dir, true, [observer](const char* op, int status, double seconds) {
                          if (*observer != nullptr) (*observer)->metrics_.StorageRequest(op, status, seconds);
                        }));
  DALA_ASSIGN_OR_RETURN(std::optional<uint64_t> held_bytes, attachments->BytesHeld());
  uint64_t stored = held_bytes.value_or(0);
  if (!held_bytes) {
    DALA_ASSIGN_OR_RETURN(sql::Stmt sum, db.Prepare("SELECT coalesce(sum(size), 0) FROM attachments WHERE complete = 1"));
    DALA_ASSIGN_OR_RETURN(bool row, sum.Step());
    if (row) stored = static_cast<uint64_t>(sum.Int(0));
  }
  DALA_ASSIGN_OR_RETURN(crypto::SigningKey signing, ReadSigningKey(db, data_key));
  crypto::PublicKey organisation{};
  std::string statement;
  {
    DALA_ASSIGN_OR_RETURN(sql::Stmt m, db.Prepare("SELECT key, value FROM meta WHERE key IN ('organisation_key', 'statement')"));
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool r, m.Step());
      if (!r) break;
      auto v = m.BlobView(1);
      if (m.Text(0) == "statement") {
        statement.assign(reinterpret_cast<const char*>(v.data()), v.size());
      } else if (v.size() == 32) {
        std::memcpy(organisation.data(), v.data(), 32);
      }
    }
  }
  DALA_ASSIGN_OR_RETURN(sql::Stmt mx, db.Prepare("SELECT coalesce(max(seq), 0) FROM reports"));
  DALA_ASSIGN_OR_RETURN(bool got, mx.Step());
  int64_t next = got ? mx.Int(0) + 1 : 1;
  mx = sql::Stmt();
  // Counted, not taken from the sequence: data from older versions may have gaps in it.
  DALA_ASSIGN_OR_RETURN(sql::Stmt count, db.Prepare("SELECT count(*) FROM reports"));
  DALA_ASSIGN_OR_RETURN(bool counted, count.Step());
  const int64_t held = counted ? count.Int(0) : 0;
  count = sql::Stmt();
  auto core = std::unique_ptr<ServerCore>(new ServerCore(dir, std::move(conn), std::move(signing), limits));
  core->attachments_ = std::move(attachments);
  *observer = core.get();
  core->next_sequence_ = next;
  core->organisation_ = organisation;
  if (!statement.empty()) {
    auto st = protocol::VerifyStatement(B(statement), organisation);
    if (st.ok()) core->KeepStatement(std::move(statement), std::move(*st));
  }
  core->stored_bytes_ = stored;
  {
    std::lock_guard lock(core->mu_);
    DALA_RETURN_IF_ERROR(core->log_.Load());
    if (core->log_.size() == 0) DALA_RETURN_IF_ERROR(core->BackfillLogLocked());
    core->PublishLogSizeLocked();
  }
  ServerMetrics& m = core->metrics_;
  m.reports_held.Set(static_cast<double>(held));
  m.attachment_bytes_held.Set(static_cast<double>(stored));
  m.attachment_bytes_limit.Set(static_cast<double>(limits.max_storage_bytes));
  return core;
}

Result<std::string> ServerCore::SignHeadLocked(int64_t now) {
  const uint64_t size = log_.size();
  if (size == 0) return std::string();
  {  // the newest head recorded (by this process or another on the same data directory)
    DALA_ASSIGN_OR_RETURN(sql::Stmt q, db_->Prepare("SELECT coalesce(max(size), 0) FROM log_heads"));
    DALA_ASSIGN_OR_RETURN(bool row, q.Step());
    if (row && static_cast<uint64_t>(q.Int(0)) >= size) return std::string();
  }
  protocol::LogHead head;
  head.size = size;
  DALA_ASSIGN_OR_RETURN(head.root, merkle::Root(log_, size));
  head.time_ms = now;
  head.server_key = signing_.public_key;
  std::string signed_head = protocol::SignLogHead(signing_, head);
  DALA_ASSIGN_OR_RETURN(sql::Stmt ins, db_->Prepare("INSERT INTO log_heads(size, signed) VALUES(?, ?)"));
  ins.Bind(1, static_cast<int64_t>(size)).Bind(2, B(signed_head));
  DALA_RETURN_IF_ERROR(ins.Run());
  return signed_head;
}

Result<std::string> ServerCore::NewestHeadLocked(uint64_t size) {
  DALA_ASSIGN_OR_RETURN(sql::Stmt h, db_->Prepare("SELECT signed FROM log_heads WHERE size = ?"));
  h.Bind(1, static_cast<int64_t>(size));
  DALA_ASSIGN_OR_RETURN(bool row, h.Step());
  if (!row) return std::string();
  auto b = h.BlobView(0);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

Status ServerCore::AddLogLocked(const PushJob& job, const std::string& signed_head, uint64_t size,
                                HttpResult* answer) {
  if (answer->status != 200 || answer->content_type != kProto) return Status::Ok();
  v1::Response r;
  if (!r.ParseFromString(answer->body)) return Status(Code::kInternal, "an answer could not be read back");
  r.set_log_head(signed_head);
  // The answer's own leaves: a proof element that covers only those, the phone computes from their receipts.
  std::set<uint64_t> answered;
  for (const auto& res : r.results())
    if (res.has_leaf_index()) answered.insert(res.leaf_index());
  auto all_answered = [&](uint64_t begin, uint64_t end) {
    auto it = answered.lower_bound(begin);
    for (uint64_t i = begin; i < end; ++i, ++it)
      if (it == answered.end() || *it != i) return false;
    return true;
  };
  std::vector<merkle::Hash> previous;
  for (auto& res : *r.mutable_results()) {
    if (!res.has_leaf_index()) continue;
    DALA_ASSIGN_OR_RETURN(std::vector<merkle::Hash> proof, merkle::InclusionProof(log_, res.leaf_index(), size));
    size_t shared = 0;  // the longest common tail with the previous proof travels once
    while (shared < proof.size() && shared < previous.size() &&
           proof[proof.size() - 1 - shared] == previous[previous.size() - 1 - shared])
      ++shared;
    const auto ranges = merkle::InclusionProofRanges(res.leaf_index(), size);
    uint64_t computed = 0;
    for (size_t i = 0; i + shared < proof.size(); ++i) {
      if (i < 64 && all_answered(ranges[i].first, ranges[i].second)) {
        computed |= uint64_t{1} << i;
        continue;
      }
      res.add_inclusion_proof(proof[i].data(), proof[i].size());
    }
    res.set_proof_shared(static_cast<uint32_t>(shared));
    if (computed != 0) res.set_proof_computed(computed);
    previous = std::move(proof);
  }
  for (size_t i = 0; i < job.log_sizes.size(); ++i) {
    const uint64_t from = job.log_sizes[i];
    v1::ConsistencyProof* c = r.add_consistency();
    c->set_from_size(from);
    if (from == 0 || from >= size) continue;  // nothing to prove, or more than this log holds: the phone decides
    bool again = false;  // the same size twice: proven once
    for (size_t k = 0; k < i && !again; ++k)
      if (job.log_sizes[k] == from) {
        *c->mutable_hashes() = r.consistency(static_cast<int>(k)).hashes();
        again = true;
      }
    if (again) continue;
    // Only from a head this server signed (a phone holds no other): a size it never signed gets an empty
    // proof, which the phone takes as the contradiction it is, and costs the server one lookup.
    DALA_ASSIGN_OR_RETURN(std::string signed_at, NewestHeadLocked(from));
    if (signed_at.empty()) continue;
    DALA_ASSIGN_OR_RETURN(std::vector<merkle::Hash> proof, merkle::ConsistencyProof(log_, from, size));
    for (const auto& h : proof) c->add_hashes(h.data(), h.size());
  }
  answer->body = r.SerializeAsString();
  return Status::Ok();
}

Status ServerCore::BackfillLogLocked() {
  sql::Txn txn(*db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  if (std::string st = StatementFor(0); !st.empty()) {
    auto parsed = protocol::VerifyStatement(B(st), organisation_);
    if (parsed.ok()) DALA_RETURN_IF_ERROR(log_.Append(protocol::StatementLeaf(st, parsed->version())).status());
  }
  {
    DALA_ASSIGN_OR_RETURN(sql::Stmt en, db_->Prepare(
        "SELECT device_key, invite, proof, enrolled_ms FROM devices WHERE invite IS NOT NULL ORDER BY enrolled_ms"));
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool row, en.Step());
      if (!row) break;
      auto k = en.BlobView(0), i = en.BlobView(1), p = en.BlobView(2);
      DALA_RETURN_IF_ERROR(log_.Append(protocol::EnrolmentLeaf(
          std::string_view(reinterpret_cast<const char*>(k.data()), k.size()),
          std::string_view(reinterpret_cast<const char*>(i.data()), i.size()),
          std::string_view(reinterpret_cast<const char*>(p.data()), p.size()), en.Int(3))).status());
    }
  }
  {
    DALA_ASSIGN_OR_RETURN(sql::Stmt rs, db_->Prepare("SELECT receipt FROM reports ORDER BY seq"));
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool row, rs.Step());
      if (!row) break;
      auto b = rs.BlobView(0);
      v1::SignedReceipt sr;
      v1::Receipt r;
      if (!sr.ParseFromArray(b.data(), static_cast<int>(b.size())) || !r.ParseFromString(sr.receipt()))
        return Status(Code::kCorrupt, "a stored receipt is damaged");
      DALA_ASSIGN_OR_RETURN(uint64_t leaf, log_.Append(protocol::ReportLeaf(r)));
      DALA_ASSIGN_OR_RETURN(sql::Stmt up, db_->Prepare("UPDATE reports SET leaf = ? WHERE seq = ?"));
      up.Bind(1, static_cast<int64_t>(leaf)).Bind(2, static_cast<int64_t>(r.sequence()));
      DALA_RETURN_IF_ERROR(up.Run());
    }
  }
  if (log_.size() == 0) return Status::Ok();  // nothing yet: the transaction ends unused
  DALA_RETURN_IF_ERROR(SignHeadLocked(clock_()).status());
  return txn.Commit();
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

HttpResult ServerCore::Signed(HttpResult r, const crypto::Hash& request_hash) const {
  if (r.content_type == kProto) r.body = protocol::SignResponse(signing_, std::move(r.body), request_hash);
  return r;
}

void ServerCore::HandleAsync(std::string_view method, std::string_view target, std::string_view content_type,
                             std::string_view body, Done unsigned_done) {
  if (target == protocol::kPathExport) {  // a desk's, answered unsigned (see HandleExport)
    if (method != "POST") return unsigned_done({405, "text/plain", "use POST\n"});
    return unsigned_done(HandleExport(body));
  }
  int64_t now = clock_();
  // Every answer is signed and names the request it answers (docs/protocol.md, "Answers").
  Done done = [this, hash = protocol::RequestHash(crypto::Bytes(body)), d = std::move(unsigned_done)](HttpResult r) {
    d(Signed(std::move(r), hash));
  };
  if (target == protocol::kPathHealth) {
    if (method != "GET") return done(Reply(405, v1::BAD_REQUEST, "use GET", now));
    // Up, and nothing more: no name, no key, no version for a scanner (issue 14, item 7).
    return done({200, "text/plain", "ok\n"});
  }
  if (target.starts_with(protocol::kPathOldProtocol))
    return done(Reply(410, v1::BAD_REQUEST, protocol::kOldProtocolMessage, now));
  // Anything else (a scanner's "/", a browser's favicon) gets what any web server says: a short plain 404,
  // not a signed protobuf answer that would tell what answers here (issue 14, item 7).
  if (target != protocol::kPathEnrol && target != protocol::kPathPush) return done({404, "text/plain", "not found\n"});
  if (method != "POST") return done(Reply(405, v1::BAD_REQUEST, "use POST", now));
  if (content_type.substr(0, content_type.find(';')) != protocol::kContentType)
    return done(Reply(415, v1::BAD_REQUEST, "the body must be application/x-protobuf", now));
  if (body.size() > limits_.max_body_bytes) return done(Reply(413, v1::TOO_LARGE, "the request body is too large", now));
  auto req = protocol::VerifyRequest(crypto::Bytes(body));
  if (!req.ok()) return done(Reply(400, v1::BAD_REQUEST, req.status().message(), now));
  if (req->server_key() != std::string_view(reinterpret_cast<const char*>(signing_.public_key.data()), 32))
    return done(Reply(403, v1::WRONG_SERVER, "this request was signed for another server", now));
  // A phone holding an older statement of the organisation gets the newest with the answer.
  if (std::string st = StatementFor(req->statement_version()); !st.empty()) {
    done = [st = std::move(st), d = std::move(done)](HttpResult r) {
      if (r.content_type == kProto) {
        v1::Response extra;
        extra.set_statement(st);
        r.body += extra.SerializeAsString();  // protobuf concatenation: the field joins the answer
      }
      d(std::move(r));
    };
  }
  if (target == protocol::kPathEnrol) {
    if (!req->has_enrol()) return done(Reply(400, v1::BAD_REQUEST, "an enrol request was expected", now));
    return done(Enrol(req->device_key(), req->enrol()));
  }
  if (!req->has_push()) return done(Reply(400, v1::BAD_REQUEST, "a push request was expected", now));
  if (!AuthorisedNow(now)) return done(Reply(403, v1::WRONG_SERVER, kNotAuthorisedNow, now));
  const auto& envelopes = req->push().envelopes();
  if (static_cast<size_t>(envelopes.size()) > limits_.max_batch)
    return done(Reply(413, v1::TOO_LARGE, "too many reports in one push", now));
  // Here, on the caller's thread (in parallel across connections): every envelope's device signature.
  PushJob job;
  job.device_key = req->device_key();
  if (req->log_sizes_size() > protocol::kMaxLogHeadsPerRequest)
    return done(Reply(400, v1::BAD_REQUEST, "too many log heads in one request", now));
  job.log_sizes.assign(req->log_sizes().begin(), req->log_sizes().end());
  job.done = std::move(done);
  job.items.resize(static_cast<size_t>(envelopes.size()));
  auto check = [&](size_t i) {
    PushItem& it = job.items[i];
    it.envelope = envelopes[static_cast<int>(i)];
    // Verified first, also when too large, so that the answer names the report it refuses (an answer
    // without its id is ignored by the phone, which would send the report for ever).
    if (Status st = envelope::Verify(B(it.envelope), &it.h); !st.ok()) {
      it.reject = st.message();
    } else if (it.envelope.size() > limits_.max_envelope_bytes) {
      it.reject = "the sealed report is too large for this server";
    } else if (std::memcmp(it.h.device_key.data(), job.device_key.data(), 32) != 0) {
      it.reject = "the sealed report was signed by another device";
    }
    it.hash = crypto::Blake2b256(B(it.envelope));
  };
  // A phone draining its queue sends one push at a time and waits for its answer: a batch's signatures
  // are checked on two cores (the other would idle), a single report's on this thread.
  std::atomic<size_t> next{0};
  std::exception_ptr failed[2];  // e.g. out of memory: thrown here once both threads are done
  auto work = [&](std::exception_ptr* error) {
    try {
      for (size_t i; (i = next.fetch_add(1)) < job.items.size();) check(i);
    } catch (...) {
      next = job.items.size();
      *error = std::current_exception();
    }
  };
  std::optional<std::thread> helper;
  if (job.items.size() >= kParallelCheckFrom) {
    try {
      helper.emplace(work, &failed[1]);
    } catch (const std::system_error&) {  // no thread to be had: this one does it all
    }
  }
  work(&failed[0]);
  if (helper) helper->join();
  for (const auto& e : failed)
    if (e) std::rethrow_exception(e);
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
      const auto began = std::chrono::steady_clock::now();
      int64_t now = clock_();
      const int64_t first_sequence = next_sequence_;
      bool ok = true;
      sql::Txn txn(*db_);
      ok = txn.Begin().ok();
      // Read again under the write lock: another node on the same PostgreSQL database (or another process on
      // this data directory) may have stored reports, grown the log or installed a newer statement since. A
      // group that appends nothing must still answer with the newest head, not this node's last one.
      ok = ok && log_.Load().ok() && RefreshStatementLocked().ok();
      const uint64_t first_leaf = log_.size();
      if (ok) {
        auto mx = db_->Prepare("SELECT coalesce(max(seq), 0) + 1 FROM reports");
        auto row = mx.ok() ? mx->Step() : Result<bool>(mx.status());
        ok = row.ok() && *row;
        if (ok) next_sequence_ = std::max(next_sequence_, mx->Int(0));
      }
      for (size_t i = 0; ok && i < jobs.size(); ++i) {
        auto r = PushLocked(jobs[i], now);
        if (r.ok()) answers[i] = std::move(*r);
        else ok = false;
      }
      // One head for the whole group, signed inside its transaction; every answer of the group carries it
      // (or, when the group appended nothing, the newest recorded) with its proofs.
      Result<std::string> head = ok ? SignHeadLocked(now) : Result<std::string>(Status(Code::kInternal, ""));
      if (ok && head.ok() && head->empty()) head = NewestHeadLocked(log_.size());
      for (size_t i = 0; ok && head.ok() && !head->empty() && i < jobs.size(); ++i)
        ok = AddLogLocked(jobs[i], *head, log_.size(), &answers[i]).ok();
      ok = ok && head.ok() && txn.Commit().ok();
      if (!ok) {
        next_sequence_ = first_sequence;  // the transaction rolled back
        log_.Rollback(first_leaf);
        for (auto& a : answers) a = Reply(503, v1::UNAVAILABLE, "storage unavailable; try again later", now);
      }
      metrics_.commit_seconds.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
      metrics_.pushes_per_commit.Observe(static_cast<double>(jobs.size()));
      if (ok) CountStored(jobs);
      PublishLogSizeLocked();
    }
    for (size_t i = 0; i < jobs.size(); ++i) jobs[i].done(std::move(answers[i]));
  }
}

void ServerCore::CountStored(const std::vector<PushJob>& jobs) {
  uint64_t reports = 0, bytes = 0;
  for (const auto& j : jobs) {
    reports += j.stored;
    bytes += j.stored_bytes;
  }
  metrics_.reports_stored.Inc(reports);
  metrics_.reports_held.Add(static_cast<double>(reports));
  metrics_.envelope_bytes_stored.Inc(bytes);
}

// Enrolment (docs/protocol.md, "Enrolment"): the invite must be signed by this server's organisation for
// this server, still authorised by the newest statement the server holds, not expired, not used up; the
// proof must be the invite holder's for this very device, so a captured request enrols no other device.
HttpResult ServerCore::Enrol(const std::string& device_key, const v1::EnrolRequest& enrol) {
  int64_t now = clock_();
  auto inv = protocol::CheckSignedInvite(enrol.invite(), &organisation_);
  if (!inv.ok()) return Reply(403, v1::INVITE_INVALID, "the invite is not one of this organisation's: " + inv.status().message(), now);
  if (inv->invite.server_key() != std::string_view(reinterpret_cast<const char*>(signing_.public_key.data()), 32))
    return Reply(403, v1::INVITE_INVALID, "the invite is for another server of the organisation", now);
  if (!protocol::VerifyEnrolProof(inv->invite, B(device_key), signing_.public_key, enrol.proof()))
    return Reply(403, v1::INVITE_INVALID, "the enrolment proof does not verify for this device", now);
  // Uses are counted per invite by its enrolment key: one per invite, whatever bytes encode the invite.
  const crypto::Hash invite_hash = crypto::Blake2b256(B(inv->invite.enrol_key()));
  std::lock_guard lock(mu_);
  // Everything below under the write lock: another node (or process) may enrol this device, use up the
  // invite or install a newer statement meanwhile, and each is read after it.
  sql::Txn txn(*db_);
  if (!txn.Begin().ok() || !RefreshStatementLocked().ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  // The newest statement wins: the invite's, or one the server already holds.
  v1::OrgStatement newest = inv->statement;
  std::string newest_bytes = inv->invite.statement();
  if (std::string held_bytes = StatementFor(newest.version()); !held_bytes.empty()) {
    auto held = protocol::VerifyStatement(B(held_bytes), organisation_);
    if (held.ok()) {
      newest = std::move(*held);
      newest_bytes = std::move(held_bytes);
    }
  }
  if (!protocol::AuthorisedAt(newest, signing_.public_key, now))
    return Reply(403, v1::INVITE_INVALID, "the organisation does not authorise this server now", now);
  auto dev = db_->Prepare("SELECT revoked FROM devices WHERE device_key = ?");
  if (!dev.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  dev->Bind(1, B(device_key));
  auto row = dev->Step();
  if (!row.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  if (*row) {
    // Idempotent: enrolling again (a retry, a replay) changes nothing.
    if (dev->Int(0) != 0) return Reply(403, v1::DEVICE_REVOKED, "this device was revoked by the organisation", now);
    return Reply(200, v1::OK, "already enrolled", now);
  }
  *dev = sql::Stmt();
  if (inv->invite.expires_ms() <= now) return Reply(403, v1::INVITE_EXPIRED, "the invite has expired; ask for a new one", now);
  {
    auto cancelled = db_->Prepare("SELECT 1 FROM invites_cancelled WHERE invite_hash = ?");
    if (!cancelled.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
    cancelled->Bind(1, invite_hash);
    auto crow = cancelled->Step();
    if (!crow.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
    if (*crow) return Reply(403, v1::INVITE_INVALID, "this invite was cancelled; ask for a new one", now);
  }
  auto used = db_->Prepare("SELECT count(*) FROM devices WHERE invite_hash = ?");
  if (!used.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  used->Bind(1, invite_hash);
  auto urow = used->Step();
  if (!urow.ok() || !*urow) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  if (used->Int(0) >= static_cast<int64_t>(inv->invite.uses()))
    return Reply(403, v1::INVITE_USED_UP, "the invite has been used up; ask for a new one", now);
  *used = sql::Stmt();
  auto add = db_->Prepare(
      "INSERT INTO devices(device_key, enrolled_ms, last_seen_ms, revoked, invite, invite_hash, proof) "
      "VALUES(?, ?, ?, 0, ?, ?, ?)");
  auto keep = db_->Prepare(db_->Upsert("meta(key, value) VALUES('statement', ?)", "key", "value"));
  if (!add.ok() || !keep.ok()) return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  add->Bind(1, B(device_key)).Bind(2, now).Bind(3, now).Bind(4, B(enrol.invite())).Bind(5, invite_hash).Bind(6, B(enrol.proof()));
  keep->Bind(1, B(newest_bytes));
  const uint64_t first_leaf = log_.size();
  bool ok = add->Run().ok() && keep->Run().ok();
  if (ok && StatementFor(newest.version() - 1).empty())  // a statement newer than any the server held
    ok = log_.Append(protocol::StatementLeaf(newest_bytes, newest.version())).ok();
  ok = ok && log_.Append(protocol::EnrolmentLeaf(device_key, enrol.invite(), enrol.proof(), now)).ok();
  Result<std::string> head = ok ? SignHeadLocked(now) : Result<std::string>(Status(Code::kInternal, ""));
  if (!ok || !head.ok() || !txn.Commit().ok()) {
    log_.Rollback(first_leaf);
    return Reply(503, v1::UNAVAILABLE, "storage unavailable", now);
  }
  PublishLogSizeLocked();
  KeepStatement(std::move(newest_bytes), std::move(newest));
  return Reply(200, v1::OK, "enrolled", now);
}

Status ServerCore::RefreshStatementLocked() {
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare("SELECT value FROM meta WHERE key = 'statement'"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::Ok();
  auto v = st.BlobView(0);
  std::string bytes(reinterpret_cast<const char*>(v.data()), v.size());
  {
    std::lock_guard lock(statement_mu_);
    if (bytes == statement_) return Status::Ok();  // the one held: nothing to check again
  }
  auto parsed = protocol::VerifyStatement(B(bytes), organisation_);
  if (parsed.ok()) KeepStatement(std::move(bytes), std::move(*parsed));  // only ever a newer version
  return Status::Ok();
}

std::string ServerCore::StatementFor(uint64_t version) const {
  std::lock_guard lock(statement_mu_);
  return statement_version_ > version ? statement_ : std::string();
}

void ServerCore::KeepStatement(std::string signed_statement, v1::OrgStatement statement) {
  std::lock_guard lock(statement_mu_);
  if (statement.version() <= statement_version_) return;
  statement_ = std::move(signed_statement);
  statement_version_ = statement.version();
  statement_parsed_ = std::move(statement);
}

bool ServerCore::AuthorisedNow(int64_t now) const {
  std::lock_guard lock(statement_mu_);
  return statement_version_ == 0 || protocol::AuthorisedAt(statement_parsed_, signing_.public_key, now);
}

Status ServerCore::SetStatement(std::string_view signed_statement) {
  DALA_ASSIGN_OR_RETURN(v1::OrgStatement st, protocol::VerifyStatement(crypto::Bytes(signed_statement), organisation_));
  std::lock_guard lock(mu_);
  const uint64_t first_leaf = log_.size();
  std::string head;
  Status done = [&]() -> Status {
    sql::Txn txn(*db_);
    DALA_RETURN_IF_ERROR(txn.Begin());
    DALA_RETURN_IF_ERROR(RefreshStatementLocked());  // another node may have installed it, or a newer one
    if (!StatementFor(st.version() - 1).empty())  // it holds version >= st.version()
      return Status(Code::kState, "the server holds this statement or a newer one already");
    DALA_ASSIGN_OR_RETURN(sql::Stmt keep, db_->Prepare(db_->Upsert("meta(key, value) VALUES('statement', ?)", "key", "value")));
    keep.Bind(1, crypto::Bytes(signed_statement));
    DALA_RETURN_IF_ERROR(keep.Run());
    DALA_RETURN_IF_ERROR(log_.Append(protocol::StatementLeaf(signed_statement, st.version())).status());
    DALA_ASSIGN_OR_RETURN(head, SignHeadLocked(clock_()));
    return txn.Commit();
  }();
  if (!done.ok()) {
    log_.Rollback(first_leaf);
    return done;
  }
  PublishLogSizeLocked();
  KeepStatement(std::string(signed_statement), std::move(st));
  return Status::Ok();
}

Result<uint64_t> ServerCore::ReportCount() {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare("SELECT count(*) FROM reports"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? static_cast<uint64_t>(st.Int(0)) : 0;
}

}  // namespace dala::server
