// The embedded engine behind sql::Connection: a SQLCipher database (db::Db), one node.
#pragma once

#include "base/db.h"
#include "server/sql/sql.h"

namespace dala::server::sql {

class SqliteConnection : public Connection {
 public:
  explicit SqliteConnection(db::Db db) : db_(std::move(db)) {}
  Engine engine() const override { return Engine::kSqlite; }
  Status Exec(std::string_view sql) override;
  Result<Stmt> Prepare(std::string_view sql) override;
  int64_t Changes() const override { return db_.Changes(); }
  Status Begin(TxnKind kind) override;
  Status Commit() override { return db_.Exec("COMMIT;"); }
  Status Rollback() override { return db_.Exec("ROLLBACK;"); }
  db::Db& db() { return db_; }  // what only SQLite has (its backup API)

 private:
  db::Db db_;
};

}  // namespace dala::server::sql
