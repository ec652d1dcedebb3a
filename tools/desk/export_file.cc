#include "desk/export_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include <sodium.h>

#include "base/fsutil.h"

namespace dala::desk {
namespace {

constexpr int kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5;

// Reads a file front to back through one buffer, by absolute offsets; skipping costs nothing.
class Scanner {
 public:
  Scanner(int fd, uint64_t size, bool hash) : fd_(fd), size_(size), buf_(1 << 20), hashing_(hash) {
    if (hashing_) crypto_generichash_init(&hash_, nullptr, 0, 32);
  }
  crypto::Hash Hash() {
    crypto::Hash h{};
    crypto_generichash_final(&hash_, h.data(), h.size());
    return h;
  }
  uint64_t pos() const { return pos_; }
  bool done() const { return pos_ == size_; }
  const Status& error() const { return error_; }

  bool Byte(uint8_t* b) {
    if (pos_ >= size_ || (!InBuffer() && !Fill())) return false;
    *b = static_cast<uint8_t>(buf_[pos_ - start_]);
    ++pos_;
    return true;
  }
  // A varint as protobuf reads one: at most 10 bytes for a value, 5 for a tag or a length.
  bool Varint(uint64_t* v, int max_bytes = 10) {
    *v = 0;
    for (int i = 0; i < max_bytes; ++i) {
      uint8_t b;
      if (!Byte(&b)) return false;
      *v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool Bytes(uint64_t n, std::string* out) {
    if (n > size_ - pos_) return false;
    out->resize(n);
    for (uint64_t done = 0; done < n;) {
      if (!InBuffer() && !Fill()) return false;
      const uint64_t take = std::min<uint64_t>(n - done, start_ + len_ - pos_);
      std::memcpy(out->data() + done, buf_.data() + (pos_ - start_), take);
      done += take;
      pos_ += take;
    }
    return true;
  }
  bool Skip(uint64_t n) {
    if (n > size_ - pos_) return false;
    if (!hashing_) {
      pos_ += n;
      return true;
    }
    for (uint64_t done = 0; done < n;) {  // read through, for the hash
      if (!InBuffer() && !Fill()) return false;
      const uint64_t take = std::min<uint64_t>(n - done, start_ + len_ - pos_);
      done += take;
      pos_ += take;
    }
    return true;
  }

 private:
  bool InBuffer() const { return pos_ >= start_ && pos_ < start_ + len_; }
  bool Fill() {
    for (;;) {
      const ssize_t n = ::pread(fd_, buf_.data(), buf_.size(), static_cast<off_t>(pos_));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (error_.ok()) error_ = n < 0 ? fs::FromErrno(errno, "could not read", "the export")
                                        : Status(Code::kCorrupt, "the export ended early (it changed while read)");
        return false;
      }
      start_ = pos_;
      len_ = static_cast<size_t>(n);
      // Hashing, every read continues the last (nothing is skipped over): each byte is hashed once, in order.
      if (hashing_) crypto_generichash_update(&hash_, reinterpret_cast<const uint8_t*>(buf_.data()), len_);
      return true;
    }
  }
  int fd_;
  uint64_t size_;
  uint64_t pos_ = 0;
  std::vector<char> buf_;
  uint64_t start_ = 0;
  size_t len_ = 0;
  Status error_ = Status::Ok();
  bool hashing_;
  crypto_generichash_state hash_;
};

struct Field {
  uint32_t number = 0;
  int wire_type = 0;
  std::string_view payload;  // length-delimited only
};

// Splits a serialized message (small: an entry, an enrolment, a time-stamp) into its top-level fields; false
// when protobuf would not parse it (or it holds groups).
bool SplitMessage(std::string_view bytes, std::vector<Field>* out) {
  out->clear();
  size_t pos = 0;
  auto varint = [&](uint64_t* v, int max_bytes = 10) {
    *v = 0;
    for (int i = 0; i < max_bytes; ++i) {
      if (pos >= bytes.size()) return false;
      const uint8_t b = static_cast<uint8_t>(bytes[pos++]);
      *v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) return true;
    }
    return false;
  };
  while (pos < bytes.size()) {
    uint64_t tag, v;
    if (!varint(&tag, 5) || tag > UINT32_MAX || (tag >> 3) == 0) return false;
    Field f{static_cast<uint32_t>(tag >> 3), static_cast<int>(tag & 7), {}};
    switch (f.wire_type) {
      case kVarint:
        if (!varint(&v)) return false;
        break;
      case kFixed64:
      case kFixed32: {
        const size_t n = f.wire_type == kFixed64 ? 8 : 4;
        if (bytes.size() - pos < n) return false;
        pos += n;
        break;
      }
      case kBytes:
        if (!varint(&v, 5) || v > INT32_MAX || v > bytes.size() - pos) return false;
        f.payload = bytes.substr(pos, v);
        pos += v;
        break;
      default:
        return false;
    }
    out->push_back(f);
  }
  return true;
}

// Each field one that `rules` names (number, wire type, repeated), a singular one at most once.
struct Rule {
  uint32_t number;
  int wire_type;
  bool repeated;
};
bool OnlyKnown(const std::vector<Field>& fields, std::initializer_list<Rule> rules) {
  std::map<uint32_t, int> count;
  for (const auto& f : fields) {
    const Rule* rule = nullptr;
    for (const auto& r : rules)
      if (r.number == f.number) rule = &r;
    if (rule == nullptr || rule->wire_type != f.wire_type || (!rule->repeated && ++count[f.number] > 1)) return false;
  }
  return true;
}

Status NotAnExport(const std::string& path) {
  return Status(Code::kCorrupt, "'" + path + "' is not a dala-server export");
}

}  // namespace

bool SplitEntry(std::string_view entry, std::string_view* envelope, std::string_view* receipt) {
  std::vector<Field> fields;
  if (!SplitMessage(entry, &fields)) return false;
  *envelope = {};
  *receipt = {};
  for (const auto& f : fields) {
    if (f.number == 1 && f.wire_type == kBytes) *envelope = f.payload;
    if (f.number == 2 && f.wire_type == kBytes) *receipt = f.payload;
  }
  return true;
}

void AppendBytesField(uint32_t number, std::string_view bytes, std::string* out) {
  auto varint = [out](uint64_t v) {
    while (v >= 0x80) {
      out->push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out->push_back(static_cast<char>(v));
  };
  varint((static_cast<uint64_t>(number) << 3) | kBytes);
  varint(bytes.size());
  out->append(bytes);
}

Result<ExportFile> ReadExport(const std::string& path, const ExportParts& parts) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fs::FromErrno(errno, "could not open", path);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) return fs::FromErrno(errno, "could not read", path);
  ExportFile ex;
  ex.path = path;
  ex.size = static_cast<uint64_t>(st.st_size);
  if (ex.size > kMaxExportBytes)
    return Status(Code::kInvalidArgument, "'" + path + "' is larger than 2 GiB, more than one export may hold; "
                                          "export the server's reports in parts");
  Scanner in(fd, ex.size, parts.hash);
  // Runs of unknown fields are kept as one place (a file of tiny unknown fields must not cost 8 times its size).
  auto unknown_place = [&](uint64_t from) {
    if (!ex.unknown.empty() && ex.unknown.back().offset + ex.unknown.back().size == from)
      ex.unknown.back().size += in.pos() - from;
    else
      ex.unknown.push_back({from, in.pos() - from});
  };
  std::map<uint32_t, int> singular;  // how often each singular field came
  bool strict = true;                // the export's own fields: only known ones, singular ones once
  std::string payload;
  std::vector<Field> inner;
  // A read error as such; anything else that stops the reading short: not an export.
  auto bad = [&] { return in.error().ok() ? NotAnExport(path) : in.error(); };
  while (!in.done()) {
    const uint64_t field_start = in.pos();
    uint64_t tag;
    if (!in.Varint(&tag, 5) || tag > UINT32_MAX || (tag >> 3) == 0) return bad();
    const uint32_t number = static_cast<uint32_t>(tag >> 3);
    const int wire_type = static_cast<int>(tag & 7);
    const bool known_bytes = wire_type == kBytes && number >= 1 && number <= 7;
    const bool known = known_bytes || (wire_type == kVarint && number == 8);
    // log_from is read, but counts as a field a full export does not hold, as every strict reader counts it.
    if (!known || number == 8) strict = false;
    else if ((number == 1 || number == 4 || number == 6) && ++singular[number] > 1) strict = false;
    uint64_t v = 0;
    if (wire_type == kVarint) {
      if (!in.Varint(&v)) return bad();
      if (known) ex.log_from = v;
      else unknown_place(field_start);
      continue;
    }
    if (wire_type == kFixed64 || wire_type == kFixed32) {
      if (!in.Skip(wire_type == kFixed64 ? 8 : 4)) return bad();
      unknown_place(field_start);
      continue;
    }
    if (wire_type != kBytes || !in.Varint(&v, 5) || v > INT32_MAX) return bad();
    const uint64_t at = in.pos();
    if (!known) {
      if (!in.Skip(v)) return bad();
      unknown_place(field_start);
      continue;
    }
    const bool keep = number == 1 || number == 4 || number == 6 || (number == 2 && parts.entries) ||
                      (number == 3 && parts.enrolments) || (number == 5 && parts.log) ||
                      (number == 7 && parts.timestamps);
    if (!keep) {
      if (!in.Skip(v)) return bad();
      if (number == 5) ++ex.log_size;
      continue;
    }
    if (!in.Bytes(v, &payload)) return bad();
    switch (number) {
      case 1: ex.server_key = payload; break;
      case 4: ex.statement = payload; break;
      case 6: ex.log_head = payload; break;
      case 5:
        ++ex.log_size;
        ex.log.push_back(payload);
        break;
      case 2:
        if (!SplitMessage(payload, &inner)) return NotAnExport(path);
        if (!OnlyKnown(inner, {{1, kBytes, false}, {2, kBytes, false}})) ++ex.unknown_fields;
        ex.entries.push_back({at, v});
        ex.entry_hashes.push_back(crypto::Blake2b256(crypto::Bytes(payload)));
        break;
      case 3: {
        if (!SplitMessage(payload, &inner)) return NotAnExport(path);
        if (!OnlyKnown(inner, {{1, kBytes, false}, {2, kBytes, false}, {3, kBytes, false}, {4, kVarint, false}}))
          ++ex.unknown_fields;
        if (!ex.enrolments.emplace_back().ParseFromString(payload)) return NotAnExport(path);
        break;
      }
      case 7:
        if (!SplitMessage(payload, &inner)) return NotAnExport(path);
        if (!OnlyKnown(inner, {{1, kBytes, false}, {2, kBytes, false}})) ++ex.unknown_fields;
        if (!ex.timestamps.emplace_back().ParseFromString(payload)) return NotAnExport(path);
        break;
    }
  }
  if (!strict) ++ex.unknown_fields;
  if (parts.hash) ex.file_hash = in.Hash();
  return ex;
}

Result<EntryReader> EntryReader::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fs::FromErrno(errno, "could not open", path);
  return EntryReader(fd);
}

EntryReader::~EntryReader() {
  if (fd_ >= 0) ::close(fd_);
}

Status EntryReader::ReadEntry(const ExportFile& ex, size_t i, std::string* out) const {
  DALA_RETURN_IF_ERROR(Read(ex.entries[i], out));
  if (i >= ex.entry_hashes.size() || crypto::Blake2b256(crypto::Bytes(*out)) != ex.entry_hashes[i])
    return Status(Code::kCorrupt, "the export changed while it was read (entry " + std::to_string(i + 1) + ")");
  return Status::Ok();
}

Status EntryReader::Read(const ExportFile::Place& place, std::string* out) const {
  out->resize(place.size);
  for (uint64_t done = 0; done < place.size;) {
    const ssize_t n = ::pread(fd_, out->data() + done, place.size - done, static_cast<off_t>(place.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fs::FromErrno(errno, "could not read", "the export");
    if (n == 0) return Status(Code::kCorrupt, "the export ended early (it changed while read)");
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

}  // namespace dala::desk
