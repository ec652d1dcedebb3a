// The desk's exports that people open in other programs: CSV (RFC 4180, UTF-8 with a byte-order mark and
// CRLF lines, so that spreadsheet programs read it as UTF-8; cells a spreadsheet would run as a formula
// are prefixed with an apostrophe) and JSON Lines. One row per report, its latest version; a column per
// field key found in the selection; times in ISO 8601 UTC.
#pragma once

#include <string>

#include "base/clock.h"  // IsoTime, used by its readers too
#include "base/db.h"
#include "base/status.h"
#include "desk/desk_query.h"

namespace dala::desk {

enum class TableFormat { kCsv, kJsonLines };

// Writes the reports `q` selects (every page) to `path` atomically. Returns how many rows.
Result<uint64_t> WriteTable(db::Db& db, const ListQuery& q, TableFormat format, const std::string& path);
// The same, as text (the web desk's downloads).
Result<std::string> TableText(db::Db& db, const ListQuery& q, TableFormat format, uint64_t* rows = nullptr);


}  // namespace dala::desk
