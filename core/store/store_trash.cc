#include "store/store_trash.h"

#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "base/failpoint.h"

namespace dala::trash {

namespace {

constexpr size_t kHexDigits = 16;

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

int OpenDir(const std::string& dir) { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); }

// Entries of the directory open at `fd` (not "." or ".."); the descriptor is not consumed.
std::vector<std::string> Entries(int fd) {
  std::vector<std::string> out;
  int copy = ::dup(fd);
  if (copy < 0) return out;
  DIR* d = ::fdopendir(copy);
  if (d == nullptr) {
    ::close(copy);
    return out;
  }
  ::rewinddir(d);
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(std::move(name));
  }
  ::closedir(d);
  return out;
}

bool Exists(int parent, const std::string& name) {
  struct stat st {};
  return ::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

// Removes entry `name` of the directory open at `parent`, and everything under it. A symbolic link is
// removed, never followed (O_NOFOLLOW: a directory swapped for a link meanwhile is not entered).
void RemoveAt(int parent, const std::string& name) {
  if (::unlinkat(parent, name.c_str(), 0) == 0 || errno == ENOENT) return;
  Fd d(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (d.fd < 0) return;
  for (const auto& e : Entries(d.fd)) RemoveAt(d.fd, e);
  (void)::unlinkat(parent, name.c_str(), AT_REMOVEDIR);
}

struct Removal {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool complete = false;  // nothing of it left
  bool late = false;      // the caller returned first: the app may be making a new store in the directory
};

}  // namespace

bool IsTrashName(const std::string& name, const std::string& database) {
  if (name.size() != database.size() + 1 + kHexDigits || name.compare(0, database.size(), database) != 0 ||
      name[database.size()] != '.')
    return false;
  for (size_t i = database.size() + 1; i < name.size(); ++i)
    if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return false;
  return true;
}

std::string MoveAway(const std::string& dir, const std::string& database, const std::vector<std::string>& names,
                     Status* first, const std::string& from) {
  Fd top(OpenDir(dir));
  if (top.fd < 0) return std::string();
  Fd d(from.empty() ? ::dup(top.fd) : ::openat(top.fd, from.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (d.fd < 0) return std::string();
  uint8_t r[kHexDigits / 2];
  randombytes_buf(r, sizeof r);
  char hex[kHexDigits + 1];
  sodium_bin2hex(hex, sizeof hex, r, sizeof r);
  const std::string bin = database + "." + hex;
  Fd b(::mkdirat(top.fd, bin.c_str(), 0700) == 0
           ? ::openat(top.fd, bin.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
           : -1);
  for (const auto& n : names) {
    if (!Exists(d.fd, n)) continue;
    if (b.fd >= 0 && ::renameat(d.fd, n.c_str(), b.fd, n.c_str()) == 0) continue;
    RemoveAt(d.fd, n);  // not moved: removed here
    if (Exists(d.fd, n) && first->ok())
      *first = Status(Code::kIo, "could not remove '" + n + "' in '" + (from.empty() ? dir : dir + "/" + from) + "'");
  }
  return b.fd >= 0 ? bin : std::string();
}

bool RemoveInBackground(std::string dir, std::vector<std::string> names, bool remove_dir,
                        std::chrono::steady_clock::time_point deadline) {
  if (names.empty()) return true;
  auto state = std::make_shared<Removal>();
  auto remove = [state, dir, names = std::move(names), remove_dir] {
    Failpoint("wipe.removing");
    bool complete = false;
    if (Fd d(OpenDir(dir)); d.fd >= 0) {
      for (const auto& n : names) RemoveAt(d.fd, n);
      complete = true;
      for (const auto& n : names) complete = complete && !Exists(d.fd, n);
    }
    std::lock_guard lock(state->mu);
    if (!state->late && remove_dir) (void)::rmdir(dir.c_str());  // only if empty: the app's files stay
    state->complete = complete;
    state->done = true;
    state->cv.notify_all();
  };
  try {
    std::thread(remove).detach();
  } catch (const std::system_error&) {  // no thread to be had: removed here instead
    remove();
    return state->complete;
  }
  std::unique_lock lock(state->mu);
  if (!state->cv.wait_until(lock, deadline, [&] { return state->done; })) {
    state->late = true;
    return true;
  }
  return state->complete;
}

std::vector<std::string> Leftovers(const std::string& dir, const std::string& database) {
  std::vector<std::string> out;
  Fd d(OpenDir(dir));
  if (d.fd < 0) return out;
  for (const auto& e : Entries(d.fd)) {
    struct stat st {};
    if (IsTrashName(e, database) && ::fstatat(d.fd, e.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
      out.push_back(e);
  }
  return out;
}

}  // namespace dala::trash
