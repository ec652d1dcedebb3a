// Who may use a store directory at once: every open handle holds a shared lock on the directory (flock),
// a re-key an exclusive one, so that a re-key never copies a database another handle is still writing.
#pragma once

#include <string>

#include "base/status.h"

namespace dala {

class StoreLock {
 public:
  // kBusy when a re-key holds the store.
  static Result<StoreLock> Shared(const std::string& dir);
  // kBusy when any handle is open on the store (in this process or another).
  static Result<StoreLock> Exclusive(const std::string& dir);
  StoreLock() = default;
  ~StoreLock();
  StoreLock(StoreLock&& other) noexcept;
  StoreLock& operator=(StoreLock&& other) noexcept;
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  static Result<StoreLock> Take(const std::string& dir, bool exclusive);
  int fd_ = -1;
};

}  // namespace dala
