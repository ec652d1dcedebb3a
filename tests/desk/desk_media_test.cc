// The desk's random-access reader of encrypted attachment files (tools/desk/desk_media.h): every range of
// every size reads back exactly, in any order, and an altered piece is an error, never bytes.
#include <fstream>

#include "crypto/attachment_file.h"
#include "desk/desk_media.h"
#include "test_util.h"

namespace dala::desk {
namespace {

struct Written {
  std::string path;
  std::vector<uint8_t> data;
  SecretBuffer key;
};

Written Write(const test::TempDir& t, size_t n, uint32_t seed) {
  Written w{t.sub("a" + std::to_string(n)), test::PseudoRandomBytes(n, seed), {}};
  auto writer = attachment::Writer::Create(w.path, "video/mp4");
  EXPECT_TRUE(writer.ok());
  EXPECT_TRUE((*writer)->Write(w.data).ok());
  auto f = (*writer)->Finish();
  EXPECT_TRUE(f.ok());
  w.key = std::move(f->key);
  return w;
}

TEST(DeskMedia, EveryRangeReadsBackInAnyOrder) {
  test::TempDir t;
  for (size_t n : {size_t{0}, size_t{1}, size_t{4096}, attachment::kPiece - 1, attachment::kPiece,
                   attachment::kPiece + 1, size_t{5 * attachment::kPiece + 777}}) {
    Written w = Write(t, n, static_cast<uint32_t>(n));
    auto r = MediaReader::Open(w.path, w.key.span(), n);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ((*r)->size(), n);
    // Backwards from the end first (a seek before any pass), then forwards, then at random.
    std::vector<uint64_t> offsets;
    for (uint64_t o = n; o > 0; o = o > 50000 ? o - 50000 : 0) offsets.push_back(o - 1);
    for (uint64_t o = 0; o < n; o += 30011) offsets.push_back(o);
    uint32_t x = 12345;
    for (int i = 0; i < 40 && n > 0; ++i) offsets.push_back((x = x * 1103515245 + 12345) % n);
    for (uint64_t o : offsets) {
      std::vector<uint8_t> buf(100000);
      auto got = (*r)->ReadAt(o, buf);
      ASSERT_TRUE(got.ok()) << got.status().message();
      ASSERT_GT(*got, 0u);
      ASSERT_LE(o + *got, n);
      EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + static_cast<long>(*got), w.data.begin() + static_cast<long>(o)))
          << "size " << n << " offset " << o;
    }
    std::vector<uint8_t> buf(10);
    auto end = (*r)->ReadAt(n, buf);
    ASSERT_TRUE(end.ok());
    EXPECT_EQ(*end, 0u);  // at the end: nothing (the padding is never served)
  }
}

TEST(DeskMedia, AnAlteredPieceIsAnErrorNeverBytes) {
  test::TempDir t;
  const size_t n = 4 * attachment::kPiece + 10;
  Written w = Write(t, n, 7);
  {  // flip one byte inside the third piece
    std::fstream f(w.path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(24 + 2 * (attachment::kPiece + 17) + 100);
    char c;
    f.seekg(f.tellp());
    f.get(c);
    f.seekp(24 + 2 * (attachment::kPiece + 17) + 100);
    f.put(static_cast<char>(c ^ 1));
  }
  auto r = MediaReader::Open(w.path, w.key.span(), n);
  ASSERT_TRUE(r.ok());
  std::vector<uint8_t> buf(1000);
  EXPECT_TRUE((*r)->ReadAt(10, buf).ok());  // the first piece is intact
  EXPECT_EQ((*r)->ReadAt(2 * attachment::kPiece + 5, buf).status().code(), Code::kVerify);
  EXPECT_EQ((*r)->ReadAt(3 * attachment::kPiece + 5, buf).status().code(), Code::kVerify);  // reached through it
  // A wrong key opens nothing; a truncated file is refused at once.
  SecretBuffer other(32);
  EXPECT_FALSE(MediaReader::Open(w.path, other.span(), n).ok() && (*MediaReader::Open(w.path, other.span(), n))->ReadAt(0, buf).ok());
  ASSERT_EQ(::truncate(w.path.c_str(), 1000), 0);
  EXPECT_EQ(MediaReader::Open(w.path, w.key.span(), n).status().code(), Code::kVerify);
}

}  // namespace
}  // namespace dala::desk
