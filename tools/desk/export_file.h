// An export on disk (dala.v1.Export), read in one pass without being held: its small parts kept, its report
// entries only as places in the file, read back one at a time when needed. A desk's memory then grows with
// the number of reports (a few hundred bytes each), not with their bytes. What it gives is what protobuf
// would make of the same bytes (a singular field's last occurrence, repeated fields in order), plus strict
// parsing's count of places holding a field this desk does not know, or a singular field twice (an entry
// may hide there behind a changed tag).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"

namespace dala::desk {

struct ExportFile {
  struct Place {
    uint64_t offset = 0;  // of the first byte
    uint64_t size = 0;
  };
  std::string path;
  uint64_t size = 0;        // the file's bytes
  std::string server_key;   // field 1
  std::string statement;    // field 4
  std::string log_head;     // field 6
  uint64_t log_from = 0;    // field 8
  uint64_t log_size = 0;    // leaves of field 5 (held in `log` when asked)
  std::vector<std::string> log;
  std::vector<Place> entries;  // field 2: each ExportedReport's bytes
  std::vector<crypto::Hash> entry_hashes;  // BLAKE2b-256 of each as read here: what reading it back must give
  std::vector<v1::Enrolment> enrolments;   // field 3
  std::vector<v1::LogTimestamp> timestamps;  // field 7
  std::vector<Place> unknown;  // top-level fields this desk does not know, tag and all, runs of them joined (a
                               // join carries them)
  uint64_t unknown_fields = 0;  // places strict parsing refuses: the export as a whole (at most 1), each entry,
                                // enrolment and time-stamp. log_from counts as unknown at the top (a full export
                                // has none; an incremental one is refused or joined before it is checked).
  crypto::Hash file_hash{};     // BLAKE2b-256 of every byte as read here (ExportParts::hash)
};

// What to keep of an export besides its singular fields (which are always read): the rest is skipped over.
struct ExportParts {
  bool entries = true;
  bool log = true;          // the leaves (else only counted)
  bool enrolments = true;
  bool timestamps = true;
  bool hash = false;        // file_hash (the parts skipped are read through)
};

// kCorrupt when the file is not an export as protobuf would parse it, or holds groups or tags of more than 32
// bits (which Dala never writes and protobuf reads by truncating them); kInvalidArgument for a file larger than
// 2 GiB (protobuf's limit for one message): refused as such, not misread.
Result<ExportFile> ReadExport(const std::string& path, const ExportParts& parts = {});
inline constexpr uint64_t kMaxExportBytes = 0x7fffffff;

// An entry's bytes read back (thread-safe: each call reads on its own).
class EntryReader {
 public:
  static Result<EntryReader> Open(const std::string& path);
  EntryReader(EntryReader&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  EntryReader& operator=(EntryReader&&) = delete;
  ~EntryReader();
  Status Read(const ExportFile::Place& place, std::string* out) const;
  // Entry `i` of `ex` (read with its entries), checked to be the bytes ReadExport read: kCorrupt if the file
  // changed since.
  Status ReadEntry(const ExportFile& ex, size_t i, std::string* out) const;

 private:
  explicit EntryReader(int fd) : fd_(fd) {}
  int fd_;
};

// An ExportedReport's envelope and receipt (each the last occurrence, as protobuf takes them); false when
// the bytes are not one.
bool SplitEntry(std::string_view entry, std::string_view* envelope, std::string_view* receipt);

// Appends a length-delimited field (tag, length, bytes) to `out`.
void AppendBytesField(uint32_t number, std::string_view bytes, std::string* out);

}  // namespace dala::desk
