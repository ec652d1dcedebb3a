// Random access into an attachment file as the desk keeps it (encrypted, docs/storage-format.md
// "Attachment files"), for HTTP range requests: audio and video play and seek in the browser while nothing
// decrypted touches the disk. A secretstream cannot start mid-file, so the reader keeps the stream's state
// at each 64 KiB piece boundary (in locked memory) as it first passes it: after one pass, a seek costs one
// piece. Every piece is authenticated as it is decrypted; a piece that fails is an error, never bytes.
#pragma once

#include <sodium.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/secret.h"
#include "base/status.h"

namespace dala::desk {

// The file extension for an attachment's declared type (".bin" for any other): the one table the desk's
// file names use (desk open, the web desk's downloads, evidence packages).
std::string MediaExtension(std::string_view mime);

class MediaReader {
 public:
  // `size`: the attachment's plaintext bytes, as the sealed report records them.
  static Result<std::unique_ptr<MediaReader>> Open(const std::string& path, std::span<const uint8_t> key,
                                                   uint64_t size);
  ~MediaReader();
  uint64_t size() const { return size_; }
  // Copies up to out.size() bytes from `offset`; 0 at or past the end. Thread-safe (one read at a time).
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out);

 private:
  MediaReader() = default;
  Status Decrypt(uint64_t piece);  // into piece_, using the state before it (computing it if need be)
  std::mutex mu_;
  int fd_ = -1;
  uint64_t size_ = 0, total_ = 0, pieces_ = 0;
  SecretBuffer states_;   // pieces_ states: states_[i] is the stream before piece i
  uint64_t known_ = 0;    // states 0 .. known_-1 are set
  SecretBuffer piece_;
  int64_t cached_ = -1;   // the piece in piece_
  size_t cached_len_ = 0;
  std::vector<uint8_t> in_;
};

}  // namespace dala::desk
