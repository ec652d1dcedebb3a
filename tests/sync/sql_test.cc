// dala-server's SQL interface (sync/server/sql/sql.h) on both engines: the same statements and values give
// the same results on the embedded SQLCipher database and on a real PostgreSQL 15 server (started by
// tests/support/postgres.py, which sets DALA_TEST_POSTGRES_URL; without it the PostgreSQL tests fail, they
// do not skip). A lost PostgreSQL connection is an error the caller can retry, and the next statement
// reconnects by itself.
#include <gtest/gtest.h>
#include <sodium.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "base/db.h"
#include "base/fsutil.h"
#include "server/sql/sql.h"
#include "server/sql/sqlite_connection.h"
#include "test_util.h"

namespace dala::server::sql {
namespace {

std::string PostgresUrl() {
  const char* url = std::getenv("DALA_TEST_POSTGRES_URL");
  return url != nullptr ? url : "";
}

// A connection to each engine, with an empty table t(k INTEGER PRIMARY KEY, b BLOB, s TEXT, n INTEGER).
class Engines : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override {
    if (GetParam() == Engine::kSqlite) {
      randombytes_buf(key_.data(), key_.size());
      const std::string path = dir_.sub("db");
      ASSERT_TRUE(fs::CreatePrivateFile(path).ok());
      auto db = db::Db::Open(path, key_, true);
      ASSERT_TRUE(db.ok()) << db.status().message();
      c_ = std::make_unique<SqliteConnection>(std::move(*db));
      ASSERT_TRUE(c_->Exec("CREATE TABLE t(k INTEGER PRIMARY KEY, b BLOB, s TEXT, n INTEGER)").ok());
    } else {
      ASSERT_FALSE(PostgresUrl().empty()) << "run through tests/support/postgres.py (DALA_TEST_POSTGRES_URL)";
      auto c = ConnectPostgres(PostgresUrl());
      ASSERT_TRUE(c.ok()) << c.status().message();
      c_ = std::move(*c);
      ASSERT_TRUE(c_->Exec("DROP TABLE IF EXISTS t; CREATE TABLE t(k BIGINT PRIMARY KEY, b BYTEA, s TEXT, n BIGINT)").ok());
    }
  }

  // Another connection to the same database.
  std::unique_ptr<Connection> Second() {
    if (GetParam() == Engine::kPostgres) {
      auto c = ConnectPostgres(PostgresUrl());
      return c.ok() ? std::move(*c) : nullptr;
    }
    auto db = db::Db::Open(dir_.sub("db"), key_, false);
    return db.ok() ? std::make_unique<SqliteConnection>(std::move(*db)) : nullptr;
  }

  test::TempDir dir_;
  SecretBuffer key_{32};
  std::unique_ptr<Connection> c_;
};

TEST_P(Engines, ValuesComeBackExactly) {
  std::vector<uint8_t> every_byte(256);
  for (int i = 0; i < 256; ++i) every_byte[static_cast<size_t>(i)] = static_cast<uint8_t>(i);
  const std::string text = "Zhaña ŋ 日本 ' \" ? $1 \\x00";
  auto ins = c_->Prepare("INSERT INTO t(k, b, s, n) VALUES (?, ?, ?, ?)");
  ASSERT_TRUE(ins.ok()) << ins.status().message();
  ASSERT_TRUE(ins->Bind(1, int64_t{1}).Bind(2, every_byte).BindText(3, text).Bind(4, INT64_MIN).Run().ok());
  EXPECT_EQ(c_->Changes(), 1);
  auto ins2 = c_->Prepare("INSERT INTO t(k, b, s, n) VALUES (?, ?, ?, ?)");
  ASSERT_TRUE(ins2->Bind(1, int64_t{2}).Bind(2, std::span<const uint8_t>()).BindNull(3).Bind(4, INT64_MAX).Run().ok());

  auto q = c_->Prepare("SELECT k, b, s, n FROM t WHERE k >= ? ORDER BY k");
  ASSERT_TRUE(q.ok());
  q->Bind(1, int64_t{1});
  auto row = q->Step();
  ASSERT_TRUE(row.ok() && *row) << row.status().message();
  EXPECT_EQ(q->Int(0), 1);
  EXPECT_EQ(q->Blob(1), every_byte);
  EXPECT_EQ(q->Text(2), text);
  EXPECT_EQ(q->Int(3), INT64_MIN);
  row = q->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(q->Int(0), 2);
  EXPECT_TRUE(q->BlobView(1).empty());
  EXPECT_TRUE(q->IsNull(2));
  EXPECT_FALSE(q->IsNull(3));
  EXPECT_EQ(q->Int(3), INT64_MAX);
  row = q->Step();
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(*row);

  // Aggregates, and a `?` inside a string literal left alone.
  auto agg = c_->Prepare("SELECT count(*), coalesce(max(k), -1), '?' FROM t WHERE n > ?");
  agg->Bind(1, int64_t{0});
  ASSERT_TRUE(*agg->Step());
  EXPECT_EQ(agg->Int(0), 1);
  EXPECT_EQ(agg->Int(1), 2);
  EXPECT_EQ(agg->Text(2), "?");

  auto up = c_->Prepare("UPDATE t SET n = n WHERE k IN (1, 2)");
  ASSERT_TRUE(up->Run().ok());
  EXPECT_EQ(c_->Changes(), 2);
}

TEST_P(Engines, ATransactionNotCommittedLeavesNothing) {
  {
    Txn txn(*c_);
    ASSERT_TRUE(txn.Begin().ok());
    ASSERT_TRUE(c_->Prepare("INSERT INTO t(k) VALUES (?)")->Bind(1, int64_t{7}).Run().ok());
  }
  auto n = c_->Prepare("SELECT count(*) FROM t");
  ASSERT_TRUE(*n->Step());
  EXPECT_EQ(n->Int(0), 0);
  {
    Txn txn(*c_);
    ASSERT_TRUE(txn.Begin().ok());
    ASSERT_TRUE(c_->Prepare("INSERT INTO t(k) VALUES (?)")->Bind(1, int64_t{8}).Run().ok());
    ASSERT_TRUE(txn.Commit().ok());
  }
  auto m = c_->Prepare("SELECT count(*) FROM t");
  ASSERT_TRUE(*m->Step());
  EXPECT_EQ(m->Int(0), 1);
  // A duplicate key is an error, and the connection goes on.
  EXPECT_FALSE(c_->Prepare("INSERT INTO t(k) VALUES (?)")->Bind(1, int64_t{8}).Run().ok());
  EXPECT_TRUE(c_->Prepare("INSERT INTO t(k) VALUES (?)")->Bind(1, int64_t{9}).Run().ok());
}

// A blob read after integer columns of the same row, by a statement bound with blobs (the server reads an
// attachment's chunk hashes so).
TEST_P(Engines, ABlobAfterIntegersInARowSelectedByBlobs) {
  std::vector<uint8_t> key(32, 7), hashes(416);
  for (size_t i = 0; i < hashes.size(); ++i) hashes[i] = static_cast<uint8_t>(i * 31);
  auto ins = c_->Prepare("INSERT INTO t(k, b, s, n) VALUES (?, ?, ?, ?)");
  ASSERT_TRUE(ins->Bind(1, int64_t{12848412}).Bind(2, hashes).BindText(3, "x").Bind(4, int64_t{0}).Run().ok());
  auto q = c_->Prepare("SELECT k, n, b, n FROM t WHERE b = ? AND k = ?");
  q->Bind(1, hashes).Bind(2, int64_t{12848412});
  auto row = q->Step();
  ASSERT_TRUE(row.ok() && *row) << row.status().message();
  EXPECT_EQ(q->Int(0), 12848412);
  EXPECT_EQ(q->Int(1), 0);
  auto hv = q->BlobView(2);
  EXPECT_EQ(std::vector<uint8_t>(hv.begin(), hv.end()), hashes);
  EXPECT_EQ(q->Int(3), 0);
}

// A read transaction sees one snapshot: rows another connection commits after Begin, even before its first
// read, stay out of every read in it (dala-server export and check rely on it while the server runs).
TEST_P(Engines, AReadTransactionSeesOneSnapshot) {
  auto other = Second();
  ASSERT_TRUE(other != nullptr);
  auto count = [&] {
    auto st = c_->Prepare("SELECT count(*) FROM t");
    EXPECT_TRUE(st.ok() && *st->Step());
    return st.ok() ? st->Int(0) : -1;
  };
  {
    Txn read(*c_);
    ASSERT_TRUE(read.Begin(TxnKind::kRead).ok());
    ASSERT_TRUE(other->Exec("INSERT INTO t(k) VALUES (1)").ok());  // committed before the first read
    EXPECT_EQ(count(), 0);
    ASSERT_TRUE(other->Exec("INSERT INTO t(k) VALUES (2)").ok());
    EXPECT_EQ(count(), 0);
    ASSERT_TRUE(read.Commit().ok());
  }
  EXPECT_EQ(count(), 2);
}

INSTANTIATE_TEST_SUITE_P(Sql, Engines, ::testing::Values(Engine::kSqlite, Engine::kPostgres),
                         [](const auto& info) { return info.param == Engine::kSqlite ? "Sqlite" : "Postgres"; });

TEST(Sql, PlaceholdersAreNumberedOutsideQuotes) {
  EXPECT_EQ(NumberPlaceholders("SELECT '?', ?, \"a?\" FROM t WHERE x = ? AND y = 'it''s ?'"),
            "SELECT '?', $1, \"a?\" FROM t WHERE x = $2 AND y = 'it''s ?'");
}

// The server's connection cut (a restart, a failover, a network cut). Outside a transaction the next
// statement reconnects and runs; inside one, the transaction fails with kIo ("try again later", nothing of
// it kept) and the next transaction runs on a new connection.
TEST(Postgres, ALostConnectionReconnectsAndFailsOnlyTheTransactionItCut) {
  ASSERT_FALSE(PostgresUrl().empty());
  auto a = ConnectPostgres(PostgresUrl()), killer = ConnectPostgres(PostgresUrl());
  ASSERT_TRUE(a.ok() && killer.ok());
  auto cut = [&] {
    auto pid = (*a)->Prepare("SELECT pg_backend_pid()");
    EXPECT_TRUE(*pid->Step());
    auto kill = (*killer)->Prepare("SELECT pg_terminate_backend(?::integer)");
    EXPECT_TRUE(kill->Bind(1, pid->Int(0)).Run().ok());
  };
  ASSERT_TRUE((*a)->Exec("DROP TABLE IF EXISTS cut; CREATE TABLE cut(x BIGINT)").ok());
  cut();
  auto after = (*a)->Prepare("INSERT INTO cut VALUES (1)")->Run();
  EXPECT_TRUE(after.ok()) << after.message();
  {
    Txn txn(**a);
    ASSERT_TRUE(txn.Begin().ok());
    ASSERT_TRUE((*a)->Prepare("INSERT INTO cut VALUES (2)")->Run().ok());
    cut();
    auto lost = (*a)->Prepare("INSERT INTO cut VALUES (3)")->Run();
    EXPECT_EQ(lost.code(), Code::kIo) << lost.message();
    EXPECT_FALSE(txn.Commit().ok());
  }
  Txn next(**a);
  ASSERT_TRUE(next.Begin().ok());
  auto rows = (*a)->Prepare("SELECT count(*), coalesce(max(x), 0) FROM cut");
  ASSERT_TRUE(*rows->Step());
  EXPECT_EQ(rows->Int(0), 1);  // only the row written outside the cut transaction
  EXPECT_EQ(rows->Int(1), 1);
  ASSERT_TRUE(next.Commit().ok());
}

TEST_P(Engines, InsertOrIgnoreAndUpsertMeanTheSameOnBoth) {
  auto ins = c_->Prepare(c_->InsertOrIgnore("t(k, s) VALUES(?, ?)"));
  ASSERT_TRUE(ins.ok());
  ASSERT_TRUE(ins->Bind(1, int64_t{1}).BindText(2, "first").Run().ok());
  EXPECT_EQ(c_->Changes(), 1);
  auto again = c_->Prepare(c_->InsertOrIgnore("t(k, s) VALUES(?, ?)"));
  ASSERT_TRUE(again->Bind(1, int64_t{1}).BindText(2, "second").Run().ok());
  EXPECT_EQ(c_->Changes(), 0);
  auto up = c_->Prepare(c_->Upsert("t(k, s, n) VALUES(?, ?, ?)", "k", "s, n"));
  ASSERT_TRUE(up.ok()) << up.status().message();
  ASSERT_TRUE(up->Bind(1, int64_t{1}).BindText(2, "replaced").Bind(3, int64_t{5}).Run().ok());
  auto q = c_->Prepare("SELECT count(*), max(s), max(n) FROM t");
  ASSERT_TRUE(*q->Step());
  EXPECT_EQ(q->Int(0), 1);
  EXPECT_EQ(q->Text(1), "replaced");
  EXPECT_EQ(q->Int(2), 5);
}

// The two inserts the server's export requests and time-stamps use (server_export.cc, server_timestamp.cc):
// one only if the key is absent, one only if nothing as large is there. Each says whether it inserted.
TEST_P(Engines, AnInsertIfAbsentAndAnInsertIfNothingLargerMeanTheSameOnBoth) {
  auto absent = [&](int64_t k) {
    auto st = c_->Prepare("INSERT INTO t(k, s) VALUES(?, ?) ON CONFLICT DO NOTHING");
    EXPECT_TRUE(st.ok() && st->Bind(1, k).BindText(2, "nonce").Run().ok());
    return c_->Changes();
  };
  EXPECT_EQ(absent(1), 1);
  EXPECT_EQ(absent(1), 0);
  auto larger = [&](int64_t k) {
    auto st = c_->Prepare("INSERT INTO t(k, s, n) SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM t WHERE k >= ?)");
    EXPECT_TRUE(st.ok() && st->Bind(1, k).BindText(2, "stamp").Bind(3, int64_t{7}).Bind(4, k).Run().ok());
    return c_->Changes();
  };
  EXPECT_EQ(larger(5), 1);
  EXPECT_EQ(larger(3), 0);  // below 5
  EXPECT_EQ(larger(5), 0);  // the same
  EXPECT_EQ(larger(9), 1);
  auto q = c_->Prepare("SELECT count(*), max(k) FROM t WHERE n = 7");
  ASSERT_TRUE(q.ok() && *q->Step());
  EXPECT_EQ(q->Int(0), 2);
  EXPECT_EQ(q->Int(1), 9);
}

// A write transaction whose lock wait fails (a lock_timeout, a cancel) leaves nothing open: the next
// transaction on the same connection runs.
TEST(Postgres, AFailedLockWaitLeavesTheConnectionUsable) {
  ASSERT_FALSE(PostgresUrl().empty());
  auto a = ConnectPostgres(PostgresUrl()), b = ConnectPostgres(PostgresUrl());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*b)->Exec("SET lock_timeout = '100ms'").ok());
  {
    Txn holder(**a);
    ASSERT_TRUE(holder.Begin().ok());  // holds the write lock
    Txn waiter(**b);
    EXPECT_FALSE(waiter.Begin().ok());
    ASSERT_TRUE(holder.Commit().ok());
  }
  Txn next(**b);
  ASSERT_TRUE(next.Begin().ok());
  auto one = (*b)->Prepare("SELECT 1");
  EXPECT_TRUE(one->Run().ok());
  EXPECT_TRUE(next.Commit().ok());
}

TEST(Postgres, AnUnreachableServerIsAClearError) {
  auto c = ConnectPostgres("postgresql://dala@127.0.0.1:1/dala?connect_timeout=5");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kIo);
  EXPECT_NE(c.status().message().find("cannot connect to PostgreSQL"), std::string::npos) << c.status().message();
}

}  // namespace
}  // namespace dala::server::sql
