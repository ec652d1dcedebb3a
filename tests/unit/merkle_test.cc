// The log's Merkle tree against RFC 9162 / RFC 6962: the reference roots, inclusion and consistency proofs
// of Certificate Transparency's test tree, every proof of every small tree verifying and every altered one
// failing, and proofs that stay logarithmic in a tree of 1,000,000 leaves.
#include <gtest/gtest.h>
#include <sodium.h>

#include <string>
#include <vector>

#include "base/encoding.h"
#include "format/merkle.h"

namespace dala::merkle {
namespace {

Hash H(std::string_view hex) {
  Hash h{};
  EXPECT_TRUE(encoding::FromHex(hex, h)) << hex;
  return h;
}
std::vector<Hash> Hs(std::initializer_list<const char*> hex) {
  std::vector<Hash> out;
  for (const char* h : hex) out.push_back(H(h));
  return out;
}

// Certificate Transparency's reference tree (RFC 6962's test data): the eight leaves and the root of each
// prefix of them.
const char* const kLeaves[] = {"", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                               "606162636465666768696a6b6c6d6e6f"};
const char* const kRoots[] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};

MemoryTree Reference() {
  MemoryTree t;
  for (const char* hex : kLeaves) {
    std::vector<uint8_t> leaf(std::string_view(hex).size() / 2);
    EXPECT_TRUE(encoding::FromHex(hex, leaf));
    t.Append(LeafHash(leaf));
  }
  return t;
}

TEST(Merkle, ReferenceRootsOfRfc6962) {
  MemoryTree t = Reference();
  for (uint64_t n = 0; n <= 8; ++n) EXPECT_EQ(*Root(t, n), H(kRoots[n])) << n;
  EXPECT_EQ(EmptyRoot(), H(kRoots[0]));
  EXPECT_FALSE(Root(t, 9).ok());
}

TEST(Merkle, ReferenceProofsOfRfc6962) {
  MemoryTree t = Reference();
  struct Inclusion { uint64_t index, size; std::vector<Hash> proof; };
  const Inclusion inclusions[] = {
      {0, 8, Hs({"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"})},
      {5, 8, Hs({"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                 "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
      {2, 3, Hs({"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"})},
      {1, 5, Hs({"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"})},
  };
  for (const auto& c : inclusions) {
    EXPECT_EQ(*InclusionProof(t, c.index, c.size), c.proof) << c.index << "/" << c.size;
    EXPECT_TRUE(VerifyInclusion(*t.Perfect(0, c.index), c.index, c.size, c.proof, H(kRoots[c.size])));
  }
  struct Consistency { uint64_t old_size, new_size; std::vector<Hash> proof; };
  const Consistency consistencies[] = {
      {1, 1, {}},
      {1, 8, Hs({"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"})},
      {6, 8, Hs({"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                 "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
      {2, 5, Hs({"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"})},
  };
  for (const auto& c : consistencies) {
    EXPECT_EQ(*ConsistencyProof(t, c.old_size, c.new_size), c.proof) << c.old_size << "->" << c.new_size;
    EXPECT_TRUE(VerifyConsistency(c.old_size, c.new_size, H(kRoots[c.old_size]), H(kRoots[c.new_size]), c.proof));
  }
}

// Every proof of every tree up to 70 leaves verifies; a proof with one hash changed, one hash too many or
// too few, another leaf, another index or another root does not.
TEST(Merkle, EveryProofOfEverySmallTreeVerifiesAndNoAlteredOneDoes) {
  MemoryTree t;
  std::vector<Hash> roots = {EmptyRoot()};
  for (uint32_t i = 0; i < 70; ++i) {
    uint8_t leaf[4] = {static_cast<uint8_t>(i), static_cast<uint8_t>(i * 7), 1, 2};
    t.Append(LeafHash(leaf));
    roots.push_back(*Root(t, t.size()));
  }
  for (uint64_t n = 1; n <= 70; ++n) {
    for (uint64_t i = 0; i < n; ++i) {
      const Hash leaf = *t.Perfect(0, i);
      auto proof = *InclusionProof(t, i, n);
      ASSERT_TRUE(VerifyInclusion(leaf, i, n, proof, roots[n])) << i << "/" << n;
      EXPECT_FALSE(VerifyInclusion(leaf, i, n, proof, roots[n - 1]));
      EXPECT_FALSE(VerifyInclusion(*t.Perfect(0, (i + 1) % 70), i, n, proof, roots[n]));
      if (n > 1) {
        EXPECT_FALSE(VerifyInclusion(leaf, (i + 1) % n, n, proof, roots[n]));
      }
      // (The size is bound by the signed head, not by the proof: a proof can fit a neighbouring size.)
      for (size_t k = 0; k < proof.size(); ++k) {
        auto bad = proof;
        bad[k][k % 32] ^= 1;
        EXPECT_FALSE(VerifyInclusion(leaf, i, n, bad, roots[n]));
      }
      auto longer = proof;
      longer.push_back(leaf);
      EXPECT_FALSE(VerifyInclusion(leaf, i, n, longer, roots[n]));
      if (!proof.empty()) {
        proof.pop_back();
        EXPECT_FALSE(VerifyInclusion(leaf, i, n, proof, roots[n]));
      }
    }
    for (uint64_t m = 1; m <= n; ++m) {
      auto proof = *ConsistencyProof(t, m, n);
      ASSERT_TRUE(VerifyConsistency(m, n, roots[m], roots[n], proof)) << m << "->" << n;
      if (m < n) {
        EXPECT_FALSE(VerifyConsistency(m, n, roots[m - 1 == 0 ? n : m - 1], roots[n], proof));
        EXPECT_FALSE(VerifyConsistency(m, n, roots[m], roots[n - 1], proof));
        for (size_t k = 0; k < proof.size(); ++k) {
          auto bad = proof;
          bad[k][0] ^= 0x80;
          EXPECT_FALSE(VerifyConsistency(m, n, roots[m], roots[n], bad)) << m << "->" << n << " #" << k;
        }
        EXPECT_FALSE(VerifyConsistency(m, n, roots[m], roots[n], {}));
      }
    }
  }
  EXPECT_FALSE(VerifyInclusion(EmptyRoot(), 0, 0, {}, EmptyRoot()));
  EXPECT_FALSE(VerifyConsistency(0, 5, EmptyRoot(), roots[5], {}));
  EXPECT_FALSE(VerifyConsistency(6, 5, roots[6], roots[5], {}));
  EXPECT_FALSE(InclusionProof(t, 70, 70).ok());
  EXPECT_FALSE(ConsistencyProof(t, 0, 70).ok());
}

// What a phone computes of a proof (docs/protocol.md, "The log", proof_computed): each element of every
// proof of every small tree is the MTH of exactly the leaves InclusionProofRanges names for it.
TEST(Merkle, EachProofElementIsTheRootOfTheLeavesItsRangeNames) {
  MemoryTree t;
  std::vector<Hash> leaves;
  for (uint32_t i = 0; i < 70; ++i) {
    uint8_t leaf[3] = {static_cast<uint8_t>(i), 9, static_cast<uint8_t>(i * 3)};
    leaves.push_back(LeafHash(leaf));
    t.Append(leaves.back());
  }
  for (uint64_t n = 1; n <= 70; ++n) {
    for (uint64_t i = 0; i < n; ++i) {
      const auto proof = *InclusionProof(t, i, n);
      const auto ranges = InclusionProofRanges(i, n);
      ASSERT_EQ(ranges.size(), proof.size()) << i << "/" << n;
      for (size_t j = 0; j < proof.size(); ++j) {
        const auto [a, b] = ranges[j];
        ASSERT_TRUE(a < b && b <= n && (i < a || i >= b)) << i << "/" << n << " element " << j;
        EXPECT_EQ(RangeRoot(std::span<const Hash>(leaves).subspan(a, b - a)), proof[j]) << i << "/" << n << " " << j;
      }
    }
  }
}

// A log of a million leaves: proofs stay logarithmic (at most 20 hashes for inclusion, 40 for
// consistency) and verify.
TEST(Merkle, AMillionLeavesKeepProofsLogarithmic) {
  MemoryTree t;
  const uint64_t n = 1000000;
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t leaf[8];
    for (int b = 0; b < 8; ++b) leaf[b] = static_cast<uint8_t>(i >> (8 * b));
    t.Append(LeafHash(leaf));
  }
  const Hash root = *Root(t, n);
  for (uint64_t i : {0ull, 1ull, 524287ull, 524288ull, 999999ull, 123457ull}) {
    auto proof = *InclusionProof(t, i, n);
    EXPECT_LE(proof.size(), 20u);
    EXPECT_TRUE(VerifyInclusion(*t.Perfect(0, i), i, n, proof, root)) << i;
  }
  for (uint64_t m : {1ull, 3ull, 65536ull, 999999ull, 700001ull}) {
    auto proof = *ConsistencyProof(t, m, n);
    EXPECT_LE(proof.size(), 40u);
    EXPECT_TRUE(VerifyConsistency(m, n, *Root(t, m), root, proof)) << m;
  }
}

}  // namespace
}  // namespace dala::merkle
