// What the files of dala-server's core share (not a public interface of the server).
#pragma once

#include <span>
#include <string>

#include "base/db.h"
#include "base/fsutil.h"
#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"
#include "protocol/http_api.h"
#include "server/server_core.h"
#include "server/sql/sql.h"

namespace dala::server {

// Brings the server database to the current schema (server_schema.cc).
Status MigrateServerSchema(db::Db& db);
// The same for a PostgreSQL database: all steps in one transaction under an advisory lock, so that nodes
// starting together apply each step once (server_schema.cc).
Status MigratePostgresSchema(sql::Connection& db);

// Opens an embedded server database. One that SQLCipher 3 wrote (dala-server 0.1) is not converted: refused
// with what to do, and left as it is for the binary that made it to export (server_core.cc).
Result<db::Db> OpenServerDatabase(const std::string& path, const SecretBuffer& key, bool create = false);

// Where a data directory keeps its PostgreSQL database's URL (absent: the embedded database).
inline constexpr char kDatabaseUrlFile[] = "database.url";
// Where a data directory names the attachment store it shares with other nodes (init --blobs DIR, or
// --blobs s3://...; absent: DIR/attachments of its own).
inline constexpr char kBlobsPathFile[] = "blobs.path";

// The attachment store of data directory `dir`: a directory, or an s3:// URL.
Result<std::string> AttachmentsLocation(const std::string& dir);
inline bool IsS3(std::string_view location) { return location.starts_with("s3://"); }
// Opens it (an S3 bucket probed first if `probe`).
Result<std::unique_ptr<AttachmentStore>> OpenAttachments(const std::string& dir, bool probe,
                                                         std::function<void(const char*, int, double)> observe = {});

inline std::string Path(const std::string& dir, const char* name) { return fs::Join(dir, name); }

inline constexpr const char* kProto = protocol::kContentType.data();  // NUL-terminated literal
inline constexpr size_t kParallelCheckFrom = 8;  // envelopes in one push checked on two threads from here
inline constexpr int64_t kLastSeenResolutionMs = 60'000;  // a device's last contact is kept to the minute
inline constexpr char kNotAuthorisedNow[] =
    "the organisation no longer authorises this server (revoked or expired): it accepts nothing more";

inline HttpResult Reply(int http, v1::ResponseStatus status, const std::string& message, int64_t now) {
  v1::Response r;
  r.set_status(status);
  r.set_message(message);
  r.set_server_time_ms(now);
  return {http, kProto, r.SerializeAsString()};
}

inline std::span<const uint8_t> B(const std::string& s) { return crypto::Bytes(s); }

// How much of an attachment file verifies against its chunk hashes: whole chunks from the start, up to the
// first that is missing or does not match (server_upload.cc).
uint64_t VerifiedPrefix(const std::string& path, uint64_t size, uint32_t chunk_size, std::string_view hashes);

}  // namespace dala::server
