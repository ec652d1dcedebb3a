#ifndef SQLITE_HAS_CODEC
#define SQLITE_HAS_CODEC 1
#endif
#include "base/db.h"

#include <sodium.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "base/failpoint.h"
#include "base/fsutil.h"

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

// How a file is encrypted. kCurrent: SQLCipher 4's settings (4096-byte pages, HMAC-SHA512 per page); every
// database is written so. kSqlcipher3: how Dala 0.1 wrote its stores with SQLCipher 3 (4096-byte pages,
// HMAC-SHA1), read only to convert them once.
enum class Format { kCurrent, kSqlcipher3 };

struct Setting {
  const char* name;
  const char* value;
};
constexpr Setting kCurrentSettings[] = {
    {"cipher_page_size", "4096"},
    {"cipher_hmac_algorithm", "HMAC_SHA512"},
    {"cipher_kdf_algorithm", "PBKDF2_HMAC_SHA512"},  // derives the HMAC key from the raw key (2 rounds)
    {"cipher_use_hmac", "1"},
    {"cipher_plaintext_header_size", "0"},
};
constexpr Setting kSqlcipher3Settings[] = {
    {"cipher_compatibility", "3"},  // SQLCipher 3's defaults: HMAC-SHA1, 1024-byte pages...
    {"cipher_page_size", "4096"},   // ...but 0.1 used 4096-byte pages
    {"cipher_hmac_algorithm", "HMAC_SHA1"},
    {"cipher_use_hmac", "1"},
    {"cipher_plaintext_header_size", "0"},
};

// Sets each cipher setting of `schema` and reads it back: SQLCipher ignores a setting it does not know,
// and a process that loaded plain libsqlite3 first ignores them all (and would write plaintext).
Status ApplyFormat(Db& db, const std::string& schema, Format format) {
  std::span<const Setting> settings = format == Format::kCurrent ? std::span<const Setting>(kCurrentSettings)
                                                                 : std::span<const Setting>(kSqlcipher3Settings);
  for (const Setting& s : settings) {
    const std::string name = schema + "." + s.name;
    DALA_RETURN_IF_ERROR(db.Exec(("PRAGMA " + name + " = " + s.value + ";").c_str()));
    if (std::string_view(s.name) == "cipher_compatibility") continue;  // write-only: its effects are read back
    DALA_ASSIGN_OR_RETURN(std::string got, QueryText(db, ("PRAGMA " + name + ";").c_str()));
    if (got != s.value)
      return Status(Code::kNotEncrypted, std::string("SQLCipher did not accept the setting ") + s.name +
                                             " (SQLCipher 4 is needed); refusing to continue");
  }
  return Status::Ok();
}

// "x'<64 hex>'": a raw key, which skips SQLCipher's own KDF (the key already comes from Argon2id or a
// keystore). Built in locked memory.
SecretBuffer RawKeySpec(const SecretBuffer& key) {
  SecretBuffer spec(2 + 64 + 1 + 1);
  spec.data()[0] = 'x';
  spec.data()[1] = '\'';
  sodium_bin2hex(reinterpret_cast<char*>(spec.data()) + 2, 65, key.data(), key.size());
  spec.data()[66] = '\'';
  return spec;
}

}  // namespace

Result<Db> Db::OpenAs(const std::string& path, const SecretBuffer& key, bool create, int format) {
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

  SecretBuffer keyspec = RawKeySpec(key);
  rc = sqlite3_key(raw, keyspec.data(), 67);
  if (rc != SQLITE_OK) return db.Error(rc, "cannot set the database key");
  // SQLCipher 4 writes its own log to stderr (logcat on Android): nothing of it, whatever happens. Set once
  // the key is (the first key in a process starts SQLCipher's defaults, the log level among them).
  DALA_RETURN_IF_ERROR(db.Exec("PRAGMA cipher_log_level = NONE;"));
  DALA_ASSIGN_OR_RETURN(std::string log_level, QueryText(db, "PRAGMA cipher_log_level;"));
  if (log_level != "NONE") return Status(Code::kNotEncrypted, "SQLCipher 4 is needed; refusing to continue");
  DALA_RETURN_IF_ERROR(ApplyFormat(db, "main", static_cast<Format>(format)));
  // cipher_memory_security is the process's, not this connection's: left as the app set it (off by
  // default; docs/platform.md says what it costs and why).

  // Defensive: SQL cannot corrupt the file on purpose (writable_schema, page-level tricks); untrusted
  // schema: functions with side effects never run from a view or trigger stored in the file.
  int defensive = 0;
  sqlite3_db_config(raw, SQLITE_DBCONFIG_DEFENSIVE, 1, &defensive);
  int trusted = 1;
  sqlite3_db_config(raw, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, &trusted);
  if (defensive != 1 || trusted != 0)
    return Status(Code::kInternal, "SQLite did not accept defensive mode; refusing to continue");

  // First real read: a wrong key or a damaged first page shows up here as SQLITE_NOTADB.
  DALA_ASSIGN_OR_RETURN(std::string ignored, QueryText(db, "SELECT count(*) FROM sqlite_master;"));
  return db;
}

Result<Db> Db::Open(const std::string& path, const SecretBuffer& key, bool create, Sqlcipher3 sqlcipher3) {
  auto opened = OpenAs(path, key, create, static_cast<int>(Format::kCurrent));
  if (!opened.ok() && opened.status().code() == Code::kCorrupt && !create) {
    // Written by SQLCipher 3 (Dala 0.1)? Then it opens with SQLCipher 3's settings; a wrong key or a
    // damaged file does not. Decided again under the conversion's lock, and this connection closed first:
    // a connection kept open would keep the converting process from changing the file.
    bool sqlcipher3_file = false;
    {
      auto old = OpenAs(path, key, false, static_cast<int>(Format::kSqlcipher3));
      if (!old.ok() && old.status().code() != Code::kCorrupt) return old.status();
      sqlcipher3_file = old.ok();
    }
    if (sqlcipher3_file) {
      Failpoint("sqlcipher3.found");
      if (sqlcipher3 == Sqlcipher3::kRefuse)
        return Status(Code::kState, "this database was written by SQLCipher 3 (Dala 0.1); it was not changed");
      DALA_RETURN_IF_ERROR(ConvertFromSqlcipher3(path, key));
    }
    // Converted here or by another process meanwhile (then the current settings open it), or not SQLCipher
    // 3 at all: a wrong key or a damaged file, and the first answer stands.
    auto again = OpenAs(path, key, false, static_cast<int>(Format::kCurrent));
    if (again.ok() || again.status().code() != Code::kCorrupt) opened = std::move(again);
  }
  if (!opened.ok()) return opened.status();
  Db db = std::move(*opened);
  DALA_ASSIGN_OR_RETURN(std::string mode, QueryText(db, "PRAGMA journal_mode = WAL;"));
  if (mode != "wal") return Status(Code::kIo, "the store database cannot use write-ahead logging here");
  DALA_RETURN_IF_ERROR(db.Exec(
      "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;"
      "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8192;"));
  return db;
}

namespace {

// Runs `step` until it is not kBusy, for at most about five seconds: a process that is only looking at the
// file (opening it, finding it is not SQLCipher 4's) holds its lock for a moment, and a change of journal
// mode does not wait for SQLite's busy handler.
template <typename Step>
Status RetryWhileBusy(Step step) {
  for (int attempt = 0;; ++attempt) {
    Status st = step();
    if (st.code() != Code::kBusy || attempt == 250) return st;
    ::usleep(20 * 1000);
  }
}

// The conversion's lock: an exclusive flock on a file of its own beside the database (never on the
// database: closing any descriptor of the database would drop the POSIX locks SQLite holds on it for every
// connection of this process). The holder removes the file before letting go; a process that finds it
// locked a removed file takes the lock again on the file now there. Waits at most two minutes (a large
// store converts in seconds), then kBusy.
class ConversionLock {
 public:
  static Result<ConversionLock> Take(const std::string& lock_path) {
    for (int attempt = 0;; ++attempt) {
      int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0) return fs::FromErrno(errno, "cannot create", lock_path);
      ConversionLock lock("", fd);  // removes nothing unless it holds the lock on the file at lock_path
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
        struct stat held {}, now {};
        if (fstat(fd, &held) == 0 && stat(lock_path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
            held.st_dev == now.st_dev) {
          lock.path_ = lock_path;
          return lock;
        }
        // else a file its holder removed: locked for nothing; taken again on the file now there
      } else if (errno != EWOULDBLOCK && errno != EINTR) {
        return fs::FromErrno(errno, "cannot lock", lock_path);
      }
      if (attempt == 6000)
        return Status(Code::kBusy, "the store is being upgraded by another process; try again when it is done");
      ::usleep(20 * 1000);
    }
  }
  ConversionLock(ConversionLock&& o) noexcept : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)) {}
  ConversionLock& operator=(ConversionLock&&) = delete;
  ~ConversionLock() {
    if (fd_ < 0) return;
    if (!path_.empty()) ::unlink(path_.c_str());  // still locked: no one else holds this file
    ::close(fd_);
  }

 private:
  ConversionLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

}  // namespace

// Converts a database SQLCipher 3 wrote into SQLCipher 4's format, in place and crash-safe: the whole
// database is copied (sqlcipher_export) to `path`-convert under the same key, checked, put in write-ahead
// mode, synced, and renamed over `path`; then the old file's bytes, still reachable through a descriptor,
// are overwritten. Killed at any point, `path` is the old file, whole, or the new one, whole; a partial copy
// is removed (here on failure, or by the next attempt). Everything under the conversion's lock, and decided
// again under it: two processes (or threads) opening the store at once convert it once, and none renames a
// stale copy over a converted, since-written store.
Status Db::ConvertFromSqlcipher3(const std::string& path, const SecretBuffer& key) {
  const std::string next = path + kConvertSuffix;
  DALA_ASSIGN_OR_RETURN(ConversionLock lock, ConversionLock::Take(next + ".lock"));
  Db old;
  {
    // `path` is renamed only under this lock: SQLCipher 3's still, or converted by whoever held it before.
    auto reopened = OpenAs(path, key, false, static_cast<int>(Format::kSqlcipher3));
    if (!reopened.ok()) return reopened.status().code() == Code::kCorrupt ? Status::Ok() : reopened.status();
    old = std::move(*reopened);
  }
  // The old file itself, to overwrite once it is replaced. Opened only now that it is known to be SQLCipher
  // 3's: no SQLCipher 4 connection of this process holds a lock on it that closing this could drop.
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fs::FromErrno(errno, "cannot open", path);
  struct CloseOld {
    int fd;
    Db* old;
    ~CloseOld() {  // the connection before the descriptor
      old->Close();
      ::close(fd);
    }
  } close_old{fd, &old};
  Failpoint("sqlcipher3.locked");
  // The old file whole in itself (no -wal beside it) before the copy: nothing of it is left to a log
  // that the new file could be mistaken for. The checkpoint waits for readers (SQLite's busy handler).
  DALA_RETURN_IF_ERROR(old.CheckpointTruncate());
  DALA_RETURN_IF_ERROR(RetryWhileBusy([&old]() -> Status {
    DALA_ASSIGN_OR_RETURN(std::string mode, QueryText(old, "PRAGMA journal_mode = DELETE;"));
    if (mode == "delete") return Status::Ok();
    return Status(Code::kBusy, "cannot convert the database: another process keeps its log in use");
  }));
  struct RemoveCopy {
    const std::string& next;
    bool keep = false;
    ~RemoveCopy() {
      if (!keep)
        for (const char* suffix : {"", "-journal", "-wal", "-shm"}) (void)fs::RemoveFile(next + suffix);
    }
  } remove_copy{next};
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) DALA_RETURN_IF_ERROR(fs::RemoveFile(next + suffix));
  DALA_RETURN_IF_ERROR(fs::CreatePrivateFile(next));
  DALA_RETURN_IF_ERROR(old.ExportTo(next, key));
  Failpoint("sqlcipher3.exported");
  old.Close();
  {
    DALA_ASSIGN_OR_RETURN(Db check, OpenAs(next, key, false, static_cast<int>(Format::kCurrent)));
    DALA_ASSIGN_OR_RETURN(std::string ok, QueryText(check, "PRAGMA quick_check;"));
    if (ok != "ok") return Status(Code::kCorrupt, "the converted copy of the database does not check out");
    // In write-ahead mode before it is renamed into place: processes waiting to open the store would
    // otherwise all switch it at once, and a switch that finds another reader fails at once (SQLite does
    // not wait when a read must become a write).
    DALA_ASSIGN_OR_RETURN(std::string mode, QueryText(check, "PRAGMA journal_mode = WAL;"));
    if (mode != "wal") return Status(Code::kIo, "the store database cannot use write-ahead logging here");
  }  // the last connection: the copy's log is checkpointed into it and removed
  DALA_RETURN_IF_ERROR(fs::SyncFile(next));
  Failpoint("sqlcipher3.before_rename");
  if (::rename(next.c_str(), path.c_str()) != 0) return fs::FromErrno(errno, "cannot replace", path);
  remove_copy.keep = true;
  auto slash = path.rfind('/');
  DALA_RETURN_IF_ERROR(fs::SyncDirectory(slash == std::string::npos ? "." : path.substr(0, slash)));
  Failpoint("sqlcipher3.renamed");
  // Converted. The old file's blocks would stay readable under the same key until reused: overwritten
  // through the descriptor (best effort from here: the conversion is done either way; on flash and
  // copy-on-write file systems old blocks may survive, which re-keying answers).
  (void)fs::OverwriteOpenFile(fd, path);
  return Status::Ok();
}

Status Db::CheckFileEncrypted() {
  // Read through SQLite's own handle of the file: opening and closing another descriptor of it would drop
  // the POSIX locks SQLite holds on it for every connection of this process.
  sqlite3_file* file = nullptr;
  if (sqlite3_file_control(db_, "main", SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK || file == nullptr ||
      file->pMethods == nullptr)
    return Status(Code::kInternal, "cannot reach the store database's file");
  char head[16] = {0};
  const int rc = file->pMethods->xRead(file, head, sizeof head, 0);
  if (rc == SQLITE_IOERR_SHORT_READ) return Status::Ok();  // shorter than a header: not a plaintext database
  if (rc != SQLITE_OK) return Error(rc, "cannot read the store database");
  static const char kPlainHeader[16] = "SQLite format 3";  // 15 chars + NUL: the plaintext file header
  if (std::memcmp(head, kPlainHeader, sizeof head) == 0)
    return Status(Code::kNotEncrypted, "the store database is not encrypted; refusing to continue");
  return Status::Ok();
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
  SecretBuffer keyspec = RawKeySpec(key);
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
  DALA_RETURN_IF_ERROR(ApplyFormat(*this, "rekey_next", Format::kCurrent));  // whatever this one's format
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
  auto version = [&db]() -> Result<int> {
    DALA_ASSIGN_OR_RETURN(Stmt st, db.Prepare("PRAGMA user_version;"));
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    const int64_t v = row ? st.Int(0) : 0;
    return v < 0 || v > INT32_MAX ? -1 : static_cast<int>(v);
  };
  DALA_ASSIGN_OR_RETURN(int now, version());
  if (now < 0) return {Code::kCorrupt, "the database's schema version is not one Dala writes"};
  if (now > static_cast<int>(steps.size())) return {Code::kState, std::string(too_new)};
  if (now == static_cast<int>(steps.size())) return Status::Ok();  // the usual case: no write lock taken
  // Each step reads the version again inside its own write transaction: two processes opening an old
  // database at once apply each step once (the second sees the first's version once the lock is its).
  for (;;) {
    Txn txn(db);
    DALA_RETURN_IF_ERROR(txn.Begin());
    DALA_ASSIGN_OR_RETURN(int current, version());
    if (current < 0) return {Code::kCorrupt, "the database's schema version is not one Dala writes"};
    if (current > static_cast<int>(steps.size())) return {Code::kState, std::string(too_new)};
    if (current == static_cast<int>(steps.size())) return Status::Ok();  // nothing written: rolled back
    DALA_RETURN_IF_ERROR(db.Exec(steps[current]));
    std::string set_version = "PRAGMA user_version = " + std::to_string(current + 1) + ";";
    DALA_RETURN_IF_ERROR(db.Exec(set_version.c_str()));
    DALA_RETURN_IF_ERROR(txn.Commit());
  }
}

}  // namespace dala::db
