// PostgreSQL behind sql::Connection, through libpq: parameters sent with their types (bytea in binary),
// results read as text (bytea as hex), every error mapped to a Status that says what to do. A connection
// found lost (a restart, a failover) is re-established and the statement run again when that is safe
// (outside a transaction); inside one, the transaction fails with kIo ("try later") and the next begins
// on a new connection.
#include <libpq-fe.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

#include "server/sql/sql.h"

namespace dala::server::sql {
namespace {

constexpr Oid kInt8 = 20, kText = 25, kBytea = 17;

struct ResultFree {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultFree>;

class PgConnection;

// The SQLSTATE of a failed result as a Status.
Status ResultError(PGconn* conn, const PGresult* r, std::string_view action) {
  const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary = r != nullptr ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  std::string detail = primary != nullptr ? primary : PQerrorMessage(conn);
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
  const std::string what = std::string(action) + ": ";
  if (PQstatus(conn) != CONNECTION_OK || state == nullptr)
    return Status(Code::kIo, what + "the PostgreSQL server cannot be reached (" + detail + "); try again later");
  const std::string s = state;
  if (s == "40001" || s == "40P01" || s == "55P03")
    return Status(Code::kBusy, what + "a concurrent change came first (" + detail + "); try again");
  if (s.rfind("08", 0) == 0 || s == "57P01" || s == "57P02" || s == "57P03")
    return Status(Code::kIo, what + "the PostgreSQL server went away (" + detail + "); try again later");
  if (s == "53100") return Status(Code::kNoSpace, what + "the database's disk is full (" + detail + ")");
  if (s == "23505") return Status(Code::kExists, what + "already stored (" + detail + ")");
  if (s.rfind("23", 0) == 0) return Status(Code::kInternal, what + "constraint failed (" + detail + ")");
  if (s.rfind("42", 0) == 0) return Status(Code::kInternal, what + "statement refused (" + detail + ")");
  return Status(Code::kIo, what + detail + " (SQLSTATE " + s + ")");
}

class PgStmt : public StmtImpl {
 public:
  PgStmt(PgConnection& conn, std::string sql) : conn_(conn), sql_(std::move(sql)) {}
  void BindInt(int i, int64_t v) override { Set(i, kInt8, std::to_string(v), false); }
  void BindBlob(int i, std::span<const uint8_t> v) override {
    Set(i, kBytea, std::string(reinterpret_cast<const char*>(v.data()), v.size()), true);
  }
  void BindText(int i, std::string_view v) override { Set(i, kText, std::string(v), false); }
  void BindNull(int i) override {
    Grow(i);
    params_[static_cast<size_t>(i - 1)] = Param{};
  }
  Result<bool> Step() override;
  void Reset() override {
    result_.reset();
    ran_ = false;
    row_ = -1;
    blobs_.clear();
  }
  int64_t Int(int col) const override {
    const char* v = PQgetvalue(result_.get(), row_, col);
    return v != nullptr ? std::strtoll(v, nullptr, 10) : 0;
  }
  std::span<const uint8_t> BlobView(int col) const override;
  std::string Text(int col) const override {
    return std::string(PQgetvalue(result_.get(), row_, col), static_cast<size_t>(PQgetlength(result_.get(), row_, col)));
  }
  bool IsNull(int col) const override { return PQgetisnull(result_.get(), row_, col) != 0; }

 private:
  struct Param {
    Oid type = 0;
    std::string value;
    bool binary = false, null = true;
  };
  void Grow(int i) {
    if (params_.size() < static_cast<size_t>(i)) params_.resize(static_cast<size_t>(i));
  }
  void Set(int i, Oid type, std::string value, bool binary) {
    Grow(i);
    params_[static_cast<size_t>(i - 1)] = Param{type, std::move(value), binary, false};
  }

  PgConnection& conn_;
  std::string sql_;
  std::vector<Param> params_;
  ResultPtr result_;
  int row_ = -1;
  bool ran_ = false;
  mutable std::unordered_map<int, std::vector<uint8_t>> blobs_;  // this row's decoded bytea columns
};

class PgConnection : public Connection {
 public:
  explicit PgConnection(std::string url) : url_(std::move(url)) {}
  ~PgConnection() override {
    if (conn_ != nullptr) PQfinish(conn_);
  }
  Engine engine() const override { return Engine::kPostgres; }

  // A transaction block left open on the server while this side holds none: rolled back.
  void EndAbandonedTransaction() {
    if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK || in_txn_) return;
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE) ResultPtr(PQexec(conn_, "ROLLBACK"));
  }

  Status Connect() {
    if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK) {
      EndAbandonedTransaction();
      return Status::Ok();
    }
    if (in_txn_) return Status(Code::kIo, "the connection to PostgreSQL was lost in a transaction; try again");
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = PQconnectdb(url_.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string m = PQerrorMessage(conn_);
      while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
      return Status(Code::kIo, "cannot connect to PostgreSQL (" + m + ")");
    }
    // Errors in the client's terms, times in UTC, no notices on stderr.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    ResultPtr r(PQexec(conn_, "SET TIME ZONE 'UTC'; SET client_min_messages = warning;"));
    if (PQresultStatus(r.get()) == PGRES_COMMAND_OK) return Status::Ok();
    return ResultError(conn_, r.get(), "cannot set up the PostgreSQL session");
  }

  // True when a statement that failed found the connection gone and none of this session's work can have
  // been lost with it: outside a transaction, reconnecting and running it again is safe.
  bool Retriable() const { return !in_txn_ && PQstatus(conn_) != CONNECTION_OK; }

  Status Run(std::string_view sql, std::string_view action) {
    for (int attempt = 0;; ++attempt) {
      ResultPtr r(PQexec(conn_, std::string(sql).c_str()));
      const auto s = PQresultStatus(r.get());
      if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) return Status::Ok();
      if (attempt == 0 && Retriable() && Connect().ok()) continue;  // a restart or failover since the last use
      return ResultError(conn_, r.get(), action);
    }
  }

  Status Exec(std::string_view sql) override {
    DALA_RETURN_IF_ERROR(Connect());
    return Run(sql, "database statement failed");
  }
  Result<Stmt> Prepare(std::string_view sql) override {
    return Stmt(std::make_unique<PgStmt>(*this, NumberPlaceholders(sql)));
  }
  int64_t Changes() const override { return changes_; }
  Status Begin(TxnKind kind) override {
    DALA_RETURN_IF_ERROR(Connect());
    // Writing transactions take one advisory lock, as SQLite's BEGIN IMMEDIATE takes its write lock: the
    // server's writes (the log above all: one append at a time, whichever node) are serialised across
    // every node on this database, and released with the transaction whatever ends it.
    // A read transaction's snapshot is taken by its first statement: take it here, as the SQLite side does.
    Status st = Run(kind == TxnKind::kRead ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1"
                                           : "BEGIN; SELECT pg_advisory_xact_lock(7234298612549513074)",
                    "cannot begin a transaction");
    if (!st.ok()) {
      // BEGIN may have run and the lock wait failed (a lock_timeout, a cancel): end that transaction, or
      // every later statement would fail in it.
      EndAbandonedTransaction();
      return st;
    }
    in_txn_ = true;
    return Status::Ok();
  }
  Status Commit() override {
    Status st = Run("COMMIT", "cannot commit");
    in_txn_ = false;
    return st;
  }
  Status Rollback() override {
    in_txn_ = false;
    if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) return Status::Ok();  // gone with the connection
    return Run("ROLLBACK", "cannot roll back");
  }

  // Runs one parameterised statement; the result, or the error as a Status.
  Result<ResultPtr> ExecParams(const std::string& sql, int n, const Oid* types, const char* const* values,
                               const int* lengths, const int* formats) {
    DALA_RETURN_IF_ERROR(Connect());
    ResultPtr r(PQexecParams(conn_, sql.c_str(), n, types, values, lengths, formats, 0));
    auto s = PQresultStatus(r.get());
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && Retriable() && Connect().ok()) {
      r.reset(PQexecParams(conn_, sql.c_str(), n, types, values, lengths, formats, 0));
      s = PQresultStatus(r.get());
    }
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) return ResultError(conn_, r.get(), "database statement failed");
    const char* tuples = PQcmdTuples(r.get());
    changes_ = tuples != nullptr && *tuples != '\0' ? std::strtoll(tuples, nullptr, 10) : 0;
    return r;
  }

 private:
  std::string url_;
  PGconn* conn_ = nullptr;
  bool in_txn_ = false;
  int64_t changes_ = 0;
};

Result<bool> PgStmt::Step() {
  blobs_.clear();
  if (!ran_) {
    std::vector<Oid> types;
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (const auto& p : params_) {
      types.push_back(p.null ? 0 : p.type);
      values.push_back(p.null ? nullptr : p.value.data());
      lengths.push_back(static_cast<int>(p.value.size()));
      formats.push_back(p.binary ? 1 : 0);
    }
    DALA_ASSIGN_OR_RETURN(result_, conn_.ExecParams(sql_, static_cast<int>(params_.size()), types.data(),
                                                    values.data(), lengths.data(), formats.data()));
    ran_ = true;
    row_ = -1;
  }
  if (row_ + 1 < PQntuples(result_.get())) {
    ++row_;
    return true;
  }
  return false;
}

std::span<const uint8_t> PgStmt::BlobView(int col) const {
  auto it = blobs_.find(col);
  if (it == blobs_.end()) {
    const char* v = PQgetvalue(result_.get(), row_, col);
    std::vector<uint8_t> bytes;
    if (PQftype(result_.get(), col) == kBytea) {
      size_t n = 0;
      unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(v), &n);
      if (raw != nullptr) {
        bytes.assign(raw, raw + n);
        PQfreemem(raw);
      }
    } else {
      bytes.assign(v, v + PQgetlength(result_.get(), row_, col));
    }
    it = blobs_.emplace(col, std::move(bytes)).first;
  }
  return it->second;
}

}  // namespace

Result<std::unique_ptr<Connection>> ConnectPostgres(const std::string& url) {
  auto c = std::make_unique<PgConnection>(url);
  DALA_RETURN_IF_ERROR(c->Connect());
  return std::unique_ptr<Connection>(std::move(c));
}

}  // namespace dala::server::sql
