// The server's log (docs/protocol.md, "The log"): inclusion and consistency proof sizes and the time to
// verify them at 10^3 and 10^6 leaves (trees held in memory, as the desk holds an export's log) and at 10^9
// (computed, not stored: a tree of identical leaves, whose complete subtrees' hashes depend on their level
// only, so that real proofs are made and checked against its real root). Each size is printed beside the bound RFC
// 9162 gives it, ceil(log2 n) hashes for an inclusion proof and ceil(log2 n) + 1 for a consistency proof;
// times are reported beside one SHA-256 of a node measured in the same run (a verifier hashes about one
// node per proof hash).
//   dala_log_bench [--samples N]
#include <sodium.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "format/merkle.h"
#include "row.h"

namespace {

using namespace dala;
using Clock = std::chrono::steady_clock;

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// A tree of any size that is not stored: every leaf is the same (the 8 bytes of 0), so the hash of a
// complete subtree depends only on its level and is computed once per level. It is a real RFC 9162 tree:
// its roots and proofs are made and checked exactly as a stored tree's, and an altered proof fails; proof
// sizes depend only on the leaf's index and the tree's size.
class UniformTree : public merkle::Tree {
 public:
  explicit UniformTree(uint64_t size) : size_(size) {
    const uint8_t leaf[8] = {0};
    levels_.push_back(merkle::LeafHash(leaf));
    for (int l = 1; l < 64; ++l) levels_.push_back(merkle::NodeHash(levels_.back(), levels_.back()));
  }
  uint64_t size() const override { return size_; }
  Result<merkle::Hash> Perfect(uint32_t level, uint64_t) const override { return levels_.at(level); }

 private:
  uint64_t size_;
  std::vector<merkle::Hash> levels_;
};

uint64_t Ceil2(uint64_t n) { return n <= 1 ? 0 : static_cast<uint64_t>(std::bit_width(n - 1)); }

struct Figures {
  double incl_max = 0, incl_avg = 0, cons_max = 0, cons_avg = 0;  // hashes
  double incl_verify_us = 0, cons_verify_us = 0, incl_make_us = 0;
  bool all_verified = true;
};

// `samples` inclusion proofs of random leaves and consistency proofs from random older sizes, in the tree
// of all `n` leaves; each verified, and one altered copy of each must fail.
Figures Measure(const merkle::Tree& tree, uint64_t n, int samples) {
  Figures f;
  const merkle::Hash root = *merkle::Root(tree, n);
  std::vector<uint64_t> idx(static_cast<size_t>(samples)), old(static_cast<size_t>(samples));
  for (int i = 0; i < samples; ++i) {
    idx[static_cast<size_t>(i)] = randombytes_uniform(UINT32_MAX) % n;
    old[static_cast<size_t>(i)] = 1 + randombytes_uniform(UINT32_MAX) % n;
  }
  std::vector<std::vector<merkle::Hash>> incl, cons;
  std::vector<merkle::Hash> leaves, old_roots;
  auto t0 = Clock::now();
  for (int i = 0; i < samples; ++i) incl.push_back(*merkle::InclusionProof(tree, idx[static_cast<size_t>(i)], n));
  f.incl_make_us = Us(Clock::now() - t0) / samples;
  for (int i = 0; i < samples; ++i) {
    leaves.push_back(*tree.Perfect(0, idx[static_cast<size_t>(i)]));
    cons.push_back(*merkle::ConsistencyProof(tree, old[static_cast<size_t>(i)], n));
    old_roots.push_back(*merkle::Root(tree, old[static_cast<size_t>(i)]));
  }
  f.incl_verify_us = f.cons_verify_us = 1e18;
  for (int pass = 0; pass < 3; ++pass) {  // the best of 3 passes: the least disturbed
    t0 = Clock::now();
    for (int i = 0; i < samples; ++i)
      f.all_verified &= merkle::VerifyInclusion(leaves[static_cast<size_t>(i)], idx[static_cast<size_t>(i)], n,
                                                incl[static_cast<size_t>(i)], root);
    f.incl_verify_us = std::min(f.incl_verify_us, Us(Clock::now() - t0) / samples);
    t0 = Clock::now();
    for (int i = 0; i < samples; ++i)
      f.all_verified &= merkle::VerifyConsistency(old[static_cast<size_t>(i)], n, old_roots[static_cast<size_t>(i)],
                                                  root, cons[static_cast<size_t>(i)]);
    f.cons_verify_us = std::min(f.cons_verify_us, Us(Clock::now() - t0) / samples);
  }
  for (int i = 0; i < samples; ++i) {
    const auto s = static_cast<size_t>(i);
    f.incl_max = std::max(f.incl_max, static_cast<double>(incl[s].size()));
    f.cons_max = std::max(f.cons_max, static_cast<double>(cons[s].size()));
    f.incl_avg += static_cast<double>(incl[s].size()) / samples;
    f.cons_avg += static_cast<double>(cons[s].size()) / samples;
    if (!incl[s].empty()) {  // an altered proof must fail
      incl[s][0][0] ^= 1;
      f.all_verified &= !merkle::VerifyInclusion(leaves[s], idx[s], n, incl[s], root);
    }
    if (!cons[s].empty()) {
      cons[s].back()[0] ^= 1;
      f.all_verified &= !merkle::VerifyConsistency(old[s], n, old_roots[s], root, cons[s]);
    }
  }
  return f;
}

void Print(const char* what, uint64_t n, const Figures& f, double sha_us) {
  char m[160], basis[160];
  const double bound = static_cast<double>(Ceil2(n));
  std::printf("\n%s: %llu leaves\n", what, static_cast<unsigned long long>(n));
  std::snprintf(basis, sizeof basis, "RFC 9162: ceil(log2 n) = %.0f hashes", bound);
  std::snprintf(m, sizeof m, "  inclusion proof, longest (avg %.1f)", f.incl_avg);
  bench::Row(m, f.incl_max * 32, "<=", bound * 32, "B  ", basis);
  std::snprintf(basis, sizeof basis, "RFC 9162: ceil(log2 n) + 1 = %.0f hashes", bound + 1);
  std::snprintf(m, sizeof m, "  consistency proof, longest (avg %.1f)", f.cons_avg);
  bench::Row(m, f.cons_max * 32, "<=", (bound + 1) * 32, "B  ", basis);
  std::printf("  verify an inclusion proof: %.2f us, a consistency proof: %.2f us (reported; no target; one node\n"
              "    hash here: %.2f us, ceil(log2 n) of them: %.2f us)\n",
              f.incl_verify_us, f.cons_verify_us, sha_us, sha_us * bound);
  std::printf("  make an inclusion proof: %.2f us (reported; no target)\n", f.incl_make_us);
  if (!f.all_verified) {
    std::printf("  A PROOF DID NOT VERIFY, OR AN ALTERED ONE DID\n");
    ++bench::failures;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int samples = 2000;
  for (int i = 1; i + 1 < argc; i += 2)
    if (std::strcmp(argv[i], "--samples") == 0) samples = std::max(1, std::atoi(argv[i + 1]));
  if (sodium_init() < 0) return 1;
  std::printf("Dala log benchmark (RFC 9162 Merkle tree, SHA-256)\n");
  // One node hash, measured here: what a verifier does per proof hash.
  double sha_us = 1e9;
  {
    merkle::Hash a{}, b{};
    for (int round = 0; round < 5; ++round) {
      auto t0 = Clock::now();
      for (int i = 0; i < 20000; ++i) a = merkle::NodeHash(a, b);
      sha_us = std::min(sha_us, Us(Clock::now() - t0) / 20000);
    }
    if (a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == 0) std::printf(" ");  // keep the loop
  }
  for (uint64_t n : {uint64_t{1000}, uint64_t{1000000}}) {
    merkle::MemoryTree tree;
    auto t0 = Clock::now();
    for (uint64_t i = 0; i < n; ++i) {
      uint8_t leaf[133] = {1};
      std::memcpy(leaf + 1, &i, sizeof i);
      tree.Append(merkle::LeafHash(leaf));
    }
    const double build_s = Us(Clock::now() - t0) / 1e6;
    Print("stored in memory", n, Measure(tree, n, samples), sha_us);
    std::printf("  build the tree from its leaves: %.3f s, %.2f us a leaf (reported; no target)\n", build_s,
                build_s * 1e6 / static_cast<double>(n));
  }
  {
    const uint64_t n = 1000000000;
    UniformTree tree(n);
    Print("computed, not stored", n, Measure(tree, n, samples), sha_us);
  }
  std::printf("\n%s\n", bench::failures == 0 ? "all targets met" : "SOME TARGETS MISSED");
  return bench::failures == 0 ? 0 : 1;
}
