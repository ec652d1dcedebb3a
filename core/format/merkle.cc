#include "format/merkle.h"

#include <sodium.h>

#include <bit>

namespace dala::merkle {
namespace {

// The largest power of two smaller than n (n > 1).
uint64_t SplitPoint(uint64_t n) { return std::bit_floor(n - 1); }

// MTH of the leaves [begin, end), 0 <= begin < end <= tree.size(), built from complete subtrees.
Result<Hash> RangeHash(const Tree& tree, uint64_t begin, uint64_t end) {
  const uint64_t n = end - begin;
  if (std::has_single_bit(n) && begin % n == 0)
    return tree.Perfect(static_cast<uint32_t>(std::countr_zero(n)), begin / n);
  const uint64_t k = SplitPoint(n);
  DALA_ASSIGN_OR_RETURN(Hash left, RangeHash(tree, begin, begin + k));
  DALA_ASSIGN_OR_RETURN(Hash right, RangeHash(tree, begin + k, end));
  return NodeHash(left, right);
}

// PATH(m, D[begin:end]) of RFC 9162 2.1.3.1, appended to out (innermost first).
Status Path(const Tree& tree, uint64_t m, uint64_t begin, uint64_t end, std::vector<Hash>* out) {
  const uint64_t n = end - begin;
  if (n <= 1) return Status::Ok();
  const uint64_t k = SplitPoint(n);
  if (m < k) {
    DALA_RETURN_IF_ERROR(Path(tree, m, begin, begin + k, out));
    DALA_ASSIGN_OR_RETURN(Hash h, RangeHash(tree, begin + k, end));
    out->push_back(h);
  } else {
    DALA_RETURN_IF_ERROR(Path(tree, m - k, begin + k, end, out));
    DALA_ASSIGN_OR_RETURN(Hash h, RangeHash(tree, begin, begin + k));
    out->push_back(h);
  }
  return Status::Ok();
}

// SUBPROOF(m, D[begin:end], b) of RFC 9162 2.1.4.1.
Status SubProof(const Tree& tree, uint64_t m, uint64_t begin, uint64_t end, bool b, std::vector<Hash>* out) {
  const uint64_t n = end - begin;
  if (m == n) {
    if (!b) {
      DALA_ASSIGN_OR_RETURN(Hash h, RangeHash(tree, begin, end));
      out->push_back(h);
    }
    return Status::Ok();
  }
  const uint64_t k = SplitPoint(n);
  if (m <= k) {
    DALA_RETURN_IF_ERROR(SubProof(tree, m, begin, begin + k, b, out));
    DALA_ASSIGN_OR_RETURN(Hash h, RangeHash(tree, begin + k, end));
    out->push_back(h);
  } else {
    DALA_RETURN_IF_ERROR(SubProof(tree, m - k, begin + k, end, false, out));
    DALA_ASSIGN_OR_RETURN(Hash h, RangeHash(tree, begin, begin + k));
    out->push_back(h);
  }
  return Status::Ok();
}

Hash Sha256(uint8_t prefix, std::span<const uint8_t> a, std::span<const uint8_t> b = {}) {
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, &prefix, 1);
  crypto_hash_sha256_update(&st, a.data(), a.size());
  crypto_hash_sha256_update(&st, b.data(), b.size());
  Hash out{};
  crypto_hash_sha256_final(&st, out.data());
  return out;
}

}  // namespace

Hash LeafHash(std::span<const uint8_t> leaf) { return Sha256(0x00, leaf); }
Hash NodeHash(const Hash& left, const Hash& right) { return Sha256(0x01, left, right); }
Hash EmptyRoot() {
  Hash out{};
  crypto_hash_sha256(out.data(), nullptr, 0);
  return out;
}

Result<Hash> Root(const Tree& tree, uint64_t size) {
  if (size > tree.size()) return Status(Code::kInvalidArgument, "the log does not hold that many leaves yet");
  if (size == 0) return EmptyRoot();
  return RangeHash(tree, 0, size);
}

Result<std::vector<Hash>> InclusionProof(const Tree& tree, uint64_t index, uint64_t size) {
  if (size > tree.size() || index >= size)
    return Status(Code::kInvalidArgument, "no such leaf in a log of that size");
  std::vector<Hash> out;
  DALA_RETURN_IF_ERROR(Path(tree, index, 0, size, &out));
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> InclusionProofRanges(uint64_t index, uint64_t size) {
  // PATH(m, D[begin:end]) walked from the root down; its elements are listed innermost first.
  std::vector<std::pair<uint64_t, uint64_t>> out;
  uint64_t begin = 0, end = size;
  while (index < end - begin && end - begin > 1) {
    const uint64_t k = SplitPoint(end - begin);
    if (index < k) {
      out.emplace_back(begin + k, end);
      end = begin + k;
    } else {
      out.emplace_back(begin, begin + k);
      index -= k;
      begin += k;
    }
  }
  return {out.rbegin(), out.rend()};
}

Hash RangeRoot(std::span<const Hash> leaf_hashes) {
  if (leaf_hashes.size() == 1) return leaf_hashes[0];
  const uint64_t k = SplitPoint(leaf_hashes.size());
  return NodeHash(RangeRoot(leaf_hashes.first(k)), RangeRoot(leaf_hashes.subspan(k)));
}

Result<std::vector<Hash>> ConsistencyProof(const Tree& tree, uint64_t old_size, uint64_t new_size) {
  if (old_size == 0 || old_size > new_size || new_size > tree.size())
    return Status(Code::kInvalidArgument, "no consistency proof between those sizes");
  std::vector<Hash> out;
  DALA_RETURN_IF_ERROR(SubProof(tree, old_size, 0, new_size, true, &out));
  return out;
}

bool VerifyInclusion(const Hash& leaf_hash, uint64_t index, uint64_t size, std::span<const Hash> proof,
                     const Hash& root) {
  if (index >= size) return false;
  uint64_t fn = index, sn = size - 1;
  Hash r = leaf_hash;
  for (const Hash& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) != 0 || fn == sn) {
      r = NodeHash(p, r);
      while ((fn & 1) == 0 && fn != 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && sodium_memcmp(r.data(), root.data(), r.size()) == 0;
}

bool VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root, const Hash& new_root,
                       std::span<const Hash> proof) {
  if (old_size == 0 || old_size > new_size) return false;
  if (old_size == new_size) return proof.empty() && sodium_memcmp(old_root.data(), new_root.data(), 32) == 0;
  std::vector<Hash> path(proof.begin(), proof.end());
  if (std::has_single_bit(old_size)) path.insert(path.begin(), old_root);
  if (path.empty()) return false;
  uint64_t fn = old_size - 1, sn = new_size - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0], sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return false;
    if ((fn & 1) != 0 || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      while ((fn & 1) == 0 && fn != 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && sodium_memcmp(fr.data(), old_root.data(), 32) == 0 &&
         sodium_memcmp(sr.data(), new_root.data(), 32) == 0;
}

void MemoryTree::Append(const Hash& leaf_hash) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(leaf_hash);
  // Each subtree this leaf completes: its two halves are complete at the level below.
  for (size_t l = 0; levels_[l].size() % 2 == 0; ++l) {
    if (levels_.size() == l + 1) levels_.emplace_back();
    const auto& below = levels_[l];
    levels_[l + 1].push_back(NodeHash(below[below.size() - 2], below.back()));
  }
}

Result<Hash> MemoryTree::Perfect(uint32_t level, uint64_t index) const {
  if (level >= levels_.size() || index >= levels_[level].size())
    return Status(Code::kInvalidArgument, "no such complete subtree in the log");
  return levels_[level][index];
}

}  // namespace dala::merkle
