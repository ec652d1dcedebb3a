#include "store/store_paths.h"

#include "base/db.h"
#include "base/fsutil.h"
#include "store/store_trash.h"

namespace dala {
namespace {

Status ValidateName(const std::string& name, const char* what) {
  bool ok = !name.empty() && name.size() <= 128 && name != "." && name != ".." &&
            name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
  if (!ok)
    return {Code::kInvalidArgument,
            std::string("the store's ") + what + " name must be one plain file name (1 to 128 bytes, no '/')"};
  return Status::Ok();
}

}  // namespace

Status ValidateFileNames(const StoreFileNames& n) {
  DALA_RETURN_IF_ERROR(ValidateName(n.key, "key file"));
  DALA_RETURN_IF_ERROR(ValidateName(n.database, "database file"));
  DALA_RETURN_IF_ERROR(ValidateName(n.media, "media directory"));
  StorePaths p("", n);
  std::vector<std::string> all = p.Files();
  all.push_back(p.media());
  for (size_t i = 0; i < all.size(); ++i)
    for (size_t j = i + 1; j < all.size(); ++j)
      if (all[i] == all[j]) return {Code::kInvalidArgument, "the store's file names must all differ"};
  // The directories a wipe or a duress open moves files into are named "<database>.<16 hex digits>".
  for (const std::string* name : {&n.key, &n.media})
    if (trash::IsTrashName(*name, n.database))
      return {Code::kInvalidArgument, "the store's key file and media directory cannot be named after its database "
                                      "followed by a dot and 16 hex digits (the wipe uses such names)"};
  return Status::Ok();
}

StorePaths::StorePaths(std::string dir, const StoreFileNames& names) : dir_(std::move(dir)), names_(names) {}

std::string StorePaths::key() const { return fs::Join(dir_, names_.key); }
std::string StorePaths::db() const { return fs::Join(dir_, names_.database); }
std::string StorePaths::media() const { return fs::Join(dir_, names_.media); }

std::vector<std::string> StorePaths::Files() const {
  std::string d = db(), n = db_next(), c = d + db::Db::kConvertSuffix;  // c: a 0.1 store's conversion
  return {key(), key_tmp(), d, d + "-wal", d + "-shm", d + "-journal", n, n + "-wal", n + "-shm", n + "-journal",
          c, c + "-journal", c + ".lock"};
}

}  // namespace dala
