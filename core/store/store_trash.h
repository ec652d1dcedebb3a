// Files that can no longer be read (their key is gone) are moved, a rename each, into a directory of their
// own inside the store's directory and removed from there on a thread of their own: the file system frees
// a file's blocks in proportion to its size (75 ms for 250 MB here), which neither a panic wipe nor a
// duress open may wait for. The directory is named after the app's database file, "<database name>.<16
// hex digits>": the library adds no name of its own (docs/threat-model.md). Everything is done through
// directory descriptors, never following a symbolic link, so that nothing outside the store is touched.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "base/status.h"

namespace dala::trash {

// Whether `name` is one such directory's name for the database file `database`.
bool IsTrashName(const std::string& name, const std::string& database);

// Moves each of `names` (entries of `dir`, or of its subdirectory `from` if given; files or directories) that
// exists into a new trash directory in `dir`, and returns that directory's name ("" if it could not be made).
// One that cannot be moved is removed where it is; one that cannot be removed either is reported in *first
// (if it is still ok).
std::string MoveAway(const std::string& dir, const std::string& database, const std::vector<std::string>& names,
                     Status* first, const std::string& from = "");

// Removes the entries `names` of `dir` (and everything under them) on a thread of its own, then `dir`
// itself if `remove_dir`, that left it empty and the caller is still waiting. Waits for it until
// `deadline`. False when it finished within the deadline and something could not be removed. A process
// that ends first leaves the rest for the next create or open in that directory (Leftovers).
bool RemoveInBackground(std::string dir, std::vector<std::string> names, bool remove_dir,
                        std::chrono::steady_clock::time_point deadline);

// The trash directories in `dir` for the database file `database`.
std::vector<std::string> Leftovers(const std::string& dir, const std::string& database);

}  // namespace dala::trash
