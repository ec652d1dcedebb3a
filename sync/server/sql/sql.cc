#include "server/sql/sql.h"

namespace dala::server::sql {

Status Stmt::Run() {
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return Status::Ok();
  }
}

Status Txn::Begin(TxnKind kind) {
  DALA_RETURN_IF_ERROR(c_.Begin(kind));
  open_ = true;
  return Status::Ok();
}

Status Txn::Commit() {
  Status st = c_.Commit();
  if (st.ok()) open_ = false;
  return st;
}

Txn::~Txn() {
  if (open_) (void)c_.Rollback();
}

std::string Connection::InsertOrIgnore(std::string_view rest) const {
  if (engine() == Engine::kSqlite) return "INSERT OR IGNORE INTO " + std::string(rest);
  return "INSERT INTO " + std::string(rest) + " ON CONFLICT DO NOTHING";
}

std::string Connection::Upsert(std::string_view rest, std::string_view conflict, std::string_view set) const {
  if (engine() == Engine::kSqlite) return "INSERT OR REPLACE INTO " + std::string(rest);
  std::string out = "INSERT INTO " + std::string(rest) + " ON CONFLICT (" + std::string(conflict) + ") DO UPDATE SET ";
  size_t start = 0;
  for (bool first = true; start <= set.size(); first = false) {
    size_t comma = set.find(',', start);
    if (comma == std::string_view::npos) comma = set.size();
    std::string_view col = set.substr(start, comma - start);
    while (!col.empty() && col.front() == ' ') col.remove_prefix(1);
    while (!col.empty() && col.back() == ' ') col.remove_suffix(1);
    out += (first ? "" : ", ") + std::string(col) + " = excluded." + std::string(col);
    start = comma + 1;
  }
  return out;
}

std::string NumberPlaceholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  char quote = 0;  // inside '...' or "..."
  for (char c : sql) {
    if (quote != 0) {
      if (c == quote) quote = 0;  // a doubled quote closes and reopens: the same result
      out += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      out += c;
    } else if (c == '?') {
      out += '$' + std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace dala::server::sql
