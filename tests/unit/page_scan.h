// Decrypts every page image of a store's SQLCipher database file and of its write-ahead log with the
// store's raw key, as someone holding a copy of the files and a coerced passphrase would: for tests that
// look for erased content where the API no longer shows it. SQLCipher's page format (3.x and 4.x): AES-256-CBC
// over each page except the reserved tail, whose first 16 bytes are the page's IV; page 1 starts with the
// 16-byte salt, outside the encryption. The reserve size (48 with HMAC-SHA1, 80 with HMAC-SHA512) is found
// by decrypting page 1 and reading SQLite's own "reserved space" byte.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/secret.h"
#include "test_util.h"

namespace dala::test {

struct PageImages {
  size_t db_pages = 0, wal_frames = 0;
  std::string plaintext;  // every decrypted page image, one after the other
};

inline std::optional<std::string> DecryptPageImage(const SecretBuffer& key, const uint8_t* page, size_t page_size,
                                                   size_t reserve, bool first) {
  size_t from = first ? 16 : 0, to = page_size - reserve;
  std::string out(to - from, '\0');
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int n1 = 0, n2 = 0;
  bool ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), nullptr, key.data(), page + to) == 1 &&
            EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
            EVP_DecryptUpdate(ctx, reinterpret_cast<uint8_t*>(out.data()), &n1, page + from,
                              static_cast<int>(to - from)) == 1 &&
            EVP_DecryptFinal_ex(ctx, reinterpret_cast<uint8_t*>(out.data()) + n1, &n2) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok || static_cast<size_t>(n1 + n2) != out.size()) return std::nullopt;
  return out;
}

// Empty optional if page 1 of the database does not decrypt to a SQLite header with this key.
inline std::optional<PageImages> DecryptAllPages(const std::string& db_path, const SecretBuffer& key,
                                                 size_t page_size = 4096) {
  std::vector<uint8_t> db = ReadAll(db_path);
  if (db.size() < page_size || db.size() % page_size != 0) return std::nullopt;
  size_t reserve = 0;
  for (size_t r : {48, 80, 32, 64, 96}) {
    auto p1 = DecryptPageImage(key, db.data(), page_size, r, true);
    // Header bytes 20..23 (here 4..7): reserved space, then the fixed payload fractions 64, 32, 32.
    if (p1 && static_cast<uint8_t>((*p1)[4]) == r && (*p1)[5] == 64 && (*p1)[6] == 32 && (*p1)[7] == 32) {
      reserve = r;
      break;
    }
  }
  if (reserve == 0) return std::nullopt;
  PageImages out;
  for (size_t off = 0; off < db.size(); off += page_size) {
    auto p = DecryptPageImage(key, db.data() + off, page_size, reserve, off == 0);
    if (!p) return std::nullopt;
    out.plaintext += *p;
    ++out.db_pages;
  }
  std::vector<uint8_t> wal = ReadAll(db_path + "-wal");
  constexpr size_t kWalHeader = 32, kFrameHeader = 24;
  for (size_t off = kWalHeader; off + kFrameHeader + page_size <= wal.size(); off += kFrameHeader + page_size) {
    uint32_t pgno = (uint32_t{wal[off]} << 24) | (uint32_t{wal[off + 1]} << 16) | (uint32_t{wal[off + 2]} << 8) |
                    wal[off + 3];
    auto p = DecryptPageImage(key, wal.data() + off + kFrameHeader, page_size, reserve, pgno == 1);
    if (!p) return std::nullopt;
    out.plaintext += *p;
    ++out.wal_frames;
  }
  return out;
}

}  // namespace dala::test
