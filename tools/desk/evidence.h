// Evidence packages (docs/evidence.md): a ZIP holding, for each report a court or a journalist is given,
// every version's original sealed bytes and the one content key that opens them, the servers' signed
// receipts and the log proofs that place them, the device's enrolment through an invite the
// organisation's root signed, the original media, the organisation's statement, the custody log and a
// human-readable report, all listed with SHA-256 and BLAKE2b hashes in a manifest the root signs.
// VerifyEvidence re-checks a package with the organisation's public identity alone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "crypto/crypto.h"
#include "desk/desk_store.h"

namespace dala::desk {

inline constexpr std::string_view kEvidenceFormat = "dala-evidence/1";
inline constexpr std::string_view kDomainEvidence = "dala/v2/evidence-manifest";

// Writes the package of reports `rids` to `path` (kExists if anything is there), recording the export in
// the custody log (in the package's copy too). Returns the number of reports.
Result<uint64_t> WriteEvidence(DeskStore& store, const std::vector<int64_t>& rids, const std::string& path);

struct EvidenceVerdict {
  uint64_t reports = 0, versions = 0, attachments = 0, custody_entries = 0;
  uint64_t timestamps = 0;            // versions dated by a time-stamp a trusted authority signed
  uint64_t timestamps_unchecked = 0;  // versions with a time-stamp that holds them, no authority given to check
  std::string organisation;           // the statement's name
  std::vector<std::string> problems;  // empty: every check held
  std::vector<std::string> checked;   // what was checked, one line each (for people)
  bool ok() const { return problems.empty(); }
};

// Every check of docs/evidence.md, trusting only `root`, and for time only the time-stamping authorities
// whose certificates (PEM: an authority's own, or its CA's) `trusted_tsa_pem` holds (empty: time-stamps are
// checked to hold their versions, and their times are not claimed).
Result<EvidenceVerdict> VerifyEvidence(const crypto::PublicKey& root, const std::string& path,
                                       const std::string& trusted_tsa_pem = {});

}  // namespace dala::desk
