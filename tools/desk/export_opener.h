// The organisation's desk: opens a dala-server export with the organisation's secret key, verifies each
// report (device signatures outside and inside, the version chain, the server's receipt) and writes one
// JSON file per report plus summary.json. What fails is reported, never hidden.
#pragma once

#include <functional>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include "crypto/crypto.h"
#include "base/status.h"
#include "desk/desk_key.h"
#include "format/report.h"

namespace dala::desk {

struct Summary {
  std::string server_key;  // the export's server (32 bytes)
  uint64_t log_size = 0;   // leaves in its log
  uint64_t reports = 0;
  uint64_t verified = 0;   // every check passed
  uint64_t failed = 0;     // something did not verify (see summary.json)
  // About the export as a whole (summary.json lists each): any of them means it was altered or incomplete.
  uint64_t duplicates = 0;      // entries repeating a report version (written and counted once)
  uint64_t reordered = 0;       // entries listed out of the server's sequence order
  uint64_t unknown_fields = 0;  // places holding fields this desk does not know (an entry may hide there)
  uint64_t missing = 0;         // report versions the server received (its sequence numbers, its log, a
                                // phone's receipt) not in the export, or in it as other bytes
  uint64_t phone_receipts_invalid = 0;  // given receipts no authorised server key signed
  uint64_t log_problems = 0;  // the server's log does not verify, or a receipted entry or an enrolment is not in it
  // Trusted time (docs/protocol.md, "Trusted time"), with trusted TSA certificates given:
  uint64_t timestamps = 0;          // tokens that verified, over heads of this log
  uint64_t timestamp_problems = 0;  // tokens that did not, or none at all
  bool clean() const {
    return failed == 0 && duplicates == 0 && reordered == 0 && unknown_fields == 0 && missing == 0 &&
           phone_receipts_invalid == 0 && log_problems == 0 && timestamp_problems == 0;
  }
};

// One report version of an export, after every check (what dala desk open writes as its JSON file), for a
// caller that keeps it elsewhere (the desk store). Views are valid during the call only.
struct OpenedEntry {
  std::string_view device;     // 32 bytes: the device key (empty when not even the outer signature held)
  std::string_view report_id;  // 16 bytes
  uint32_t version = 0;
  bool verified = false;       // every check of this version passed
  const std::vector<std::string>* problems = nullptr;
  const Report* report = nullptr;  // the opened content; null when it did not open
  std::string_view envelope;   // the sealed bytes, exactly as exported
  std::string_view receipt;    // SignedReceipt bytes, exactly as exported
  bool receipt_ok = false;
  uint64_t sequence = 0;       // the server's number for it (receipt_ok)
  int64_t received_ms = 0;     // the receipt's server time (receipt_ok)
  std::string_view server_key; // the receipt's signer (receipt_ok)
  int64_t leaf_index = -1;     // its leaf in the export's log, when there
  // The device's enrolment through an invite the organisation's root signed (null: not enrolled so).
  const v1::Enrolment* enrolment = nullptr;
  const v1::Invite* invite = nullptr;  // that invite, checked
  std::string json;            // the JSON desk open writes for it: {verified, problems, receipt, attachments, ...}
  struct Attachment {
    std::string_view id;       // 16 bytes
    std::string_view mime;
    uint64_t size = 0;         // plaintext
    bool verified = false;     // decrypted end to end against its manifest and hashes
    std::string source;        // the encrypted file in the export's media directory
    std::string_view key;      // 32 bytes: its file key (from the sealed report)
    std::string_view plaintext_hash;  // BLAKE2b-256
    std::string_view ciphertext_root;  // the chunk-tree root of the encrypted file (the signed manifest's)
    uint32_t chunk_size = 0;
  };
  std::vector<Attachment> attachments;
};

struct OpenOptions {
  // SignedReceipt bytes phones kept (dala receipts --json), each cross-checked.
  std::vector<std::string> phone_receipts;
  // Where summary.json goes; empty: into the output directory, or nowhere when there is none.
  std::string summary_path;
  // Files of earlier exports (the desk's earlier imports): each of the same server must show a log this
  // export's extends (nothing removed or changed since), else a log problem.
  std::vector<std::string> earlier_exports;
  // Where attachments are looked for when not in the export's own PATH.media/ (the desk store's media, for
  // an incremental export joined to the kept one: the earlier reports' attachments are there, checked).
  std::vector<std::string> media_dirs;
  // Certificates (PEM) the organisation trusts for time: a TSA's own, or its CA's. Empty: the export's
  // time-stamps are not checked and nothing is claimed from them.
  std::string trusted_tsa_pem;
  // Called for every report version after the checks (in the export's order); an error ends the opening.
  std::function<Status(const OpenedEntry&)> sink;
  // Where the export came from when the file opened is a copy of it (the desk store checks its own copy):
  // the name messages give it, and its PATH.media/ is where attachments are looked for first. Empty: the
  // file opened.
  std::string source_path;
  // Called once with summary.json's text, before it is written anywhere.
  std::function<void(const std::string&)> summary_sink;
};

// Trusts only `org`: its root, its statement (which server keys sign receipts, and when), its keys.
// An empty `out_dir` runs every check and writes nothing decrypted (attachments are read through and
// checked, not kept).
Result<Summary> OpenExport(const Organisation& org, const std::string& export_path, const std::string& out_dir,
                           const OpenOptions& options = {});
inline Result<Summary> OpenExport(const Organisation& org, const std::string& export_path, const std::string& out_dir,
                                  std::vector<std::string> phone_receipts) {
  OpenOptions o;
  o.phone_receipts = std::move(phone_receipts);
  return OpenExport(org, export_path, out_dir, o);
}

}  // namespace dala::desk
