// The organisation's desk: opens a dala-server export with the organisation's secret key, verifies each
// report (device signatures outside and inside, the version chain, the server's receipt) and writes one
// JSON file per report plus summary.json. What fails is reported, never hidden.
#pragma once

#include <string>

#include "crypto/crypto.h"
#include "base/status.h"
#include "desk/desk_key.h"

namespace dala::desk {

struct Summary {
  uint64_t reports = 0;
  uint64_t verified = 0;   // every check passed
  uint64_t failed = 0;     // something did not verify (see summary.json)
};

// Trusts only `org`: its root, its statement (which server keys sign receipts, and when), its keys.
Result<Summary> OpenExport(const Organisation& org, const std::string& export_path, const std::string& out_dir);

}  // namespace dala::desk
