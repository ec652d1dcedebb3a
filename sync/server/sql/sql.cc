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
