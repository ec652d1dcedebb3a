#include "store/schema.h"

namespace dala {
namespace {

// Forward-only; db::Migrate runs those not yet applied. SQL stays within SQLite 3.15 (SQLCipher 3.4).
const char* const kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE meta(
  key TEXT PRIMARY KEY NOT NULL,
  value BLOB
) WITHOUT ROWID;
CREATE TABLE reports(
  seq INTEGER PRIMARY KEY,
  id BLOB NOT NULL CHECK(length(id) = 16),
  version INTEGER NOT NULL CHECK(version >= 1),
  sealed INTEGER NOT NULL DEFAULT 0,
  form TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  priority INTEGER NOT NULL DEFAULT 0,
  body BLOB,
  content_hash BLOB,
  purged INTEGER NOT NULL DEFAULT 0,
  UNIQUE(id, version)
);
CREATE TABLE recipients(
  destination TEXT NOT NULL,
  public_key BLOB NOT NULL CHECK(length(public_key) = 32),
  PRIMARY KEY(destination, public_key)
) WITHOUT ROWID;
CREATE TABLE outbox(
  seq INTEGER PRIMARY KEY,
  destination TEXT NOT NULL,
  report_id BLOB NOT NULL,
  version INTEGER NOT NULL,
  state INTEGER NOT NULL DEFAULT 0,
  priority INTEGER NOT NULL DEFAULT 0,
  size INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  envelope BLOB,
  receipt BLOB,
  enqueued_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  UNIQUE(destination, report_id, version),
  FOREIGN KEY(report_id, version) REFERENCES reports(id, version) ON DELETE CASCADE
);
CREATE INDEX outbox_due ON outbox(destination, state, priority DESC, seq);
CREATE INDEX outbox_report ON outbox(report_id, version);
CREATE INDEX outbox_in_flight ON outbox(state) WHERE state = 1;  -- 1: DALA_OUTBOX_IN_FLIGHT (store/outbox_state.h)
CREATE INDEX reports_created ON reports(created_ms);
)sql",
    // 2: servers this store delivers to (joined from invites).
    R"sql(
CREATE TABLE servers(
  destination TEXT PRIMARY KEY NOT NULL,
  server_key BLOB NOT NULL,
  urls TEXT NOT NULL,
  token BLOB NOT NULL,
  organisation TEXT NOT NULL,
  tls_pin BLOB,
  enrolled INTEGER NOT NULL DEFAULT 0,
  joined_ms INTEGER NOT NULL,
  last_error TEXT
) WITHOUT ROWID;
)sql",
    // 3: attachments (encrypted files in media/; the keys live here only).
    R"sql(
CREATE TABLE attachments(
  id BLOB PRIMARY KEY NOT NULL CHECK(length(id) = 16),
  report_id BLOB NOT NULL,
  version INTEGER NOT NULL,
  file TEXT NOT NULL UNIQUE,
  mime TEXT NOT NULL,
  size INTEGER NOT NULL,
  plaintext_hash BLOB NOT NULL,
  ciphertext_size INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL,
  ciphertext_hash BLOB NOT NULL,
  chunk_hashes BLOB NOT NULL,
  key BLOB NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE INDEX attachments_report ON attachments(report_id, version);
)sql",
    // 4: organisations (docs/protocol.md, "The organisation"). A server is joined through an invite its
    // organisation's root signed; the destination is the organisation's. Rows without organisation_key were
    // joined with a 0.1 invite: their reports wait until the phone joins the organisation again.
    R"sql(
ALTER TABLE servers ADD COLUMN organisation_key BLOB;
ALTER TABLE servers ADD COLUMN statement BLOB;
ALTER TABLE servers ADD COLUMN invite BLOB;
ALTER TABLE servers ADD COLUMN proof BLOB;
)sql",
    // 5: what the phone knows of its server's log (docs/protocol.md, "What a phone checks"): a
    // serialized v1::LogWitness.
    R"sql(
ALTER TABLE servers ADD COLUMN log_witness BLOB;
)sql",
    // 6: nothing. (A development build used 6 for a step it no longer has; stores it opened go on to 7.)
    R"sql(
SELECT 1;
)sql",
    // 7: listing a page at a time, newest first (Store::ListPage): (created_ms, id) orders reports and is
    // the cursor; it serves every lookup by created_ms too. Both indexes cover what a listing reads, so that
    // it reads index pages only, never the rows with their bodies and envelopes.
    R"sql(
DROP INDEX IF EXISTS reports_listing;
CREATE INDEX reports_listing ON reports(created_ms, id, version, sealed, form, updated_ms);
DROP INDEX IF EXISTS reports_created;
CREATE INDEX IF NOT EXISTS outbox_report_state ON outbox(report_id, version, state);
DROP INDEX IF EXISTS outbox_report;
)sql",
};
}  // namespace

Status MigrateStoreSchema(db::Db& db) {
  return db::Migrate(db, kMigrations, "the store was written by a newer version of Dala; upgrade the app to open it");
}

}  // namespace dala
