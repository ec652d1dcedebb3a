// Helpers shared by the internal (unit) tests.
#pragma once

#include <gtest/gtest.h>
#include <sodium.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "crypto/keyfile.h"
#include "store/store.h"
#include "store/store_trash.h"
#include "base/encoding.h"

namespace dala::test {

// A fresh directory under $TMPDIR, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dala-test-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline Credential Pass(const std::string& s) {
  Credential c;
  c.kind = CredentialKind::kPassphrase;
  c.bytes = SecretBuffer(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  return c;
}

inline Credential RawKey(uint8_t fill) {
  Credential c;
  c.kind = CredentialKind::kRawKey;
  c.bytes = SecretBuffer(32);
  for (size_t i = 0; i < 32; ++i) c.bytes.data()[i] = static_cast<uint8_t>(fill + i);
  return c;
}

// A passphrase and a platform key together.
inline Credential PassAndKey(const std::string& s, uint8_t fill) {
  Credential c = Pass(s);
  c.kind = CredentialKind::kPassphraseAndKey;
  c.key = std::move(RawKey(fill).bytes);
  return c;
}

// Reproducible pseudo-random bytes (xorshift32), for attachment contents in tests.
inline std::vector<uint8_t> PseudoRandomBytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<uint8_t>(x);
  }
  return v;
}

// The cheapest Argon2id cost the library accepts: keeps tests fast. Production defaults are higher.
inline StoreOptions FastOptions() {
  StoreOptions o;
  o.kdf.opslimit = kKdfOpsMin;
  o.kdf.memlimit = kKdfMemMin;
  return o;
}

// The directories a wipe or a duress open moved a store's files into (store_trash.h), by full path.
inline std::vector<std::string> TrashDirs(const std::string& dir) {
  std::vector<std::string> out;
  if (!std::filesystem::exists(dir)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (trash::IsTrashName(e.path().filename().string(), kDbFileName)) out.push_back(e.path().string());
  return out;
}

inline std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void WriteAll(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// name -> BLAKE2b of contents, for every regular file under dir.
inline std::map<std::string, std::string> HashTree(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    auto bytes = ReadAll(e.path().string());
    out[e.path().filename().string()] = encoding::ToHex(crypto::Blake2b256(bytes));
  }
  return out;
}

// True if `needle` occurs in any file under dir (names of the hits in *where).
inline bool TreeContains(const std::string& dir, const std::string& needle, std::string* where = nullptr) {
  bool found = false;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    auto bytes = ReadAll(e.path().string());
    std::string_view hay(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (hay.find(needle) != std::string_view::npos) {
      found = true;
      if (where) *where += e.path().filename().string() + " ";
    }
  }
  return found;
}

}  // namespace dala::test
