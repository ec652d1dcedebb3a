// The panic wipe: the key destroyed first, then the store's files moved out of the way and removed, on a
// thread of their own once the wipe has taken its time budget, so that it returns quickly whatever the
// store's size (freeing a file's blocks takes time in proportion to its size: about 75 ms for 250 MB here).

#include <dirent.h>
#include <sodium.h>
#include <sys/stat.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "base/failpoint.h"
#include "base/fsutil.h"
#include "store/store.h"
#include "store/store_paths.h"

namespace dala {

namespace {

using Steady = std::chrono::steady_clock;

// How long a wipe waits for the removal of the files it moved away before returning (the target is 100
// ms in all; destroying the key comes first and takes a few of them).
constexpr auto kRemovalBudget = std::chrono::milliseconds(60);
constexpr char kTrashPrefix[] = ".wiped-";

// Entries of `dir` (not "." or ".."), files and directories alike; empty if it cannot be read.
std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(std::move(name));
  }
  ::closedir(d);
  return out;
}

// Removes `path` and everything under it (no symbolic link is followed), best effort.
void RemoveTree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    for (const auto& e : Entries(path)) RemoveTree(fs::Join(path, e));
    (void)::rmdir(path.c_str());
  } else {
    (void)::unlink(path.c_str());
  }
}

struct Removal {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool late = false;  // the wipe returned first: the app may be making a new store in the directory
};

// Removes each of `trash` on a thread of its own, and then `dir` if that left it empty and the wipe is still
// waiting (the directory of a store the app makes again as soon as the wipe returns is not taken from
// under it; an empty directory is left instead). Waits for it until `deadline`. A process that ends first
// leaves the rest for the next wipe or create in `dir` to remove. `dir` empty: no directory is removed.
void RemoveInBackground(std::vector<std::string> trash, std::string dir, Steady::time_point deadline) {
  auto state = std::make_shared<Removal>();
  auto remove = [state, trash = std::move(trash), dir] {
    Failpoint("wipe.removing");
    for (const auto& t : trash) RemoveTree(t);
    std::lock_guard lock(state->mu);
    if (!state->late && !dir.empty()) (void)::rmdir(dir.c_str());  // only if empty: the app's files stay
    state->done = true;
    state->cv.notify_all();
  };
  try {
    std::thread(remove).detach();
  } catch (const std::system_error&) {  // no thread to be had: removed here instead
    remove();
    return;
  }
  std::unique_lock lock(state->mu);
  if (!state->cv.wait_until(lock, deadline, [&] { return state->done; })) state->late = true;
}

// Directories a wipe moved files into and did not finish removing (its process ended first).
std::vector<std::string> LeftTrash(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : Entries(dir))
    if (e.rfind(kTrashPrefix, 0) == 0) out.push_back(fs::Join(dir, e));
  return out;
}

}  // namespace

Status Store::Wipe(const std::string& dir, const StoreFileNames& names,
                   const std::function<Status()>& destroy_platform_key) {
  const auto start = Steady::now();
  if (dir.empty()) return {Code::kInvalidArgument, "the store directory must not be empty"};
  DALA_RETURN_IF_ERROR(ValidateFileNames(names));
  StorePaths paths(dir, names);
  bool any = fs::IsDirectory(paths.media());
  for (const auto& f : paths.Files()) any = any || fs::Exists(f);
  std::vector<std::string> trash = LeftTrash(dir);
  // The platform key goes first even when no file is left (a wipe that was cut short).
  Status first = destroy_platform_key ? destroy_platform_key() : Status::Ok();
  if (!first.ok()) first = Status(first.code(), "the app could not destroy its platform key: " + first.message());
  if (!any) {
    if (!trash.empty()) RemoveInBackground(std::move(trash), dir, start + kRemovalBudget);
    return first.ok() ? Status(Code::kNotFound, "no Dala store at '" + dir + "' to wipe") : first;
  }
  auto keep_first = [&first](Status st) {
    if (first.ok() && !st.ok()) first = std::move(st);
  };
  // Crypto-shredding: the wrapped key goes next; from here the database cannot be decrypted.
  keep_first(fs::ShredFile(paths.key()));
  keep_first(fs::ShredFile(paths.key_tmp()));
  keep_first(fs::SyncDirectory(dir));
  Failpoint("wipe.key_destroyed");
  // The rest is ciphertext under keys that were in the database: moved into a directory of its own (a
  // rename each, whatever the size), so that nothing of the store is where a store is looked for, and
  // removed from there.
  uint8_t r[8];
  randombytes_buf(r, sizeof r);
  char hex[2 * sizeof r + 1];
  sodium_bin2hex(hex, sizeof hex, r, sizeof r);
  const std::string bin = fs::Join(dir, std::string(kTrashPrefix) + hex);
  const bool have_bin = ::mkdir(bin.c_str(), 0700) == 0;
  std::vector<std::string> moving = paths.Files();
  moving.push_back(paths.media());
  for (const auto& f : moving) {
    struct stat st {};
    if (::lstat(f.c_str(), &st) != 0) continue;
    const std::string to = fs::Join(bin, f.substr(f.find_last_of('/') + 1));
    if (have_bin && ::rename(f.c_str(), to.c_str()) == 0) continue;
    RemoveTree(f);  // not moved: removed here
    if (::lstat(f.c_str(), &st) == 0) keep_first(Status(Code::kIo, "could not remove '" + f + "'"));
  }
  if (have_bin) trash.push_back(bin);
  RemoveInBackground(std::move(trash), dir, start + kRemovalBudget);
  return first;
}

Status Store::SweepWipes(const std::string& dir) {
  std::vector<std::string> trash = LeftTrash(dir);
  if (!trash.empty()) RemoveInBackground(std::move(trash), std::string(), Steady::now());
  return Status::Ok();
}

}  // namespace dala
