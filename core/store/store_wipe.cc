// The panic wipe: the key destroyed first, then the store's files moved out of the way and removed, on a
// thread of their own once the wipe has taken its time budget (store_trash.h), so that it returns quickly
// whatever the store's size.

#include <sys/stat.h>

#include <chrono>

#include "base/failpoint.h"
#include "base/fsutil.h"
#include "store/store.h"
#include "store/store_paths.h"
#include "store/store_trash.h"

namespace dala {

namespace {

// How long a wipe waits for the removal of the files it moved away before returning (the target is 100
// ms in all; destroying the key comes first and takes a few of them).
constexpr auto kRemovalBudget = std::chrono::milliseconds(60);

std::string BaseName(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

}  // namespace

Status Store::Wipe(const std::string& dir, const StoreFileNames& names,
                   const std::function<Status()>& destroy_platform_key) {
  const auto start = std::chrono::steady_clock::now();
  if (dir.empty()) return {Code::kInvalidArgument, "the store directory must not be empty"};
  DALA_RETURN_IF_ERROR(ValidateFileNames(names));
  StorePaths paths(dir, names);
  bool any = fs::IsDirectory(paths.media());
  for (const auto& f : paths.Files()) any = any || fs::Exists(f);
  std::vector<std::string> trash = trash::Leftovers(dir, names.database);
  // The platform key goes first even when no file is left (a wipe that was cut short).
  Status first = destroy_platform_key ? destroy_platform_key() : Status::Ok();
  if (!first.ok()) first = Status(first.code(), "the app could not destroy its platform key: " + first.message());
  if (!any) {
    trash::RemoveInBackground(dir, std::move(trash), /*remove_dir=*/true, start + kRemovalBudget);
    return first.ok() ? Status(Code::kNotFound, "no Dala store at '" + dir + "' to wipe") : first;
  }
  auto keep_first = [&first](Status st) {
    if (first.ok() && !st.ok()) first = std::move(st);
  };
  // Crypto-shredding: the wrapped key goes next; from here the database cannot be decrypted. It is
  // removed where it is even if it could not be overwritten: a key file is never moved, so none can end up
  // beside the database it opens.
  for (const std::string& k : {paths.key(), paths.key_tmp()}) {
    keep_first(fs::ShredFile(k));
    keep_first(fs::RemoveFile(k));
  }
  keep_first(fs::SyncDirectory(dir));
  Failpoint("wipe.key_destroyed");
  // The rest is ciphertext under keys that were in the database: moved out of the store's way (nothing of
  // it is where a store is looked for) and removed.
  std::vector<std::string> moving;
  for (const auto& f : paths.Files())
    if (f != paths.key() && f != paths.key_tmp()) moving.push_back(BaseName(f));
  struct stat st {};
  if (::lstat(paths.media().c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    // The app keeps its media elsewhere: the files are removed there, through the link, as they are listed.
    auto files = fs::ListFiles(paths.media());
    if (files.ok()) {
      for (const auto& f : *files) keep_first(fs::RemoveFile(fs::Join(paths.media(), f)));
    } else {
      keep_first(files.status());
    }
    keep_first(fs::RemoveFile(paths.media()));
  } else {
    moving.push_back(names.media);
  }
  std::string bin = trash::MoveAway(dir, names.database, moving, &first);
  if (!bin.empty()) trash.push_back(std::move(bin));
  if (!trash::RemoveInBackground(dir, std::move(trash), /*remove_dir=*/true, start + kRemovalBudget))
    keep_first(Status(Code::kIo, "the wipe could not remove every file it moved aside in '" + dir + "'"));
  return first;
}

Status Store::SweepWipes(const std::string& dir, const StoreFileNames& names) {
  trash::RemoveInBackground(dir, trash::Leftovers(dir, names.database), /*remove_dir=*/false,
                            std::chrono::steady_clock::now());
  return Status::Ok();
}

}  // namespace dala
