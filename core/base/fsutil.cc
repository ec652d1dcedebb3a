#include "base/fsutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/failpoint.h"

namespace dala::fs {

Status FromErrno(int err, const std::string& action, const std::string& path) {
  std::string msg = "cannot " + action + " '" + path + "': " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return {Code::kNotFound, msg};
    case EACCES:
    case EPERM:
    case EROFS:
      return {Code::kPermission, msg + " (check the directory's permissions)"};
    case ENOSPC:
    case EDQUOT:
      return {Code::kNoSpace, msg + " (free some space and try again; nothing was lost)"};
    case ENOMEM:
      return {Code::kNoMemory, msg};
    default:
      return {Code::kIo, msg};
  }
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Status EnsureDirectory(const std::string& dir) {
  if (IsDirectory(dir)) return Status::Ok();
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return FromErrno(errno, "create directory", dir);
  return Status::Ok();
}

namespace {
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

}  // namespace

Status WriteAll(int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return FromErrno(errno, "write", path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

Result<std::vector<uint8_t>> ReadFile(const std::string& path, size_t max_size) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return FromErrno(errno, "open", path);
  std::vector<uint8_t> out;
  uint8_t buf[4096];
  for (;;) {
    ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      return FromErrno(errno, "read", path);
    }
    if (r == 0) break;
    if (out.size() + static_cast<size_t>(r) > max_size) return Status(Code::kCorrupt, "file '" + path + "' is larger than expected");
    out.insert(out.end(), buf, buf + r);
  }
  return out;
}

Status CopyFile(const std::string& from, const std::string& to) {
  Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) return FromErrno(errno, "open", from);
  Fd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (out.get() < 0) return FromErrno(errno, "create", to);
  std::vector<uint8_t> buf(1u << 20);
  for (;;) {
    ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FromErrno(errno, "read", from);
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out.get(), buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return FromErrno(errno, "write", to);
      done += w;
    }
  }
  if (::fsync(out.get()) != 0) return FromErrno(errno, "sync", to);
  return Status::Ok();
}

// 64-bit offsets and inode numbers everywhere (CMakeLists.txt defines _FILE_OFFSET_BITS=64 on 32-bit systems;
// an app's own build of libdala must too): attachments past 2 GiB, readdir on large file systems.
static_assert(sizeof(off_t) == 8 && sizeof(ino_t) == 8, "build with -D_FILE_OFFSET_BITS=64");

Result<std::vector<std::string>> ListFiles(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return out;
    return FromErrno(errno, "list", dir);
  }
  for (;;) {
    errno = 0;
    dirent* e = ::readdir(d);
    if (e == nullptr) break;
    std::string name = e->d_name;
    if (name != "." && name != ".." && e->d_type != DT_DIR) out.push_back(std::move(name));
  }
  // NULL ends the listing or reports an error (EOVERFLOW, EIO): a short list must never pass for the whole one.
  const int err = errno;
  ::closedir(d);
  if (err != 0) return FromErrno(err, "list", dir);
  return out;
}

std::string Join(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

static std::string DirName(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

Status SyncDirectory(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return FromErrno(errno, "open directory", dir);
  if (::fsync(fd.get()) != 0) return FromErrno(errno, "sync directory", dir);
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> bytes) {
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) return FromErrno(errno, "create", tmp);
  Status st = WriteAll(fd.get(), bytes.data(), bytes.size(), tmp);
  if (st.ok() && ::fsync(fd.get()) != 0) st = FromErrno(errno, "sync", tmp);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  ::close(fd.release());
  Failpoint("atomic_write.before_rename");
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return FromErrno(err, "replace", path);
  }
  return SyncDirectory(DirName(path));
}

Status CreatePrivateFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) return FromErrno(errno, "create", path);
  return Status::Ok();
}

Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return FromErrno(errno, "remove", path);
  return Status::Ok();
}

namespace {

// Overwrites the whole file behind fd (from its start) with random bytes and syncs it.
Status OverwriteWithNoise(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return FromErrno(errno, "inspect", path);
  if (::lseek(fd, 0, SEEK_SET) != 0) return FromErrno(errno, "rewind", path);
  // The noise is a ChaCha20 key stream under a fresh random key: the system's random source (what
  // randombytes_buf reads here) took 0.42 s for 107 MB, the key stream 0.04 s.
  std::vector<uint8_t> noise(static_cast<size_t>(std::min<off_t>(st.st_size, 256 << 10)));
  uint8_t key[crypto_stream_chacha20_ietf_KEYBYTES], nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
  randombytes_buf(key, sizeof key);
  off_t left = st.st_size;
  while (left > 0) {
    size_t n = left < static_cast<off_t>(noise.size()) ? static_cast<size_t>(left) : noise.size();
    crypto_stream_chacha20_ietf(noise.data(), n, nonce, key);
    sodium_increment(nonce, sizeof nonce);
    Status written = WriteAll(fd, noise.data(), n, path);
    if (!written.ok()) {
      sodium_memzero(key, sizeof key);
      return written;
    }
    left -= static_cast<off_t>(n);
  }
  sodium_memzero(key, sizeof key);
  if (::fdatasync(fd) != 0) return FromErrno(errno, "sync", path);
  return Status::Ok();
}

}  // namespace

Status ShredFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    if (errno == ENOENT) return Status::Ok();
    return FromErrno(errno, "open", path);
  }
  DALA_RETURN_IF_ERROR(OverwriteWithNoise(fd.get(), path));
  ::close(fd.release());
  return RemoveFile(path);
}

Status OverwriteFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) return errno == ENOENT ? Status::Ok() : FromErrno(errno, "open", path);
  return OverwriteWithNoise(fd.get(), path);
}

Status OverwriteOpenFile(int fd, const std::string& path) { return OverwriteWithNoise(fd, path); }

Status SyncFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return FromErrno(errno, "open", path);
  if (::fsync(fd.get()) != 0) return FromErrno(errno, "sync", path);
  return Status::Ok();
}

Status ReplaceFileShreddingOld(const std::string& path, std::span<const uint8_t> bytes) {
  Fd old(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (old.get() < 0 && errno != ENOENT) return FromErrno(errno, "open", path);
  DALA_RETURN_IF_ERROR(WriteFileAtomic(path, bytes));
  // Done: the new file is in place. Overwriting the old bytes is best effort from here (a failure must
  // not report the replacement as failed).
  if (old.get() >= 0) (void)OverwriteWithNoise(old.get(), path);
  return Status::Ok();
}

}  // namespace dala::fs
