#include "server/sql/sqlite_connection.h"

#include <string>

namespace dala::server::sql {
namespace {

class SqliteStmt : public StmtImpl {
 public:
  explicit SqliteStmt(db::Stmt s) : s_(std::move(s)) {}
  void BindInt(int i, int64_t v) override { s_.Bind(i, v); }
  void BindBlob(int i, std::span<const uint8_t> v) override { s_.Bind(i, v); }
  void BindText(int i, std::string_view v) override { s_.BindText(i, v); }
  void BindNull(int i) override { s_.BindNull(i); }
  Result<bool> Step() override { return s_.Step(); }
  void Reset() override { s_.Reset(); }
  int64_t Int(int col) const override { return s_.Int(col); }
  std::span<const uint8_t> BlobView(int col) const override { return s_.BlobView(col); }
  std::string Text(int col) const override { return s_.Text(col); }
  bool IsNull(int col) const override { return s_.IsNull(col); }

 private:
  db::Stmt s_;
};

}  // namespace

Status SqliteConnection::Exec(std::string_view sql) { return db_.Exec(std::string(sql).c_str()); }

Result<Stmt> SqliteConnection::Prepare(std::string_view sql) {
  DALA_ASSIGN_OR_RETURN(db::Stmt s, db_.Prepare(sql));
  return Stmt(std::make_unique<SqliteStmt>(std::move(s)));
}

Status SqliteConnection::Begin(TxnKind kind) {
  if (kind == TxnKind::kWrite) return db_.Exec("BEGIN IMMEDIATE;");
  // A read snapshot starts at the first read in WAL mode: take it now.
  DALA_RETURN_IF_ERROR(db_.Exec("BEGIN DEFERRED;"));
  auto st = db_.Prepare("SELECT count(*) FROM sqlite_master;");
  if (st.ok()) {
    auto row = st->Step();
    if (row.ok()) return Status::Ok();
    (void)db_.Exec("ROLLBACK;");
    return row.status();
  }
  (void)db_.Exec("ROLLBACK;");
  return st.status();
}

}  // namespace dala::server::sql
