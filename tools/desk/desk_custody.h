// The desk's chain of custody (docs/desk.md, "Custody log"): every import, view, annotation and export,
// appended in order, each entry hash-chained to the one before and signed by the organisation's root, so
// that anyone holding the organisation's identity can check that no entry was changed, removed or
// reordered. Entry n's hash (BLAKE2b-256) is over
//   prev (32 bytes: entry n-1's hash, zeros for the first) || seq u64 BE || time_ms i64 BE ||
//   action, report, detail (each as u32 BE length || bytes)
// and its signature is Ed25519 by the root over that hash, domain "dala/v2/custody".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/db.h"
#include "base/status.h"
#include "crypto/crypto.h"
#include "desk/desk_key.h"

namespace dala::desk {

inline constexpr std::string_view kCustodyDomain = "dala/v2/custody";

struct CustodyEntry {
  uint64_t seq = 0;
  int64_t time_ms = 0;
  std::string action;  // import, view, status, tags, note, export, media
  std::string report;  // the report it concerns (device hex ":" id hex), or "" for the whole desk
  std::string detail;  // what was done, in plain words (no report contents)
  crypto::Hash prev{}, hash{};
  std::array<uint8_t, 64> signature{};
};

crypto::Hash CustodyHash(const crypto::Hash& prev, uint64_t seq, int64_t time_ms, std::string_view action,
                         std::string_view report, std::string_view detail);

// Appends one entry; call it inside the transaction that makes the change it records.
Status AppendCustody(db::Db& db, const Organisation& org, std::string_view action, std::string_view report,
                     std::string_view detail, int64_t now_ms);
// The whole log in order (`report` empty), or the entries of one report.
Result<std::vector<CustodyEntry>> ReadCustody(db::Db& db, std::string_view report = {});
// Checks the whole log against the organisation's root: "" when every hash links and every signature holds.
std::string VerifyCustody(const std::vector<CustodyEntry>& all, const crypto::PublicKey& root);
// JSON Lines, one entry a line, hashes and signatures in hex.
std::string CustodyJsonLines(const std::vector<CustodyEntry>& entries);

}  // namespace dala::desk
