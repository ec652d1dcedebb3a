#include "server_core.h"

#include <sodium.h>

#include <cstring>

#include "dala/v1/sync.pb.h"
#include "fsutil.h"
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

ServerCore::ServerCore(db::Db db, crypto::SigningKey signing, Limits limits)
    : db_(std::move(db)), signing_(std::move(signing)), limits_(limits), clock_(WallClock) {}

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
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("SELECT value FROM meta WHERE key = 'signing_key'"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kCorrupt, "the server database has no signing key");
  DALA_ASSIGN_OR_RETURN(crypto::SigningKey signing, crypto::SigningKeyFromSecret(st.BlobView(0)));
  st = db::Stmt();
  return std::unique_ptr<ServerCore>(new ServerCore(std::move(db), std::move(signing), limits));
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
  int64_t now = clock_();
  if (target == protocol::kPathHealth) {
    if (method != "GET") return Reply(405, v1::BAD_REQUEST, "use GET", now);
    return {200, "application/json",
            "{\"status\":\"ok\",\"server_key\":\"" + crypto::ToHex(signing_.public_key) + "\"}"};
  }
  if (target != protocol::kPathEnrol && target != protocol::kPathPush)
    return Reply(404, v1::BAD_REQUEST, "no such endpoint", now);
  if (method != "POST") return Reply(405, v1::BAD_REQUEST, "use POST", now);
  if (content_type.substr(0, content_type.find(';')) != protocol::kContentType)
    return Reply(415, v1::BAD_REQUEST, "the body must be application/x-protobuf", now);
  if (body.size() > limits_.max_body_bytes) return Reply(413, v1::TOO_LARGE, "the request body is too large", now);
  auto req = protocol::VerifyRequest(crypto::Bytes(body));
  if (!req.ok()) return Reply(400, v1::BAD_REQUEST, req.status().message(), now);
  if (req->server_key() != std::string_view(reinterpret_cast<const char*>(signing_.public_key.data()), 32))
    return Reply(403, v1::WRONG_SERVER, "this request was signed for another server", now);
  if (target == protocol::kPathEnrol) {
    if (!req->has_enrol()) return Reply(400, v1::BAD_REQUEST, "an enrol request was expected", now);
    return Enrol(req->device_key(), req->enrol().token());
  }
  if (!req->has_push()) return Reply(400, v1::BAD_REQUEST, "a push request was expected", now);
  if (static_cast<size_t>(req->push().envelopes_size()) > limits_.max_batch)
    return Reply(413, v1::TOO_LARGE, "too many reports in one push", now);
  return Push(req->device_key(), req->push().envelopes());
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

HttpResult ServerCore::Push(const std::string& device_key,
                            const google::protobuf::RepeatedPtrField<std::string>& envelopes) {
  // Outside the lock: check every envelope's device signature and compute its hash.
  struct Item {
    crypto::EnvelopeHeader h;
    crypto::Hash hash{};
    std::string reject;
  };
  std::vector<Item> items(static_cast<size_t>(envelopes.size()));
  for (int i = 0; i < envelopes.size(); ++i) {
    Item& it = items[static_cast<size_t>(i)];
    const std::string& env = envelopes[i];
    if (env.size() > limits_.max_envelope_bytes) {
      it.reject = "the sealed report is too large";
    } else if (Status st = crypto::VerifyEnvelope(B(env), &it.h); !st.ok()) {
      it.reject = st.message();
    } else if (std::memcmp(it.h.device_key.data(), device_key.data(), 32) != 0) {
      it.reject = "the sealed report was signed by another device";
    }
    it.hash = crypto::Blake2b256(B(env));
  }

  std::lock_guard lock(mu_);
  int64_t now = clock_();
  auto unavailable = [&] { return Reply(503, v1::UNAVAILABLE, "storage unavailable; try again later", now); };
  {
    auto dev = db_.Prepare("SELECT revoked FROM devices WHERE device_key = ?");
    if (!dev.ok()) return unavailable();
    dev->Bind(1, B(device_key));
    auto row = dev->Step();
    if (!row.ok()) return unavailable();
    if (!*row) return Reply(401, v1::UNKNOWN_DEVICE, "this device is not enrolled; enrol first", now);
    if (dev->Int(0) != 0) return Reply(403, v1::DEVICE_REVOKED, "this device was revoked by the organisation", now);
  }
  v1::Response resp;
  resp.set_status(v1::OK);
  resp.set_server_time_ms(now);
  db::Txn txn(db_);
  if (!txn.Begin().ok()) return unavailable();
  for (int i = 0; i < envelopes.size(); ++i) {
    const Item& it = items[static_cast<size_t>(i)];
    v1::PushResult* res = resp.add_results();
    res->set_report_id(it.h.report_id.data(), 16);
    res->set_version(it.h.version);
    if (!it.reject.empty()) {
      res->set_code(v1::REJECTED);
      res->set_reason(it.reject);
      continue;
    }
    auto find = db_.Prepare("SELECT content_hash, receipt FROM reports WHERE report_id = ? AND version = ?");
    if (!find.ok()) return unavailable();
    find->Bind(1, it.h.report_id).Bind(2, it.h.version);
    auto row = find->Step();
    if (!row.ok()) return unavailable();
    if (*row) {
      auto stored = find->BlobView(0);
      if (stored.size() == 32 && std::memcmp(stored.data(), it.hash.data(), 32) == 0) {
        res->set_code(v1::DUPLICATE);  // the same push again: one copy, the same receipt
        auto rc = find->BlobView(1);
        v1::SignedReceipt original;
        v1::Receipt fields;
        if (!original.ParseFromArray(rc.data(), static_cast<int>(rc.size())) ||
            !fields.ParseFromString(original.receipt()))
          return unavailable();
        res->set_sequence(fields.sequence());
        res->set_server_time_ms(fields.server_time_ms());
        res->set_receipt_signature(original.signature());
      } else {
        res->set_code(v1::REJECTED);
        res->set_reason("a different report with this id and version is already stored");
      }
      continue;
    }
    *find = db::Stmt();
    auto ins = db_.Prepare(
        "INSERT INTO reports(report_id, version, device_key, content_hash, envelope, received_ms) "
        "VALUES(?, ?, ?, ?, ?, ?)");
    if (!ins.ok()) return unavailable();
    ins->Bind(1, it.h.report_id).Bind(2, it.h.version).Bind(3, B(device_key)).Bind(4, it.hash);
    ins->Bind(5, B(envelopes[i])).Bind(6, now);
    if (!ins->Run().ok()) return unavailable();
    *ins = db::Stmt();
    auto seq = db_.Prepare("SELECT last_insert_rowid()");
    if (!seq.ok() || !seq->Step().ok()) return unavailable();
    v1::Receipt receipt;
    receipt.set_report_id(it.h.report_id.data(), 16);
    receipt.set_version(it.h.version);
    receipt.set_content_hash(it.hash.data(), 32);
    receipt.set_server_time_ms(now);
    receipt.set_sequence(static_cast<uint64_t>(seq->Int(0)));
    receipt.set_server_key(signing_.public_key.data(), 32);
    receipt.set_device_key(device_key);
    int64_t sequence = seq->Int(0);
    *seq = db::Stmt();
    std::string signed_receipt = protocol::SignReceipt(signing_, receipt);
    auto upd = db_.Prepare("UPDATE reports SET receipt = ? WHERE seq = ?");
    if (!upd.ok()) return unavailable();
    upd->Bind(1, B(signed_receipt)).Bind(2, sequence);
    if (!upd->Run().ok()) return unavailable();
    v1::SignedReceipt sent;
    sent.ParseFromString(signed_receipt);
    res->set_code(v1::STORED);
    res->set_sequence(receipt.sequence());
    res->set_server_time_ms(now);
    res->set_receipt_signature(sent.signature());
    Failpoint("server.push.stored");  // crash tests stop the server here, inside the transaction
  }
  {
    auto seen = db_.Prepare("UPDATE devices SET last_seen_ms = ? WHERE device_key = ?");
    if (!seen.ok()) return unavailable();
    seen->Bind(1, now).Bind(2, B(device_key));
    if (!seen->Run().ok()) return unavailable();
  }
  // Durable before any receipt leaves the server.
  if (!txn.Commit().ok()) return unavailable();
  return {200, kProto, resp.SerializeAsString()};
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
  std::string bytes = ex.SerializeAsString();
  DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(path, crypto::Bytes(bytes)));
  return static_cast<uint64_t>(ex.reports_size());
}

}  // namespace dala::server
