// ZIP files for evidence packages, over libzip (Debian's libzip-dev): a writer whose entries come from
// memory or stream from a callback when the file is closed, and a reader that hands each entry over in
// pieces. Nothing is extracted to disk.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

struct zip;

namespace dala::desk {

class ZipWriter {
 public:
  // Creates `path` (kExists if it is there); nothing is written until Close.
  static Result<std::unique_ptr<ZipWriter>> Create(const std::string& path);
  ~ZipWriter();  // without Close: nothing is written
  Status Add(const std::string& name, std::string bytes, bool compress = true);
  // An entry of `size` bytes read at Close through `read(offset, out) -> bytes copied`; stored uncompressed.
  using Reader = std::function<Result<size_t>(uint64_t offset, std::span<uint8_t> out)>;
  Status AddStream(const std::string& name, uint64_t size, Reader read);
  // Writes the file (libzip writes a temporary file and renames it: all or nothing).
  Status Close();

 private:
  ZipWriter() = default;
  ::zip* z_ = nullptr;
  std::vector<std::unique_ptr<std::string>> held_;  // bytes libzip reads at Close
};

class ZipReader {
 public:
  static Result<std::unique_ptr<ZipReader>> Open(const std::string& path);
  ~ZipReader();
  struct Entry {
    std::string name;
    uint64_t size = 0;
  };
  const std::vector<Entry>& entries() const { return entries_; }
  // A whole entry (at most `max` bytes, else kInvalidArgument).
  Result<std::string> Read(const std::string& name, size_t max = 64u << 20);
  // An entry in pieces, each handed to `piece`.
  Status Stream(const std::string& name, const std::function<void(std::span<const uint8_t>)>& piece);

 private:
  ZipReader() = default;
  ::zip* z_ = nullptr;
  std::vector<Entry> entries_;
};

}  // namespace dala::desk
