// What a 32-bit phone (armhf, 32-bit Android) would get wrong if the core assumed a 64-bit system: file
// offsets beyond 4 GiB, directory listings, dates after 2038. tools/dev test runs these on armhf under qemu.
#include <fcntl.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>

#include "base/clock.h"
#include "base/fsutil.h"
#include "crypto/attachment_file.h"
#include "test_util.h"

namespace dala {
namespace {

// A byte range of a file beyond 4 GiB (a long video) is read where it is, not where a 32-bit offset wraps.
TEST(Portability, FileRangesBeyondFourGiB) {
  test::TempDir d;
  const std::string path = d.sub("sparse");
  const uint64_t at = (uint64_t{5} << 30) + 4097;  // sparse: costs no disk
  const std::string marker = "a marker past 4 GiB";
  {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, marker.data(), marker.size(), static_cast<off_t>(at)), static_cast<ssize_t>(marker.size()));
    ::close(fd);
  }
  auto h = attachment::HashFileRange(path, at, marker.size());
  ASSERT_TRUE(h.ok()) << h.status().message();
  crypto::Hash want;
  crypto_generichash(want.data(), want.size(), reinterpret_cast<const uint8_t*>(marker.data()), marker.size(), nullptr, 0);
  EXPECT_EQ(*h, want);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), at + marker.size());
}

// Every entry of a directory is listed (readdir reports EOVERFLOW for 64-bit inode numbers to a 32-bit program
// built without 64-bit offsets: the listing must then fail, never come back short).
TEST(Portability, DirectoriesAreListedWhole) {
  test::TempDir d;
  std::set<std::string> made;
  for (int i = 0; i < 300; ++i) {
    const std::string name = "f" + std::to_string(i);
    std::ofstream(d.sub(name)) << "x";
    made.insert(name);
  }
  auto listed = fs::ListFiles(d.path());
  ASSERT_TRUE(listed.ok()) << listed.status().message();
  EXPECT_EQ(std::set<std::string>(listed->begin(), listed->end()), made);
}

// Dates after 2038 (a 32-bit time_t wraps to 1901) and across leap days, against C++20's calendar.
TEST(Portability, DatesAfter2038) {
  using namespace std::chrono;
  auto ms = [](auto t) { return duration_cast<milliseconds>(t.time_since_epoch()).count(); };
  EXPECT_EQ(IsoTime(ms(sys_days{year{2038} / January / 19} + hours(3) + minutes(14) + seconds(8))),
            "2038-01-19T03:14:08.000Z");
  EXPECT_EQ(IsoTime(4102444800123), "2100-01-01T00:00:00.123Z");
  EXPECT_EQ(IsoTime(ms(sys_days{year{2400} / February / 29} + milliseconds(999))), "2400-02-29T00:00:00.999Z");
  for (int64_t day = 0; day < 200 * 366; day += 37) {
    const sys_days sd{days{day}};
    const year_month_day ymd{sd};
    char want[40];
    std::snprintf(want, sizeof want, "%04d-%02u-%02uT00:00:01.000Z", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
    ASSERT_EQ(IsoTime(ms(sd) + 1000), want) << day;
  }
}

}  // namespace
}  // namespace dala
