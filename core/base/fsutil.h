// Small POSIX file helpers with Status errors. Paths are never secret; contents may be.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

namespace dala::fs {

// Maps an errno value to a Status whose message names the action and the path.
Status FromErrno(int err, const std::string& action, const std::string& path);

bool Exists(const std::string& path);
bool IsDirectory(const std::string& path);
// Creates `dir` (mode 0700) if missing; its parent must exist.
Status EnsureDirectory(const std::string& dir);
Result<std::vector<uint8_t>> ReadFile(const std::string& path, size_t max_size);
// Writes path.tmp (0600), fsyncs it, renames it over path and fsyncs the directory: all or nothing.
Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> bytes);
Status SyncDirectory(const std::string& dir);
// Writes all n bytes to fd (retrying short writes and EINTR).
Status WriteAll(int fd, const uint8_t* p, size_t n, const std::string& path);
// Creates an empty file readable by the owner only (0600); fails if it exists.
Status CreatePrivateFile(const std::string& path);
// Removes a file; a missing file is not an error.
Status RemoveFile(const std::string& path);
// Overwrites the whole file with random bytes, syncs it, then removes it.
Status ShredFile(const std::string& path);
// WriteFileAtomic, then the replaced file's own bytes (still reachable through an open descriptor and any
// other hard link) are overwritten with random bytes and synced. On flash and copy-on-write file systems
// the old blocks may survive anyway: what must not survive is protected by keys, not by overwriting.
Status ReplaceFileShreddingOld(const std::string& path, std::span<const uint8_t> bytes);
// Overwrites the whole file with random bytes and syncs it (it stays, at its size). Missing: nothing to do.
Status OverwriteFile(const std::string& path);
// The same through a descriptor open for writing (the file may no longer have a name).
Status OverwriteOpenFile(int fd, const std::string& path);
// fsync of one file.
Status SyncFile(const std::string& path);
std::string Join(const std::string& dir, const std::string& name);
// Streams `from` into a new file `to` (0600) and syncs it.
Status CopyFile(const std::string& from, const std::string& to);
// Names of the regular files in `dir` (not . or ..); a missing directory is an empty list.
Result<std::vector<std::string>> ListFiles(const std::string& dir);

}  // namespace dala::fs
