#include <gtest/gtest.h>

#include "crypto/keyfile.h"
#include "crypto/crypto.h"
#include "test_util.h"
#include "base/encoding.h"

namespace dala {
namespace {

using test::Pass;
using test::RawKey;

KdfParams Fast() { return {kKdfOpsMin, kKdfMemMin}; }

SecretBuffer Secret32(uint8_t fill) {
  SecretBuffer s(32);
  for (size_t i = 0; i < 32; ++i) s.data()[i] = static_cast<uint8_t>(fill ^ i);
  return s;
}

TEST(KeyFile, PassphraseRoundTrip) {
  auto secret = Secret32(7);
  auto file = WrapSecret(KeyPurpose::kStoreDatabase, secret, Pass("correct horse"), Fast());
  ASSERT_TRUE(file.ok());
  ASSERT_EQ(file->size(), kKeyFileSize);
  auto back = UnwrapSecret(KeyPurpose::kStoreDatabase, *file, Pass("correct horse"));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(sodium_memcmp(back->data(), secret.data(), 32), 0);
  // The secret never appears in the file.
  std::string_view hay(reinterpret_cast<const char*>(file->data()), file->size());
  EXPECT_EQ(hay.find(std::string_view(reinterpret_cast<const char*>(secret.data()), 32)), std::string_view::npos);
}

TEST(KeyFile, WrongPassphraseIsWrongKey) {
  auto file = WrapSecret(KeyPurpose::kStoreDatabase, Secret32(1), Pass("right"), Fast());
  ASSERT_TRUE(file.ok());
  auto r = UnwrapSecret(KeyPurpose::kStoreDatabase, *file, Pass("wrong"));
  EXPECT_EQ(r.status().code(), Code::kWrongKey);
}

TEST(KeyFile, RawKeyRoundTripAndKindMismatch) {
  auto file = WrapSecret(KeyPurpose::kStoreDatabase, Secret32(2), RawKey(9), Fast());
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE(UnwrapSecret(KeyPurpose::kStoreDatabase, *file, RawKey(9)).ok());
  EXPECT_EQ(UnwrapSecret(KeyPurpose::kStoreDatabase, *file, RawKey(10)).status().code(), Code::kWrongKey);
  EXPECT_EQ(UnwrapSecret(KeyPurpose::kStoreDatabase, *file, Pass("x")).status().code(), Code::kWrongKey);
}

TEST(KeyFile, TruncatedOrDamagedIsCorrupt) {
  auto file = WrapSecret(KeyPurpose::kStoreDatabase, Secret32(3), Pass("p"), Fast());
  ASSERT_TRUE(file.ok());
  for (size_t n : {size_t{0}, size_t{8}, kKeyFileSize - 1}) {
    std::vector<uint8_t> cut(file->begin(), file->begin() + static_cast<long>(n));
    EXPECT_EQ(UnwrapSecret(KeyPurpose::kStoreDatabase, cut, Pass("p")).status().code(), Code::kCorrupt) << n;
  }
  for (size_t i = 0; i < kKeyFileSize; ++i) {
    auto bad = *file;
    bad[i] ^= 0x80;
    auto r = UnwrapSecret(KeyPurpose::kStoreDatabase, bad, Pass("p"));
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << "byte " << i;
  }
}

TEST(KeyFile, PurposeIsChecked) {
  auto file = WrapSecret(KeyPurpose::kOrganisation, Secret32(4), Pass("p"), Fast());
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(UnwrapSecret(KeyPurpose::kStoreDatabase, *file, Pass("p")).status().code(), Code::kInvalidArgument);
}

TEST(KeyFile, CostBoundsAndCredentialBounds) {
  EXPECT_EQ(WrapSecret(KeyPurpose::kStoreDatabase, Secret32(5), Pass("p"), {0, kKdfMemMin}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(WrapSecret(KeyPurpose::kStoreDatabase, Secret32(5), Pass("p"), {1, 1024}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(WrapSecret(KeyPurpose::kStoreDatabase, Secret32(5), Pass(""), Fast()).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(WrapSecret(KeyPurpose::kStoreDatabase, Secret32(5), Pass(std::string(1025, 'a')), Fast()).status().code(),
            Code::kInvalidArgument);
}

// A key file written by format version 1 (passphrase "vector", Argon2id ops 1 / 8 MiB, secret 06 07 04 ...):
// every later version of Dala must still open it.
TEST(KeyFile, FormatVersion1VectorStaysReadable) {
  const char* kV1 =
      "44414c414b45593101010100327042d9213461692f7ec72c48eb177301000000000000000000800000000000a599bb7545eff7bc26a7"
      "fb01a36e32ead175746e9db7073420fdf84aacfaea717428a5704c22e9e6a97d11168afc742fba8afde60f0b2ca7d24a93e7f56c4238"
      "6d58388a3ec346dd3018aa4a3c278e1822d4953f48da688a72ef498c68287aef25271034b6c5d8fc";
  std::vector<uint8_t> file(kKeyFileSize);
  ASSERT_TRUE(encoding::FromHex(kV1, file));
  auto secret = UnwrapSecret(KeyPurpose::kStoreDatabase, file, Pass("vector"));
  ASSERT_TRUE(secret.ok()) << secret.status().message();
  auto want = Secret32(6);
  EXPECT_EQ(sodium_memcmp(secret->data(), want.data(), 32), 0);
  EXPECT_EQ(UnwrapSecret(KeyPurpose::kStoreDatabase, file, Pass("Vector")).status().code(), Code::kWrongKey);
}

TEST(KeyFile, HeaderLayout) {
  auto file = WrapSecret(KeyPurpose::kStoreDatabase, Secret32(6), Pass("vector"), Fast());
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(file->data()), 8), "DALAKEY1");
  EXPECT_EQ((*file)[8], 1);
  EXPECT_EQ((*file)[9], static_cast<uint8_t>(KeyPurpose::kStoreDatabase));
  EXPECT_EQ((*file)[10], static_cast<uint8_t>(CredentialKind::kPassphrase));
  EXPECT_EQ((*file)[28], kKdfOpsMin);
  EXPECT_EQ((*file)[36 + 2], (kKdfMemMin >> 16) & 0xff);
  EXPECT_EQ((*file)[36 + 3], (kKdfMemMin >> 24) & 0xff);
}

}  // namespace
}  // namespace dala
