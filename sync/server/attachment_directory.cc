// Attachments as files in a directory: one file per attachment, written in place chunk by chunk, made
// durable with fdatasync. Nodes sharing the directory take an flock on the file they write.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/fsutil.h"
#include "crypto/chunk_tree.h"
#include "server/attachment_store.h"

namespace dala::server {

uint64_t VerifiedBytes(std::span<const uint8_t> bytes, uint64_t offset, const AttachmentShape& shape) {
  const uint64_t chunk = shape.chunk_size;
  if (chunk == 0 || offset % chunk != 0 || shape.chunk_hashes.size() != 32 * ((shape.size + chunk - 1) / chunk)) return 0;
  uint64_t good = 0;
  while (good < bytes.size() && offset + good < shape.size) {
    const uint64_t len = std::min<uint64_t>(chunk, shape.size - offset - good);
    if (bytes.size() - good < len) break;
    crypto::Hash h = attachment::ChunkTree::HashChunk(bytes.subspan(good, len));
    if (std::memcmp(h.data(), shape.chunk_hashes.data() + 32 * ((offset + good) / chunk), 32) != 0) break;
    good += len;
  }
  return good;
}

// How much of an attachment file is verified: whole chunks from the start, each checked against the
// manifest, up to the first that is missing or does not match (a crash may leave chunks that were written
// but never synced). Never reads past the hashes it is given.
uint64_t VerifiedPrefix(const std::string& path, uint64_t size, uint32_t chunk_size, std::string_view hashes) {
  if (chunk_size == 0 || hashes.size() != 32 * ((size + chunk_size - 1) / chunk_size)) return 0;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  const AttachmentShape shape{size, chunk_size, hashes};
  std::vector<uint8_t> buf(chunk_size);
  uint64_t good = 0;
  while (good < size) {
    const uint64_t len = std::min<uint64_t>(chunk_size, size - good);
    ssize_t n = ::pread(fd, buf.data(), len, static_cast<off_t>(good));
    if (n != static_cast<ssize_t>(len) || VerifiedBytes({buf.data(), len}, good, shape) != len) break;
    good += len;
  }
  ::close(fd);
  return good;
}

namespace {

// Node marks: hidden files, never an attachment's name (those are hex).
const std::string kMarkPrefix = ".dala-node-mark-";

class DirectoryWriter final : public AttachmentWriter {
 public:
  DirectoryWriter(int fd, uint64_t held) : fd_(fd), held_(held), durable_(held), written_(held) {}
  ~DirectoryWriter() override { ::close(fd_); }

  uint64_t held() const override { return held_; }

  Status Append(uint64_t offset, std::span<const uint8_t> data) override {
    if (failed_ || offset != written_) return Status(Code::kState, "an attachment write out of order");
    size_t done = 0;
    while (done < data.size()) {
      ssize_t w = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      done += static_cast<size_t>(w);
    }
    if (done != data.size()) {  // e.g. the disk is full
      const int err = errno;
      (void)::ftruncate(fd_, static_cast<off_t>(written_));
      failed_ = true;
      return fs::FromErrno(err, "cannot write the attachment file", "");
    }
    // Start writing it to disk now, without waiting: the fdatasync before the answer then has little
    // left to do, and the disk works while the next chunks arrive.
#ifdef __linux__
    (void)::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(data.size()), SYNC_FILE_RANGE_WRITE);
#endif
    written_ += data.size();
    return Status::Ok();
  }

  Result<uint64_t> Sync() override {
    if (failed_) return Status(Code::kIo, "the attachment file failed earlier");
    if (written_ == durable_) return durable_;
    if (::fdatasync(fd_) != 0) {
      (void)::ftruncate(fd_, static_cast<off_t>(durable_));
      failed_ = true;
      return Status(Code::kIo, "the attachment file could not be made durable");
    }
    durable_ = written_;
    return durable_;
  }

  // Every byte written: the file is the attachment once synced (again: a crash may have left it unsynced).
  Status Finish() override {
    if (failed_ || ::fdatasync(fd_) != 0) return Status(Code::kIo, "the attachment file could not be made durable");
    return Status::Ok();
  }

 private:
  int fd_;
  uint64_t held_, durable_, written_;
  bool failed_ = false;
};

class DirectoryStore final : public AttachmentStore {
 public:
  explicit DirectoryStore(std::string dir) : dir_(std::move(dir)) {}

  std::string Describe() const override { return "the directory " + dir_; }

  std::optional<uint64_t> Version(const std::string& name) override {
    struct stat sb;
    return ::stat(Path(name).c_str(), &sb) == 0 ? static_cast<uint64_t>(sb.st_size) : 0;
  }

  Result<uint64_t> Held(const std::string& name, const AttachmentShape& shape) override {
    return VerifiedPrefix(Path(name), shape.size, shape.chunk_size, shape.chunk_hashes);
  }

  Result<std::unique_ptr<AttachmentWriter>> Open(const std::string& name, const AttachmentShape& shape,
                                                 std::optional<uint64_t> known) override {
    int fd = ::open(Path(name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return Status(Code::kIo, "the attachment file could not be opened");
    // One writer per attachment file, whichever node (nodes may share the directory): the lock goes with
    // the file descriptor. Under it, what the file holds is read again if another node changed it.
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return Status(Code::kBusy, "another upload of this attachment is in progress");
    }
    struct stat sb;
    uint64_t held = 0;
    if (known && ::fstat(fd, &sb) == 0 && static_cast<uint64_t>(sb.st_size) == *known) {
      held = *known;
    } else {
      held = VerifiedPrefix(Path(name), shape.size, shape.chunk_size, shape.chunk_hashes);
    }
    if (::ftruncate(fd, static_cast<off_t>(held)) != 0) {  // drops an unverified tail (never extends)
      ::close(fd);
      return Status(Code::kIo, "the attachment file could not be truncated");
    }
    return std::unique_ptr<AttachmentWriter>(new DirectoryWriter(fd, held));
  }

  Status CopyTo(const std::string& name, uint64_t, const std::string& path) override {
    if (::link(Path(name).c_str(), path.c_str()) == 0) return Status::Ok();  // a hard link where allowed
    return fs::CopyFile(Path(name), path);
  }

  Result<std::string> Read(const std::string& name, uint64_t offset, size_t length) override {
    int fd = ::open(Path(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status(Code::kNotFound, "an attachment file is missing");
    std::string out(length, '\0');
    size_t got = 0;
    while (got < length) {
      ssize_t n = ::pread(fd, out.data() + got, length - got, static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ::close(fd);
        return Status(Code::kIo, "could not read an attachment file");
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    out.resize(got);
    return out;
  }

  Result<uint64_t> Verified(const std::string& name, const AttachmentShape& shape) override { return Held(name, shape); }

  Result<std::optional<uint64_t>> BytesHeld() override {
    DALA_ASSIGN_OR_RETURN(std::vector<std::string> files, fs::ListFiles(dir_));
    uint64_t stored = 0;
    struct stat sb;
    for (const auto& b : files)
      if (b.rfind(kMarkPrefix, 0) != 0 && ::stat(Path(b).c_str(), &sb) == 0) stored += static_cast<uint64_t>(sb.st_size);
    return std::optional<uint64_t>(stored);
  }

  Status PutMark(const std::string& token) override {
    DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(Path(kMarkPrefix + token), crypto::Bytes(token)));
    return fs::SyncDirectory(dir_);
  }
  std::string MarkName(const std::string& token) const override { return Path(kMarkPrefix + token); }
  Result<bool> HasMark(const std::string& token) override {
    struct stat sb;
    if (::lstat(Path(kMarkPrefix + token).c_str(), &sb) == 0) return true;
    if (errno == ENOENT) return false;
    return fs::FromErrno(errno, "read", Path(kMarkPrefix + token));  // not "missing": the store is unreadable
  }
  Status RemoveMark(const std::string& token) override { return fs::RemoveFile(Path(kMarkPrefix + token)); }

 private:
  std::string Path(const std::string& name) const { return fs::Join(dir_, name); }
  std::string dir_;
};

}  // namespace

Result<std::unique_ptr<AttachmentStore>> OpenDirectoryStore(const std::string& dir) {
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(dir));
  return std::unique_ptr<AttachmentStore>(new DirectoryStore(dir));
}

}  // namespace dala::server
