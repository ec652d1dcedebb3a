#include "store/store_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "base/fsutil.h"

namespace dala {

Result<StoreLock> StoreLock::Take(const std::string& dir, bool exclusive) {
  StoreLock lock;
  lock.fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (lock.fd_ < 0) return fs::FromErrno(errno, "open", dir);
  while (::flock(lock.fd_, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK)
      return Status(Code::kBusy, exclusive ? "the store is open elsewhere; close every handle on it first"
                                           : "the store is being re-keyed; open it when that is done");
    return fs::FromErrno(errno, "lock", dir);
  }
  return lock;
}

Result<StoreLock> StoreLock::Shared(const std::string& dir) { return Take(dir, false); }
Result<StoreLock> StoreLock::Exclusive(const std::string& dir) { return Take(dir, true); }

StoreLock::~StoreLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the lock
}
StoreLock::StoreLock(StoreLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
StoreLock& StoreLock::operator=(StoreLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

}  // namespace dala
