// Verifying a server's log with nothing but the organisation's public identity (docs/protocol.md,
// "Verifying the log with the public identity only"): no desk key, no report contents. For auditors,
// courts and anyone the organisation hands an export or a phone's receipts to.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"
#include "format/merkle.h"

namespace dala::desk {

struct LogVerdict {
  std::string server_key;         // hex, the export's
  uint64_t leaves = 0;            // in the export's log
  uint64_t head_size = 0;         // of its signed head (0: none verified)
  int64_t head_time_ms = 0;
  uint64_t statement_version = 0; // the organisation's statement the checks used
  uint64_t receipts = 0;          // phones' receipts given
  uint64_t receipts_in_log = 0;   // of them, at their proven place in a head the organisation authorised
  uint64_t timestamps = 0;        // time-stamps that verified (with trusted TSA certificates)
  std::vector<std::string> problems;  // anything that did not verify: the verdict is "fails"
  bool ok() const { return problems.empty(); }
};

struct LogVerifyInputs {
  std::string export_path;                  // empty: receipts only
  std::vector<std::string> phone_receipts;  // SignedReceipt bytes (dala receipts --json)
  std::vector<std::string> statements;      // SignedStatement bytes the verifier holds (the newest is used)
  std::string trusted_tsa_pem;              // empty: time-stamps not checked
};

// One time-stamp of a server's log (docs/protocol.md, "Trusted time"): its head signed by `server_key`,
// authorised by `statement` at the head's time, a head of `log` (a log whose own head verified; nullptr:
// none did), the token by a TSA `trusted_pem` names, over exactly the head's bytes. Its head's size and
// the TSA's stamp; else what fails, in words. `trusted_pem` empty: the head alone is checked (time_ms 0).
struct StampedHead {
  uint64_t size = 0;
  int64_t time_ms = 0;
  std::string tsa;
};
Result<StampedHead> CheckLogTimestamp(const v1::LogTimestamp& t, std::string_view server_key,
                                      const v1::OrgStatement& statement, const merkle::Tree* log,
                                      const std::string& trusted_pem);

// Every check needs only `root` (the organisation's identity) and what the inputs carry.
Result<LogVerdict> VerifyLog(const crypto::PublicKey& root, const LogVerifyInputs& in);

}  // namespace dala::desk
