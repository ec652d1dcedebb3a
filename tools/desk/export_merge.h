// The desk's incremental imports: an incremental export (dala-server export --since N) joined to the full
// export of the same server that the desk kept from its last import, into one full export that is then
// checked as a whole, exactly as a full export would be (docs/protocol.md, "Incremental exports"). Both are
// streamed from disk into the joined file: nothing of either is held but its log leaves and small parts.
#pragma once

#include <string>

#include "base/status.h"
#include "crypto/crypto.h"

namespace dala::desk {

// `base`: a full export; `incremental`: one of the same server whose log starts at or before the end of base's
// log. Writes to `out` (a new file, synced) the full export they make together: base's leaves before the
// incremental's first one, then the incremental's; every report, enrolment and time-stamp of either, once (by
// exact bytes), base's first; the incremental's statement and head, and any field of it this desk does not
// know (for the strict check to find). Nothing is judged here: a server that changed its log, withheld a
// report or signed other bytes is found by the checks the joined export then goes through, as in a full
// export. kCorrupt if either changes while it is read.
struct Joined {
  crypto::Hash joined{};       // BLAKE2b-256 of what it wrote
  crypto::Hash incremental{};  // of the incremental export's bytes, which it joined
};
Result<Joined> JoinIncremental(const std::string& base, const std::string& incremental, const std::string& out);

// Copies an export to `out` (a new file, synced), returning the BLAKE2b-256 of its bytes.
Result<crypto::Hash> CopyExport(const std::string& from, const std::string& out);
// The BLAKE2b-256 of a file's bytes, read through.
Result<crypto::Hash> HashFile(const std::string& path);

}  // namespace dala::desk
