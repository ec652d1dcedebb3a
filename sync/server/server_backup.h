// dala-server's backups (docs/operations.md, "Backups and restore"): one tar file holding a consistent
// snapshot of the database (SQLite's backup API, taken while the server runs), the complete attachments it
// records, a manifest, and the database key only when asked.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "server/server_core.h"

namespace dala::server {

struct BackupSummary {
  uint64_t reports = 0, log_size = 0, attachments = 0, attachment_bytes = 0;
  bool key_included = false;
  std::string server_key;  // hex
};

// Writes the backup of data directory `dir` to `out` (a new file, 0600, renamed into place once whole and
// synced). Without `include_key` the backup holds no secret the data directory's server.key does not guard:
// the database is SQLCipher ciphertext under that key, the attachments are sealed by the phones.
Result<BackupSummary> Backup(const std::string& dir, const std::string& out, bool include_key);

struct RestoreSummary {
  AuditReport audit;
  std::string created;     // when the backup was taken (ISO 8601)
  bool key_from_backup = false;
};

// Restores backup `from` into `dir` (missing or empty), with the database key from the backup or from
// `key_file` (a copy of the old data directory's server.key), then checks the result whole
// (ServerCore::Audit) against the backup's manifest. On any failure nothing is left in `dir`.
Result<RestoreSummary> Restore(const std::string& from, const std::string& dir, const std::string& key_file);

}  // namespace dala::server
