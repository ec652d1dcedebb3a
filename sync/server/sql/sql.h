// One SQL interface for dala-server's two storage engines (issue 16): the embedded SQLCipher database
// (one node, nothing to set up) and PostgreSQL (several nodes on one database). The server's statements are
// written once, in the SQL both engines take (`?` parameters, standard types: INTEGER, BLOB, TEXT), and run
// through this interface; what differs between the engines is behind Dialect.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace dala::server::sql {

enum class Engine { kSqlite, kPostgres };

// One statement's execution, as the engine gives it. Not used directly: see Stmt.
class StmtImpl {
 public:
  virtual ~StmtImpl() = default;
  virtual void BindInt(int i, int64_t v) = 0;
  virtual void BindBlob(int i, std::span<const uint8_t> v) = 0;
  virtual void BindText(int i, std::string_view v) = 0;
  virtual void BindNull(int i) = 0;
  virtual Result<bool> Step() = 0;
  virtual void Reset() = 0;  // to run again; bindings stay
  virtual int64_t Int(int col) const = 0;
  virtual std::span<const uint8_t> BlobView(int col) const = 0;
  virtual std::string Text(int col) const = 0;
  virtual bool IsNull(int col) const = 0;
};

// A prepared statement: bind (indexes from 1), then Step through its rows. Column values are valid until
// the next Step. Moves only; handed back to its connection when it goes.
class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(std::unique_ptr<StmtImpl> impl) : impl_(std::move(impl)) {}

  Stmt& Bind(int i, int64_t v) {
    impl_->BindInt(i, v);
    return *this;
  }
  Stmt& Bind(int i, std::span<const uint8_t> v) {
    impl_->BindBlob(i, v);
    return *this;
  }
  Stmt& BindText(int i, std::string_view v) {
    impl_->BindText(i, v);
    return *this;
  }
  Stmt& BindNull(int i) {
    impl_->BindNull(i);
    return *this;
  }
  Result<bool> Step() { return impl_->Step(); }  // true: a row is ready; false: done
  Status Run();                                   // steps to completion
  void Reset() { impl_->Reset(); }                // to run again, with the bindings it has
  int64_t Int(int col) const { return impl_->Int(col); }
  std::span<const uint8_t> BlobView(int col) const { return impl_->BlobView(col); }
  std::vector<uint8_t> Blob(int col) const {
    auto b = BlobView(col);
    return {b.begin(), b.end()};
  }
  std::string Text(int col) const { return impl_->Text(col); }
  bool IsNull(int col) const { return impl_->IsNull(col); }

 private:
  std::unique_ptr<StmtImpl> impl_;
};

// How a transaction begins. kWrite: it will write, and takes the write lock at once (SQLite's BEGIN
// IMMEDIATE; on PostgreSQL one advisory lock that every node's writing transactions take). kRead: one snapshot
// for every read in it (REPEATABLE READ on PostgreSQL), no lock held against writers.
enum class TxnKind { kWrite, kRead };

class Connection {
 public:
  virtual ~Connection() = default;
  virtual Engine engine() const = 0;
  // Statements without parameters, several separated by ';' (schema steps).
  virtual Status Exec(std::string_view sql) = 0;
  virtual Result<Stmt> Prepare(std::string_view sql) = 0;
  // Rows the last INSERT, UPDATE or DELETE changed.
  virtual int64_t Changes() const = 0;
  virtual Status Begin(TxnKind kind) = 0;
  virtual Status Commit() = 0;
  virtual Status Rollback() = 0;

  // The two statements whose words differ between the engines. `rest` is "table(columns) VALUES(...)".
  // An insert that does nothing when the key is held already:
  std::string InsertOrIgnore(std::string_view rest) const;
  // An insert that replaces the row holding key `conflict` (its columns, comma-separated), setting `set`
  // (the other columns, comma-separated) to the new values:
  std::string Upsert(std::string_view rest, std::string_view conflict, std::string_view set) const;
};

// A transaction for its scope: rolled back unless Commit() succeeded.
class Txn {
 public:
  explicit Txn(Connection& c) : c_(c) {}
  Status Begin(TxnKind kind = TxnKind::kWrite);
  Status Commit();
  ~Txn();
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

 private:
  Connection& c_;
  bool open_ = false;
};

// PostgreSQL: `url` is a libpq connection URI (postgresql://USER@HOST:PORT/DB?...), the password from
// the URI or the environment (PGPASSWORD) as libpq reads it. kIo when the server cannot be reached.
Result<std::unique_ptr<Connection>> ConnectPostgres(const std::string& url);

// `?` placeholders as PostgreSQL's `$1`, `$2`... (none inside quoted strings or identifiers). Exposed for
// tests.
std::string NumberPlaceholders(std::string_view sql);

}  // namespace dala::server::sql
