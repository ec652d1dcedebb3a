#include "crypto/chunk_tree.h"

#include <algorithm>
#include <vector>

namespace dala::attachment {
namespace {

constexpr char kTreeDomain[] = "dala/v1/attachment-chunks";

void PutBE(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

}  // namespace

uint64_t ChunkCount(uint64_t size, uint32_t chunk_size) { return (size + chunk_size - 1) / chunk_size; }

ChunkTree::ChunkTree(uint32_t chunk_size) : chunk_size_(chunk_size) { crypto_generichash_init(&state_, nullptr, 0, 32); }

void ChunkTree::Update(std::span<const uint8_t> data) {
  while (!data.empty()) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(data.size(), chunk_size_ - in_chunk_));
    crypto_generichash_update(&state_, data.data(), take);
    in_chunk_ += take;
    size_ += take;
    data = data.subspan(take);
    if (in_chunk_ == chunk_size_) {
      uint8_t h[32];
      crypto_generichash_final(&state_, h, sizeof h);
      hashes_.append(reinterpret_cast<const char*>(h), sizeof h);
      crypto_generichash_init(&state_, nullptr, 0, 32);
      in_chunk_ = 0;
    }
  }
}

crypto::Hash ChunkTree::Finish() {
  if (in_chunk_ > 0) {
    uint8_t h[32];
    crypto_generichash_final(&state_, h, sizeof h);
    hashes_.append(reinterpret_cast<const char*>(h), sizeof h);
    in_chunk_ = 0;
  }
  return Root(chunk_size_, size_, hashes_);
}

crypto::Hash ChunkTree::Root(uint32_t chunk_size, uint64_t size, std::string_view chunk_hashes) {
  std::vector<uint8_t> head(kTreeDomain, kTreeDomain + sizeof kTreeDomain);  // includes the 0x00
  PutBE(head, chunk_size, 4);
  PutBE(head, size, 8);
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 32);
  crypto_generichash_update(&st, head.data(), head.size());
  crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(chunk_hashes.data()), chunk_hashes.size());
  crypto::Hash out;
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

crypto::Hash ChunkTree::HashChunk(std::span<const uint8_t> chunk) { return crypto::Blake2b256(chunk); }

}  // namespace dala::attachment
