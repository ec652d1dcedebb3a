// The chunk tree of an attachment's ciphertext: BLAKE2b-256 of each fixed-size upload chunk, and a root
// over them (docs/protocol.md, "Attachments"). A server checks each chunk as it arrives; the desk checks
// the whole file against the root.
#pragma once

#include <sodium.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "crypto/crypto.h"

namespace dala::attachment {

inline constexpr uint32_t kUploadChunk = 1024 * 1024;  // ciphertext bytes per upload chunk

class ChunkTree {
 public:
  explicit ChunkTree(uint32_t chunk_size = kUploadChunk);
  void Update(std::span<const uint8_t> data);
  // Ends the input; returns the root. chunk_hashes() holds 32 bytes per chunk.
  crypto::Hash Finish();
  const std::string& chunk_hashes() const { return hashes_; }
  uint64_t size() const { return size_; }

  static crypto::Hash Root(uint32_t chunk_size, uint64_t size, std::string_view chunk_hashes);
  static crypto::Hash HashChunk(std::span<const uint8_t> chunk);

 private:
  uint32_t chunk_size_;
  uint64_t size_ = 0, in_chunk_ = 0;
  crypto_generichash_state state_;
  std::string hashes_;
};

uint64_t ChunkCount(uint64_t size, uint32_t chunk_size);

}  // namespace dala::attachment
