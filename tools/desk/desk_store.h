// The desk's own store (docs/desk.md): every report version the organisation received, kept encrypted in
// DIR/desk.db (SQLCipher under a key derived from the organisation's master secret, so the desk passphrase
// guards it), with the attachment files exactly as exported (still encrypted under their file keys, which
// only the database holds) in DIR/media, and the newest export of each server in DIR/exports, which the
// next import's log must extend. Nothing decrypted is written to disk.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/db.h"
#include "base/status.h"
#include "desk/desk_key.h"
#include "desk/desk_query.h"
#include "desk/desk_table.h"
#include "desk/export_opener.h"

namespace dala::desk {

struct ImportResult {
  Summary summary;          // every check of dala desk open, over the whole export
  bool imported = false;    // false: refused, the store is as it was (problems say why)
  uint64_t added = 0;       // report versions new to the store
  uint64_t held = 0;        // report versions the store held already
  uint64_t reports_changed = 0;  // reports that are new, or have a newer version
  std::vector<std::string> problems;  // why it was refused, in plain words
  std::string summary_json;           // summary.json of the export (ids and problems, no contents)
};

class DeskStore {
 public:
  // Opens the store in `dir` (created when missing) for `org`, which must outlive it. kWrongKey: the
  // store was made by another organisation's key.
  static Result<std::unique_ptr<DeskStore>> Open(const Organisation& org, const std::string& dir);
  ~DeskStore();

  // Verifies the export (every check of desk open) and adds what is new, all or nothing: an export that is
  // altered, incomplete, of another organisation, or whose log does not extend the one the store took
  // last from the same server, is refused with the store unchanged. Report versions that fail their own
  // checks (an attachment that does not decrypt, a device that was never enrolled) refuse the import too,
  // unless `keep_failed`: then they are kept, marked failed with their problems. One import at a time
  // (others wait for it).
  Result<ImportResult> Import(const std::string& export_path, OpenOptions options, bool keep_failed);

  // Writes the reports `q` selects as CSV or JSON Lines to `path`, and records the export in the custody
  // log (each report's, and the desk's). Returns the rows written.
  Result<uint64_t> ExportTable(const ListQuery& q, TableFormat format, const std::string& path);
  // The same as text (the web desk's downloads), recorded in the custody log. `deliver`, if given, runs
  // before the record commits: when it fails, nothing is recorded.
  Result<std::string> ExportTableText(const ListQuery& q, TableFormat format, uint64_t* rows,
                                      const std::function<Status(const std::string&)>& deliver = nullptr);
  // The reports whose id (32 hex digits) is one of `ids`: kNotFound naming the first that is not held.
  Result<std::vector<int64_t>> FindReports(const std::vector<std::string>& ids);

  db::Db& db() { return db_; }
  const Organisation& org() const { return org_; }
  const std::string& dir() const { return dir_; }
  std::string MediaPath(const std::string& file) const;

 private:
  DeskStore(const Organisation& org, std::string dir) : org_(org), dir_(std::move(dir)) {}
  const Organisation& org_;
  std::string dir_;
  db::Db db_;
};

// An exclusive lock (flock) on DIR/NAME, created when missing, held until destroyed; a second taker, in this
// process or another, waits. The store takes "import.lock" for an import, "open.lock" while it opens and
// migrates; dala desk pull takes "pull/pull.lock".
class DirLock {
 public:
  static Result<DirLock> Take(const std::string& dir, const char* name);
  DirLock(DirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  ~DirLock();

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

// The chunk-tree root of a file (`chunk_size`-byte chunks), as a signed manifest names an encrypted
// attachment's.
Result<crypto::Hash> FileRoot(const std::string& path, uint32_t chunk_size);

// The plain text of a report's content that search looks in: narrative, text fields, people.
std::string SearchText(const v1::ReportContent& content);
// The value of the text field "place", or "".
std::string PlaceOf(const v1::ReportContent& content);

}  // namespace dala::desk
