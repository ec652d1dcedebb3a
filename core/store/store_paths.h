// Where a store's files are: the app chooses their names (nothing in a name needs to say "Dala").
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace dala {

// Default names (those of Dala 0.1, so that its stores open as they are).
inline constexpr char kKeyFileName[] = "dala.key";
inline constexpr char kDbFileName[] = "dala.db";
inline constexpr char kAttachmentDirName[] = "media";

struct StoreFileNames {
  std::string key = kKeyFileName;
  std::string database = kDbFileName;
  std::string media = kAttachmentDirName;
};

// Each name is one plain path component (no '/', not "." or "..", 1 to 128 bytes, no NUL), and the three
// differ, also from each other's derived names (".tmp", "-wal", ".next").
Status ValidateFileNames(const StoreFileNames& names);

class StorePaths {
 public:
  StorePaths(std::string dir, const StoreFileNames& names);
  const std::string& dir() const { return dir_; }
  std::string key() const;
  std::string key_tmp() const { return key() + ".tmp"; }
  std::string db() const;
  // A database being put in place of `db` (duress, re-key): it replaces `db` once the key file names
  // its key (docs/storage-format.md, "Replacing the database").
  std::string db_next() const { return db() + ".next"; }
  std::string media() const;
  // Every file a store may own, the key file first (a wipe destroys it before anything else).
  std::vector<std::string> Files() const;

 private:
  std::string dir_;
  StoreFileNames names_;
};

}  // namespace dala
