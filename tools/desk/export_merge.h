// The desk's incremental imports: an incremental export (dala-server export --since N) joined to the full
// export of the same server that the desk kept from its last import, into one full export that is then
// checked as a whole, exactly as a full export would be (docs/protocol.md, "Incremental exports").
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace dala::desk {

struct ExportKind {
  uint64_t log_from = 0;   // the position its log starts at: 0 for a full export
  std::string server_key;  // 32 bytes
};
// An error if `bytes` is not an export.
Result<ExportKind> KindOf(std::string_view bytes);

// `base`: a full export; `incremental`: one of the same server whose log starts at or before the end of base's
// log. Returns the full export they make together: base's leaves before the incremental's first one, then the
// incremental's; every report, enrolment and time-stamp of either, once (by exact bytes), base's first; the
// incremental's statement and head. Nothing is judged here: a server that changed its log, withheld a report
// or signed other bytes is found by the checks the joined export then goes through, as in a full export.
Result<std::string> JoinIncremental(std::string_view base, std::string_view incremental);

}  // namespace dala::desk
