#ifndef SQLITE_HAS_CODEC
#define SQLITE_HAS_CODEC 1
#endif
#include "base/db.h"

#include <sodium.h>
#include <sqlite3.h>

#include <cstring>
#include <utility>

namespace dala::db {

Db::~Db() { Close(); }
Db::Db(Db&& o) noexcept
    : db_(std::exchange(o.db_, nullptr)), cache_(std::move(o.cache_)), lent_(std::move(o.lent_)) {
  o.cache_.clear();
  o.lent_.clear();
}
Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    Close();
    db_ = std::exchange(o.db_, nullptr);
    cache_ = std::move(o.cache_);
    lent_ = std::move(o.lent_);
    o.cache_.clear();
    o.lent_.clear();
  }
  return *this;
}

void Db::Close() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  cache_.clear();
  lent_.clear();
  if (db_ != nullptr) sqlite3_close_v2(db_);
  db_ = nullptr;
}

Status Db::Error(int rc, std::string_view action) const {
  std::string what(action);
  const char* detail = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
      return {Code::kCorrupt, what + ": the database does not match its key or is damaged"};
    case SQLITE_CORRUPT:
      return {Code::kCorrupt, what + ": the database is damaged (" + detail + "); restore it from a backup"};
    case SQLITE_FULL:
      return {Code::kNoSpace, what + ": the disk is full; free some space (nothing was lost)"};
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return {Code::kBusy, what + ": the store is busy in another process; try again"};
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return {Code::kPermission, what + ": the store is read-only here (" + detail + ")"};
    case SQLITE_CANTOPEN:
      return {Code::kIo, what + ": cannot open the database file (" + detail + ")"};
    case SQLITE_IOERR:
      return {Code::kIo, what + ": input/output error (" + detail + ")"};
    case SQLITE_NOMEM:
      return {Code::kNoMemory, what + ": out of memory"};
    case SQLITE_CONSTRAINT:
      return {Code::kInternal, what + ": constraint failed (" + detail + ")"};
    default:
      return {Code::kInternal, what + ": " + detail};
  }
}

Status Db::Exec(const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status::Ok() : Error(rc, "database statement failed");
}

Result<Stmt> Db::Prepare(std::string_view sql) {
  std::string key(sql);
  auto it = cache_.find(key);
  if (it != cache_.end() && lent_.count(it->second) == 0) {
    lent_.insert(it->second);
    return Stmt(this, it->second, /*cached=*/true);
  }
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &s, nullptr);
  if (rc != SQLITE_OK) return Error(rc, "database statement failed");
  if (it != cache_.end()) return Stmt(this, s, /*cached=*/false);  // the cached one is in use
  cache_.emplace(std::move(key), s);
  lent_.insert(s);
  return Stmt(this, s, /*cached=*/true);
}

int64_t Db::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }

int64_t Db::Changes() const { return sqlite3_changes(db_); }

namespace {

Result<std::string> QueryText(Db& db, const char* sql) {
  DALA_ASSIGN_OR_RETURN(Stmt st, db.Prepare(sql));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::string();
  return st.Text(0);
}

}  // namespace

Result<Db> Db::Open(const std::string& path, const SecretBuffer& key, bool create) {
  if (key.size() != 32) return Status(Code::kInternal, "database key must be 32 bytes");
  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) return db.Error(rc, "cannot open the store database");
  sqlite3_extended_result_codes(raw, 1);
  // Before the first read: another process may hold the file's lock for a moment (the last connection to
  // close checkpoints and removes the WAL under an exclusive lock), and without a busy handler that read
  // fails at once with SQLITE_BUSY.
  sqlite3_busy_timeout(raw, 5000);

  // Before keying: if plain libsqlite3 was loaded first, its sqlite3_* symbols win, PRAGMA key is ignored
  // (plaintext would be written) and sqlite3_key() crashes. SQLCipher answers cipher_version unkeyed.
  DALA_ASSIGN_OR_RETURN(std::string codec, QueryText(db, "PRAGMA cipher_version;"));
  if (codec.empty())
    return Status(Code::kNotEncrypted,
                  "SQLCipher is not active in this process (plain SQLite was loaded first); refusing to continue");

  // Raw key: "x'<64 hex>'" skips SQLCipher's own KDF (the key already comes from Argon2id or a keystore).
  SecretBuffer keyspec(2 + 64 + 1 + 1);
  keyspec.data()[0] = 'x';
  keyspec.data()[1] = '\'';
  sodium_bin2hex(reinterpret_cast<char*>(keyspec.data()) + 2, 65, key.data(), key.size());
  keyspec.data()[66] = '\'';
  rc = sqlite3_key(raw, keyspec.data(), 67);
  if (rc != SQLITE_OK) return db.Error(rc, "cannot set the database key");

  // Settings are set explicitly and read back: unknown cipher pragmas are silently ignored, and a process
  // that loaded plain libsqlite3 first ignores PRAGMA key and would write plaintext.
  DALA_RETURN_IF_ERROR(db.Exec("PRAGMA cipher_page_size = 4096;"));
  DALA_ASSIGN_OR_RETURN(std::string cipher_version, QueryText(db, "PRAGMA cipher_version;"));
  if (cipher_version.empty())
    return Status(Code::kNotEncrypted,
                  "SQLCipher is not active in this process (plain SQLite was loaded?); refusing to continue");
  DALA_ASSIGN_OR_RETURN(std::string page_size, QueryText(db, "PRAGMA cipher_page_size;"));
  if (page_size != "4096")
    return Status(Code::kNotEncrypted, "SQLCipher did not accept the page size setting; refusing to continue");

  // First real read: a wrong key or a damaged first page shows up here as SQLITE_NOTADB.
  DALA_ASSIGN_OR_RETURN(std::string ignored, QueryText(db, "SELECT count(*) FROM sqlite_master;"));
  DALA_ASSIGN_OR_RETURN(std::string mode, QueryText(db, "PRAGMA journal_mode = WAL;"));
  if (mode != "wal") return Status(Code::kIo, "the store database cannot use write-ahead logging here");
  DALA_RETURN_IF_ERROR(db.Exec(
      "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;"
      "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8192;"));
  return db;
}

Status Db::CheckpointTruncate() {
  int log_frames = 0, done_frames = 0;
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log_frames, &done_frames);
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return Status(Code::kBusy, "the store's log is in use");
  if (rc != SQLITE_OK) return Error(rc, "cannot checkpoint the store's log");
  return Status::Ok();
}

Status Db::ExportTo(const std::string& path, const SecretBuffer& key) {
  if (key.size() != 32) return Status(Code::kInternal, "database key must be 32 bytes");
  DALA_ASSIGN_OR_RETURN(std::string user_version, QueryText(*this, "PRAGMA user_version;"));
  // ATTACH ... KEY "x'<hex>'": a raw key, as at open; the statement is built in locked memory.
  std::string head = "ATTACH DATABASE ? AS rekey_next KEY ?;";
  SecretBuffer keyspec(2 + 64 + 1);
  keyspec.data()[0] = 'x';
  keyspec.data()[1] = '\'';
  sodium_bin2hex(reinterpret_cast<char*>(keyspec.data()) + 2, 65, key.data(), key.size());
  keyspec.data()[66] = '\'';
  {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db_, head.c_str(), -1, &st, nullptr);
    if (rc != SQLITE_OK) return Error(rc, "cannot prepare the copy of the database");
    sqlite3_bind_text(st, 1, path.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, reinterpret_cast<const char*>(keyspec.data()), 67, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Error(rc, "cannot create the copy of the database");
  }
  struct Detach {
    Db* db;
    ~Detach() { sqlite3_exec(db->db_, "DETACH DATABASE rekey_next;", nullptr, nullptr, nullptr); }
  } detach{this};
  DALA_RETURN_IF_ERROR(Exec("PRAGMA rekey_next.cipher_page_size = 4096;"));
  DALA_ASSIGN_OR_RETURN(std::string page_size, QueryText(*this, "PRAGMA rekey_next.cipher_page_size;"));
  if (page_size != "4096") return Status(Code::kNotEncrypted, "SQLCipher did not accept the copy's page size");
  DALA_RETURN_IF_ERROR(Exec("SELECT sqlcipher_export('rekey_next');"));
  std::string set_version = "PRAGMA rekey_next.user_version = " + std::to_string(std::stoll(user_version)) + ";";
  return Exec(set_version.c_str());
}

Status Db::BackupTo(const std::string& path, const SecretBuffer& key) {
  DALA_ASSIGN_OR_RETURN(Db copy, Db::Open(path, key, true));
  sqlite3_backup* b = sqlite3_backup_init(copy.db_, "main", db_, "main");
  if (b == nullptr) return copy.Error(sqlite3_errcode(copy.db_), "cannot start the copy of the database");
  const int rc = sqlite3_backup_step(b, -1);  // every page under one read transaction of this database
  const int finished = sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) return Error(rc, "cannot copy the database");
  if (finished != SQLITE_OK) return copy.Error(finished, "cannot finish the copy of the database");
  DALA_RETURN_IF_ERROR(copy.CheckpointTruncate());
  DALA_RETURN_IF_ERROR(copy.Exec("PRAGMA journal_mode = DELETE;"));  // one self-contained file
  copy.Close();
  return Status::Ok();
}

void Stmt::Release() {
  if (s_ == nullptr) return;
  if (cached_) {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    db_->lent_.erase(s_);
  } else {
    sqlite3_finalize(s_);
  }
  s_ = nullptr;
}
Stmt::~Stmt() { Release(); }
Stmt::Stmt(Stmt&& o) noexcept : db_(o.db_), s_(std::exchange(o.s_, nullptr)), cached_(o.cached_) {}
Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    Release();
    db_ = o.db_;
    s_ = std::exchange(o.s_, nullptr);
    cached_ = o.cached_;
  }
  return *this;
}

Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(s_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, std::span<const uint8_t> blob) {
  // A zero-length blob must stay a blob, not NULL.
  static const uint8_t kEmpty = 0;
  sqlite3_bind_blob(s_, i, blob.empty() ? &kEmpty : blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::BindText(int i, std::string_view t) {
  sqlite3_bind_text(s_, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::BindDouble(int i, double v) {
  sqlite3_bind_double(s_, i, v);
  return *this;
}
Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(s_, i);
  return *this;
}

Result<bool> Stmt::Step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // Our statements are fixed and tested, so a generic error while stepping is SQLCipher refusing a page
  // whose authentication code does not match (3.4 reports that as SQLITE_ERROR, not SQLITE_CORRUPT).
  if ((rc & 0xff) == SQLITE_ERROR)
    return Status(Code::kCorrupt,
                  "a page of the store database is damaged or was altered; run a check and restore from a backup");
  return db_->Error(rc, "database statement failed");
}

Status Stmt::Run() {
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return Status::Ok();
  }
}

void Stmt::Reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

int64_t Stmt::Int(int col) const { return sqlite3_column_int64(s_, col); }
double Stmt::Double(int col) const { return sqlite3_column_double(s_, col); }
std::span<const uint8_t> Stmt::BlobView(int col) const {
  const void* p = sqlite3_column_blob(s_, col);
  int n = sqlite3_column_bytes(s_, col);
  return {static_cast<const uint8_t*>(p), static_cast<size_t>(n)};
}
std::vector<uint8_t> Stmt::Blob(int col) const {
  auto v = BlobView(col);
  return {v.begin(), v.end()};
}
std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(s_, col);
  int n = sqlite3_column_bytes(s_, col);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
}
bool Stmt::IsNull(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

Status Txn::Begin() {
  DALA_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE;"));
  open_ = true;
  return Status::Ok();
}

Status Txn::Commit() {
  Status st = db_.Exec("COMMIT;");
  if (st.ok()) open_ = false;
  return st;
}

Txn::~Txn() {
  if (open_) (void)db_.Exec("ROLLBACK;");
}

Status Migrate(Db& db, std::span<const char* const> steps, std::string_view too_new) {
  int current = 0;
  {
    DALA_ASSIGN_OR_RETURN(Stmt st, db.Prepare("PRAGMA user_version;"));
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    current = row ? static_cast<int>(st.Int(0)) : 0;
  }
  if (current > static_cast<int>(steps.size())) return {Code::kState, std::string(too_new)};
  for (size_t v = static_cast<size_t>(current); v < steps.size(); ++v) {
    Txn txn(db);
    DALA_RETURN_IF_ERROR(txn.Begin());
    DALA_RETURN_IF_ERROR(db.Exec(steps[v]));
    std::string set_version = "PRAGMA user_version = " + std::to_string(v + 1) + ";";
    DALA_RETURN_IF_ERROR(db.Exec(set_version.c_str()));
    DALA_RETURN_IF_ERROR(txn.Commit());
  }
  return Status::Ok();
}

}  // namespace dala::db
