// The Merkle tree of the server's append-only log (docs/protocol.md, "The log"), exactly as RFC 9162
// (Certificate Transparency 2.0) section 2.1 defines it, so that any CT or Sigsum library can check our
// proofs: SHA-256, leaf hash SHA-256(0x00 || leaf), node hash SHA-256(0x01 || left || right), the empty
// tree's hash SHA-256(""). No I/O: a log's storage provides the hashes of its complete subtrees (Tree);
// proofs take O(log n) of them (O(log^2 n) at worst for the right edge of a tree that is not complete).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "crypto/crypto.h"

namespace dala::merkle {

using Hash = crypto::Hash;

Hash LeafHash(std::span<const uint8_t> leaf);
Hash NodeHash(const Hash& left, const Hash& right);
Hash EmptyRoot();

// Hashes of complete subtrees: Perfect(level, index) is the hash of the 2^level leaves from
// index * 2^level on. Callers ask only for subtrees within the leaves the source holds.
class Tree {
 public:
  virtual ~Tree() = default;
  virtual uint64_t size() const = 0;
  virtual Result<Hash> Perfect(uint32_t level, uint64_t index) const = 0;
};

// The tree head of the first `size` leaves (size <= tree.size()).
Result<Hash> Root(const Tree& tree, uint64_t size);
// RFC 9162 2.1.3.1: the inclusion proof of leaf `index` in the tree of the first `size` leaves.
Result<std::vector<Hash>> InclusionProof(const Tree& tree, uint64_t index, uint64_t size);
// RFC 9162 2.1.4.1: the consistency proof between the trees of the first `old_size` and `new_size` leaves
// (0 < old_size <= new_size; equal sizes give an empty proof).
Result<std::vector<Hash>> ConsistencyProof(const Tree& tree, uint64_t old_size, uint64_t new_size);

// The leaves [first, second) whose MTH each element of InclusionProof(index, size) is, innermost first.
std::vector<std::pair<uint64_t, uint64_t>> InclusionProofRanges(uint64_t index, uint64_t size);
// MTH of leaves given by their hashes, in order (RFC 9162 2.1.1): what a proof element covering exactly these
// leaves is. At least one leaf hash.
Hash RangeRoot(std::span<const Hash> leaf_hashes);

// RFC 9162 2.1.3.2 and 2.1.4.2. A verifier needs nothing but these and the signed heads.
bool VerifyInclusion(const Hash& leaf_hash, uint64_t index, uint64_t size, std::span<const Hash> proof,
                     const Hash& root);
bool VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root, const Hash& new_root,
                       std::span<const Hash> proof);

// A tree held in memory (the desk rebuilding a log from an export, tests): every complete subtree's hash,
// computed as leaves are appended (about two hashes per leaf).
class MemoryTree : public Tree {
 public:
  void Append(const Hash& leaf_hash);
  uint64_t size() const override { return levels_.empty() ? 0 : levels_[0].size(); }
  Result<Hash> Perfect(uint32_t level, uint64_t index) const override;

 private:
  std::vector<std::vector<Hash>> levels_;  // levels_[l][i] = Perfect(l, i)
};

}  // namespace dala::merkle
