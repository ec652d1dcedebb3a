// RAII over SQLCipher: the connection, statements and transactions. Only this file and db.cc include
// <sqlite3.h>, which must be SQLCipher's (libsqlite3 must never be linked: docs/platform.md).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/secret.h"
#include "base/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace dala::db {

class Stmt;

class Db {
 public:
  // A database SQLCipher 3 wrote (Dala 0.1): converted once to SQLCipher 4's format as it opens (crash-safe,
  // nothing lost; the old file's bytes overwritten once replaced), or refused with kState and left exactly as
  // it is. Only the phone's store converts; every other database refuses.
  enum class Sqlcipher3 { kConvert, kRefuse };
  // The name of the converted copy while it is written (`path` + this); removed when a conversion fails.
  static constexpr const char* kConvertSuffix = "-convert";
  // Opens `path` with a 32-byte raw key and verifies that encryption is active (the codec answers and
  // reads back every setting; defensive mode, untrusted schema) before anything else is read or written.
  static Result<Db> Open(const std::string& path, const SecretBuffer& key, bool create,
                         Sqlcipher3 sqlcipher3 = Sqlcipher3::kRefuse);
  Db() = default;
  ~Db();
  Db(Db&& other) noexcept;
  Db& operator=(Db&& other) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Status Exec(const char* sql);
  // Statements are prepared once and cached per connection; a Stmt hands its statement back (reset) when
  // it goes. If the cached one is in use, a fresh statement is prepared and finalized after use.
  Result<Stmt> Prepare(std::string_view sql);
  Status Error(int rc, std::string_view action) const;  // maps a SQLite result code
  int64_t Changes() const;
  int64_t LastInsertRowId() const;  // the rowid of the last row this connection inserted
  // Copies every page of the write-ahead log into the database and truncates the log to zero bytes, so
  // that no older page image (erased content) remains in it. kBusy if another connection is reading.
  Status CheckpointTruncate();
  // Writes a copy of the whole database (schema, rows, user_version) to a new file at `path` encrypted
  // under `key` (sqlcipher_export), with the same settings. The copy is complete once this returns.
  Status ExportTo(const std::string& path, const SecretBuffer& key);
  // Copies this database, as one consistent snapshot, to a new file at `path` under the same `key` (SQLite's
  // backup API, all pages in one step: other connections keep writing meanwhile, the copy shows none of
  // what they commit after it began). The copy is complete, and has no -wal file, once this returns.
  Status BackupTo(const std::string& path, const SecretBuffer& key);
  // kNotEncrypted if the file starts with SQLite's plaintext header (a process where plain SQLite won). Read
  // through SQLite's handle of the file, not a descriptor of its own.
  Status CheckFileEncrypted();
  void Close();
  bool is_open() const { return db_ != nullptr; }

 private:
  friend class Stmt;
  explicit Db(sqlite3* db) : db_(db) {}
  // Keys and checks a connection in one format (db.cc's Format), up to the first read; no tuning.
  static Result<Db> OpenAs(const std::string& path, const SecretBuffer& key, bool create, int format);
  static Status ConvertFromSqlcipher3(const std::string& path, const SecretBuffer& key);
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
  // Cached statements a live Stmt holds: not handed out twice (two Stmts on one statement would reset
  // and rebind each other's).
  mutable std::unordered_set<sqlite3_stmt*> lent_;
};

class Stmt {
 public:
  Stmt() = default;
  ~Stmt();
  Stmt(Stmt&& other) noexcept;
  Stmt& operator=(Stmt&& other) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Bind indexes start at 1.
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, std::span<const uint8_t> blob);
  Stmt& BindText(int i, std::string_view text);
  Stmt& BindDouble(int i, double v);
  Stmt& BindNull(int i);

  // true: a row is ready; false: done.
  Result<bool> Step();
  Status Run();  // steps to completion
  void Reset();

  int64_t Int(int col) const;
  double Double(int col) const;
  std::vector<uint8_t> Blob(int col) const;
  std::span<const uint8_t> BlobView(int col) const;
  std::string Text(int col) const;
  bool IsNull(int col) const;

 private:
  friend class Db;
  Stmt(const Db* db, sqlite3_stmt* s, bool cached) : db_(db), s_(s), cached_(cached) {}
  void Release();
  const Db* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
  bool cached_ = false;
};

// BEGIN IMMEDIATE on construction; rolls back unless Commit() succeeded.
class Txn {
 public:
  explicit Txn(Db& db) : db_(db) {}
  Status Begin();
  Status Commit();
  ~Txn();
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

 private:
  Db& db_;
  bool open_ = false;
};

// Forward-only schema migrations, the one runner for every database: PRAGMA user_version counts the steps
// applied; each step left runs in its own transaction together with the version bump. A database whose
// version is past the last step was written by a newer program: kState with `too_new` as the message.
Status Migrate(Db& db, std::span<const char* const> steps, std::string_view too_new);

inline std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace dala::db
