#include "desk/export_merge.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <set>
#include <utility>

#include "base/fsutil.h"
#include "desk/export_file.h"

namespace dala::desk {
namespace {

// A new file (0600) written through a buffer, hashing (BLAKE2b-256) every byte it writes.
class HashingWriter {
 public:
  explicit HashingWriter(std::string path) : path_(std::move(path)) { crypto_generichash_init(&hash_, nullptr, 0, 32); }
  ~HashingWriter() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Create() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    return fd_ < 0 ? fs::FromErrno(errno, "create", path_) : Status::Ok();
  }
  Status Append(std::string_view bytes) {
    crypto_generichash_update(&hash_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    buf_.append(bytes);
    return buf_.size() >= (1u << 20) ? Flush() : Status::Ok();
  }
  Status Field(uint32_t number, std::string_view bytes) {
    std::string f;
    AppendBytesField(number, bytes, &f);
    return Append(f);
  }
  Result<crypto::Hash> Finish() {
    DALA_RETURN_IF_ERROR(Flush());
    if (::fsync(fd_) != 0) return fs::FromErrno(errno, "sync", path_);
    crypto::Hash h{};
    crypto_generichash_final(&hash_, h.data(), h.size());
    return h;
  }

 private:
  Status Flush() {
    Status st = fs::WriteAll(fd_, reinterpret_cast<const uint8_t*>(buf_.data()), buf_.size(), path_);
    buf_.clear();
    return st;
  }
  std::string path_;
  int fd_ = -1;
  std::string buf_;
  crypto_generichash_state hash_;
};

Result<ExportFile> Read(const std::string& path, const char* what, bool hash) {
  ExportParts parts;
  parts.hash = hash;
  auto ex = ReadExport(path, parts);
  if (!ex.ok() && ex.status().code() == Code::kCorrupt)
    return Status(Code::kCorrupt, std::string(what) + " is not a dala-server export");
  if (ex.ok() && ex->server_key.size() != 32) return Status(Code::kCorrupt, std::string(what) + " is not a dala-server export");
  return ex;
}

// Each entry of `ex` (read from `reader`, checked to be the bytes first read) whose exact bytes `held` does not
// hold yet, as field 2.
Status CopyEntries(const EntryReader& reader, const ExportFile& ex, std::set<crypto::Hash>* held, HashingWriter* out) {
  std::string bytes;
  for (size_t i = 0; i < ex.entries.size(); ++i) {
    if (!held->insert(ex.entry_hashes[i]).second) continue;
    DALA_RETURN_IF_ERROR(reader.ReadEntry(ex, i, &bytes));
    DALA_RETURN_IF_ERROR(out->Field(2, bytes));
  }
  return Status::Ok();
}

// Each message of `from` whose serialization `held` does not hold yet, as field `number`.
template <typename Message>
Status CopyMessages(uint32_t number, const std::vector<Message>& from, std::set<std::string>* held, HashingWriter* out) {
  for (const auto& m : from)
    if (std::string b = m.SerializeAsString(); held->insert(b).second) DALA_RETURN_IF_ERROR(out->Field(number, b));
  return Status::Ok();
}

// Hands `sink` the file's bytes front to back, a MiB at a time.
Status ReadThrough(const std::string& path, const std::function<Status(std::string_view)>& sink) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fs::FromErrno(errno, "open", path);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  std::string buf(1u << 20, '\0');
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fs::FromErrno(errno, "read", path);
    if (n == 0) return Status::Ok();
    DALA_RETURN_IF_ERROR(sink(std::string_view(buf.data(), static_cast<size_t>(n))));
  }
}

}  // namespace

Result<Joined> JoinIncremental(const std::string& base_path, const std::string& inc_path, const std::string& out_path) {
  DALA_ASSIGN_OR_RETURN(ExportFile base, Read(base_path, "the kept export", false));
  DALA_ASSIGN_OR_RETURN(ExportFile inc, Read(inc_path, "the incremental export", true));
  if (base.log_from != 0) return Status(Code::kCorrupt, "the kept export is not a full export");
  if (base.server_key != inc.server_key)
    return Status(Code::kInvalidArgument, "the incremental export is another server's than the kept export");
  const uint64_t from = inc.log_from, held = base.log.size();
  if (from > held)
    return Status(Code::kInvalidArgument,
                  "the incremental export starts at log position " + std::to_string(from) + " but the desk holds this "
                  "server's log up to position " + std::to_string(held) + " only: export again with --since " +
                  std::to_string(held) + " (or less)");
  DALA_ASSIGN_OR_RETURN(EntryReader base_reader, EntryReader::Open(base_path));
  DALA_ASSIGN_OR_RETURN(EntryReader inc_reader, EntryReader::Open(inc_path));
  HashingWriter out(out_path);
  DALA_RETURN_IF_ERROR(out.Create());
  DALA_RETURN_IF_ERROR(out.Field(1, inc.server_key));
  std::set<crypto::Hash> entries;
  DALA_RETURN_IF_ERROR(CopyEntries(base_reader, base, &entries, &out));
  DALA_RETURN_IF_ERROR(CopyEntries(inc_reader, inc, &entries, &out));
  std::set<std::string> enrolments;
  DALA_RETURN_IF_ERROR(CopyMessages(3, base.enrolments, &enrolments, &out));
  DALA_RETURN_IF_ERROR(CopyMessages(3, inc.enrolments, &enrolments, &out));
  if (!inc.statement.empty()) DALA_RETURN_IF_ERROR(out.Field(4, inc.statement));
  for (uint64_t i = 0; i < from; ++i) DALA_RETURN_IF_ERROR(out.Field(5, base.log[i]));
  for (const auto& leaf : inc.log) DALA_RETURN_IF_ERROR(out.Field(5, leaf));
  if (!inc.log_head.empty()) DALA_RETURN_IF_ERROR(out.Field(6, inc.log_head));
  std::set<std::string> stamps;
  DALA_RETURN_IF_ERROR(CopyMessages(7, base.timestamps, &stamps, &out));
  DALA_RETURN_IF_ERROR(CopyMessages(7, inc.timestamps, &stamps, &out));
  std::string unknown;
  for (const auto& p : inc.unknown) {  // verbatim, tag and all
    DALA_RETURN_IF_ERROR(inc_reader.Read(p, &unknown));
    DALA_RETURN_IF_ERROR(out.Append(unknown));
  }
  Joined j;
  DALA_ASSIGN_OR_RETURN(j.joined, out.Finish());
  j.incremental = inc.file_hash;
  // The unknown fields were read a second time: the incremental export must still be the bytes first read,
  // whose hash the desk records.
  if (!inc.unknown.empty()) {
    DALA_ASSIGN_OR_RETURN(crypto::Hash again, HashFile(inc_path));
    if (again != j.incremental) return Status(Code::kCorrupt, "the incremental export changed while it was read");
  }
  return j;
}

Result<crypto::Hash> CopyExport(const std::string& from, const std::string& out_path) {
  HashingWriter out(out_path);
  DALA_RETURN_IF_ERROR(out.Create());
  DALA_RETURN_IF_ERROR(ReadThrough(from, [&](std::string_view b) { return out.Append(b); }));
  return out.Finish();
}

Result<crypto::Hash> HashFile(const std::string& path) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 32);
  DALA_RETURN_IF_ERROR(ReadThrough(path, [&](std::string_view b) {
    crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(b.data()), b.size());
    return Status::Ok();
  }));
  crypto::Hash h{};
  crypto_generichash_final(&st, h.data(), h.size());
  return h;
}

}  // namespace dala::desk
