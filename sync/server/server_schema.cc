// dala-server's database schema: each step of kMigrations, run in order by the one migration runner.
#include "server/server_internal.h"

#include "base/db.h"

#include <iterator>
#include <string>

namespace dala::server {
namespace {

const char kSchema[] = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value BLOB) WITHOUT ROWID;
CREATE TABLE recipients(public_key BLOB PRIMARY KEY NOT NULL) WITHOUT ROWID;
CREATE TABLE invites(
  token BLOB PRIMARY KEY NOT NULL,
  uses_left INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE devices(
  device_key BLOB PRIMARY KEY NOT NULL,
  token BLOB,
  enrolled_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE reports(
  seq INTEGER PRIMARY KEY,
  report_id BLOB NOT NULL,
  version INTEGER NOT NULL,
  device_key BLOB NOT NULL,
  content_hash BLOB NOT NULL,
  envelope BLOB NOT NULL,
  receipt BLOB,
  received_ms INTEGER NOT NULL,
  UNIQUE(report_id, version)
);
CREATE INDEX reports_device ON reports(device_key);
)sql";

// 2: attachments. A report whose attachments are not all held waits in `pending`; `blobs` (renamed
// `attachments` by 3) records what each device declared (its manifest), and whether every chunk arrived.
const char kSchemaV2[] = R"sql(
CREATE TABLE pending(
  report_id BLOB NOT NULL,
  version INTEGER NOT NULL,
  device_key BLOB NOT NULL,
  content_hash BLOB NOT NULL,
  envelope BLOB NOT NULL,
  received_ms INTEGER NOT NULL,
  PRIMARY KEY(report_id, version)
) WITHOUT ROWID;
CREATE TABLE blobs(
  device_key BLOB NOT NULL,
  attachment_id BLOB NOT NULL,
  size INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL,
  root BLOB NOT NULL,
  chunk_hashes BLOB NOT NULL,
  complete INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY(device_key, attachment_id)
) WITHOUT ROWID;
)sql";

// 3: one word for attachments everywhere (the table was `blobs`; its directory, renamed in Open, `blobs/`).
const char kSchemaV3[] = "ALTER TABLE blobs RENAME TO attachments;";

// 4: reports are the device's: keyed by (device key, report id, version), so that one device can neither
// occupy nor conflict with another's ids (a device chooses its ids; 0.1 keyed on id and version alone).
const char kSchemaV4[] = R"sql(
CREATE TABLE reports4(
  seq INTEGER PRIMARY KEY,
  report_id BLOB NOT NULL,
  version INTEGER NOT NULL,
  device_key BLOB NOT NULL,
  content_hash BLOB NOT NULL,
  envelope BLOB NOT NULL,
  receipt BLOB,
  received_ms INTEGER NOT NULL,
  UNIQUE(device_key, report_id, version)
);
INSERT INTO reports4 SELECT seq, report_id, version, device_key, content_hash, envelope, receipt, received_ms
  FROM reports;
DROP TABLE reports;
ALTER TABLE reports4 RENAME TO reports;
CREATE INDEX reports_device ON reports(device_key);
CREATE TABLE pending4(
  report_id BLOB NOT NULL,
  version INTEGER NOT NULL,
  device_key BLOB NOT NULL,
  content_hash BLOB NOT NULL,
  envelope BLOB NOT NULL,
  received_ms INTEGER NOT NULL,
  PRIMARY KEY(device_key, report_id, version)
) WITHOUT ROWID;
INSERT INTO pending4 SELECT report_id, version, device_key, content_hash, envelope, received_ms FROM pending;
DROP TABLE pending;
ALTER TABLE pending4 RENAME TO pending;
)sql";

// 5: the organisation's root decides who enrols (docs/protocol.md, "Enrolment"): each device keeps the
// invite it presented and its proof (for the desk), and an invite's uses are counted by its hash. The
// 0.1 invite tokens (kept in plaintext, minted by the server alone) are gone.
const char kSchemaV5[] = R"sql(
ALTER TABLE devices ADD COLUMN invite BLOB;
ALTER TABLE devices ADD COLUMN invite_hash BLOB;
ALTER TABLE devices ADD COLUMN proof BLOB;
CREATE INDEX devices_invite ON devices(invite_hash);
DROP TABLE invites;
DROP TABLE recipients;
)sql";

// 6: the append-only log (docs/protocol.md, "The log"): leaves, every complete subtree's hash, and the
// heads signed. Nothing in it is ever changed or removed. A report's row names its leaf (answers to a
// report pushed again carry its place in the log).
const char kSchemaV6[] = R"sql(
CREATE TABLE log(idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL);
CREATE TABLE log_nodes(level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
  PRIMARY KEY(level, idx)) WITHOUT ROWID;
CREATE TABLE log_heads(size INTEGER PRIMARY KEY, signed BLOB NOT NULL);
ALTER TABLE reports ADD COLUMN leaf INTEGER;
CREATE TRIGGER log_no_update BEFORE UPDATE ON log BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_no_delete BEFORE DELETE ON log BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_nodes_no_update BEFORE UPDATE ON log_nodes BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_nodes_no_delete BEFORE DELETE ON log_nodes BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
)sql";

// 7: reports_device goes: the unique index on (device_key, report_id, version) serves every lookup by
// device, and a second index on a random key cost every stored report one more page written.
const char kSchemaV7[] = "DROP INDEX reports_device;";

// 8: trusted time (docs/protocol.md, "Trusted time"): a time-stamping authority's token over the head of
// each size stamped.
const char kSchemaV8[] = "CREATE TABLE log_timestamps(size INTEGER PRIMARY KEY, token BLOB NOT NULL, "
                         "stamped_ms INTEGER NOT NULL);";

// 9: the operator's view: a label per device (the operator's words, never sent to phones), and invites the
// operator cancelled (by their hash, as devices count their uses), refused at enrolment from then on.
const char kSchemaV9[] = R"sql(
ALTER TABLE devices ADD COLUMN label TEXT;
CREATE TABLE invites_cancelled(invite_hash BLOB PRIMARY KEY NOT NULL, cancelled_ms INTEGER NOT NULL) WITHOUT ROWID;
)sql";

// 10: reports by their leaf's index, for a desk's pages (each starts at a leaf: without it, every page read
// the whole table). Leaves only grow, so the index grows at its end: little for each report stored.
const char kSchemaV10[] = "CREATE INDEX reports_leaf ON reports(leaf);";

// 11: receipts are stored unsigned from here on (the log proves them to phones; an export signs each,
// docs/protocol.md, "Receipts are proven by the log"). Nothing in the tables changes; the step is there so
// that a dala-server from before it refuses this data rather than export unsigned receipts.
const char kSchemaV11[] = "SELECT 1;";

// 12: listed desks' export requests seen (desk key + nonce), until they may be forgotten: kept in the
// database, so that a request copied off the wire is refused by every node, not only the one it reached.
const char kSchemaV12[] = R"sql(
CREATE TABLE export_nonces(nonce BLOB PRIMARY KEY NOT NULL, forget_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX export_nonces_forget ON export_nonces(forget_ms);
)sql";

const char* const kMigrations[] = {kSchema,   kSchemaV2, kSchemaV3,  kSchemaV4,  kSchemaV5, kSchemaV6,
                                   kSchemaV7, kSchemaV8, kSchemaV9, kSchemaV10, kSchemaV11, kSchemaV12};

// PostgreSQL: the schema of step 9 above in one step (no PostgreSQL data predates it). The log is
// append-only here too: rows of log and log_nodes cannot be changed, deleted or truncated.
const char kPostgresSchema[] = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value BYTEA);
CREATE TABLE devices(
  device_key BYTEA PRIMARY KEY,
  token BYTEA,
  enrolled_ms BIGINT NOT NULL,
  last_seen_ms BIGINT NOT NULL,
  revoked BIGINT NOT NULL DEFAULT 0,
  invite BYTEA,
  invite_hash BYTEA,
  proof BYTEA,
  label TEXT
);
CREATE INDEX devices_invite ON devices(invite_hash);
CREATE TABLE reports(
  seq BIGINT PRIMARY KEY,
  report_id BYTEA NOT NULL,
  version BIGINT NOT NULL,
  device_key BYTEA NOT NULL,
  content_hash BYTEA NOT NULL,
  envelope BYTEA NOT NULL,
  receipt BYTEA,
  received_ms BIGINT NOT NULL,
  leaf BIGINT,
  UNIQUE(device_key, report_id, version)
);
CREATE TABLE pending(
  report_id BYTEA NOT NULL,
  version BIGINT NOT NULL,
  device_key BYTEA NOT NULL,
  content_hash BYTEA NOT NULL,
  envelope BYTEA NOT NULL,
  received_ms BIGINT NOT NULL,
  PRIMARY KEY(device_key, report_id, version)
);
CREATE TABLE attachments(
  device_key BYTEA NOT NULL,
  attachment_id BYTEA NOT NULL,
  size BIGINT NOT NULL,
  chunk_size BIGINT NOT NULL,
  root BYTEA NOT NULL,
  chunk_hashes BYTEA NOT NULL,
  complete BIGINT NOT NULL DEFAULT 0,
  created_ms BIGINT NOT NULL,
  PRIMARY KEY(device_key, attachment_id)
);
CREATE TABLE log(idx BIGINT PRIMARY KEY, leaf BYTEA NOT NULL);
CREATE TABLE log_nodes(level BIGINT NOT NULL, idx BIGINT NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY(level, idx));
CREATE TABLE log_heads(size BIGINT PRIMARY KEY, signed BYTEA NOT NULL);
CREATE TABLE log_timestamps(size BIGINT PRIMARY KEY, token BYTEA NOT NULL, stamped_ms BIGINT NOT NULL);
CREATE TABLE invites_cancelled(invite_hash BYTEA PRIMARY KEY, cancelled_ms BIGINT NOT NULL);
CREATE FUNCTION dala_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the log is append-only'; END $$;
CREATE TRIGGER log_append_only BEFORE UPDATE OR DELETE ON log FOR EACH ROW EXECUTE FUNCTION dala_log_append_only();
CREATE TRIGGER log_no_truncate BEFORE TRUNCATE ON log FOR EACH STATEMENT EXECUTE FUNCTION dala_log_append_only();
CREATE TRIGGER log_nodes_append_only BEFORE UPDATE OR DELETE ON log_nodes FOR EACH ROW
  EXECUTE FUNCTION dala_log_append_only();
CREATE TRIGGER log_nodes_no_truncate BEFORE TRUNCATE ON log_nodes FOR EACH STATEMENT
  EXECUTE FUNCTION dala_log_append_only();
)sql";

// 2: as step 10 above.
const char kPostgresSchemaV2[] = "CREATE INDEX reports_leaf ON reports(leaf);";

// 3: as step 11 above.
const char kPostgresSchemaV3[] = "SELECT 1";

// 4: as step 12 above.
const char kPostgresSchemaV4[] = R"sql(
CREATE TABLE export_nonces(nonce BYTEA PRIMARY KEY, forget_ms BIGINT NOT NULL);
CREATE INDEX export_nonces_forget ON export_nonces(forget_ms);
)sql";

const char* const kPostgresMigrations[] = {kPostgresSchema, kPostgresSchemaV2, kPostgresSchemaV3, kPostgresSchemaV4};

// The advisory lock key that serialises schema migrations ("dalamigr").
constexpr int64_t kMigrationLock = 0x64616c616d696772;

}  // namespace

Status MigratePostgresSchema(sql::Connection& db) {
  sql::Txn txn(db);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_RETURN_IF_ERROR(db.Exec("SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLock) + ")"));
  DALA_RETURN_IF_ERROR(db.Exec("CREATE TABLE IF NOT EXISTS dala_schema(version BIGINT NOT NULL)"));
  DALA_ASSIGN_OR_RETURN(sql::Stmt v, db.Prepare("SELECT coalesce(max(version), 0) FROM dala_schema"));
  DALA_ASSIGN_OR_RETURN(bool row, v.Step());
  const int64_t current = row ? v.Int(0) : 0;
  v = sql::Stmt();
  constexpr int64_t kSteps = static_cast<int64_t>(std::size(kPostgresMigrations));
  if (current < 0) return Status(Code::kCorrupt, "the server's PostgreSQL schema version is not one dala-server writes");
  if (current > kSteps)
    return Status(Code::kState, "the server's PostgreSQL database was written by a newer dala-server; upgrade it");
  if (current == kSteps) return Status::Ok();  // rolled back: nothing was changed
  for (int64_t step = current; step < kSteps; ++step) DALA_RETURN_IF_ERROR(db.Exec(kPostgresMigrations[step]));
  DALA_RETURN_IF_ERROR(db.Exec("DELETE FROM dala_schema"));
  DALA_ASSIGN_OR_RETURN(sql::Stmt set, db.Prepare("INSERT INTO dala_schema(version) VALUES(?)"));
  DALA_RETURN_IF_ERROR(set.Bind(1, kSteps).Run());
  return txn.Commit();
}

Status MigrateServerSchema(db::Db& db) {
  return db::Migrate(db, kMigrations, "the server data was written by a newer dala-server; upgrade it");
}

}  // namespace dala::server
