// The desk's offline map tiles (tools/desk/web/map_tiles.h): Web Mercator places points where the world's
// tile maps do, and a tile directory serves only images it holds, within its zoom levels.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "base/fsutil.h"
#include "desk/web/map_tiles.h"
#include "test_util.h"

namespace dala::desk::web {
namespace {

// The XYZ tile (x, y) holding a point at zoom z, as every tile server numbers them.
std::pair<int64_t, int64_t> TileOf(double lat, double lon, int z) {
  const MapPixel p = Project(lat, lon, z);
  return {static_cast<int64_t>(std::floor(p.x / kTileSize)), static_cast<int64_t>(std::floor(p.y / kTileSize))};
}

TEST(MapTiles, PointsFallOnTheTilesTheWorldsMapsGiveThem) {
  const MapPixel centre = Project(0, 0, 0);
  EXPECT_DOUBLE_EQ(centre.x, 128.0);
  EXPECT_NEAR(centre.y, 128.0, 1e-9);
  EXPECT_NEAR(Project(85.05112878, -180, 3).y, 0.0, 1e-3);  // the top-left corner of the square world
  EXPECT_NEAR(Project(-85.05112878, 180, 3).x, 256.0 * 8, 1e-9);
  EXPECT_NEAR(Project(90, 0, 1).y, 0.0, 1e-3);  // beyond the square's edge: held at it
  // London at zoom 10 is tile (511, 340), the example every slippy-map guide gives; Oral (Uralsk) at zooms
  // 10 and 15 as the other form of the formula, asinh(tan(lat)), gives them (worked out in Python).
  EXPECT_EQ(TileOf(51.5074, -0.1278, 10), std::make_pair(int64_t{511}, int64_t{340}));
  EXPECT_EQ(TileOf(51.2333, 51.3667, 10), std::make_pair(int64_t{658}, int64_t{341}));
  EXPECT_EQ(TileOf(51.2333, 51.3667, 15), std::make_pair(int64_t{21059}, int64_t{10936}));
}

void Put(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(path.substr(0, path.rfind('/')));
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(MapTiles, OnlyImagesTheDirectoryHoldsAreServed) {
  test::TempDir t;
  EXPECT_EQ(TileSource::Open(t.sub("none")).status().code(), Code::kNotFound);
  ASSERT_TRUE(fs::EnsureDirectory(t.sub("empty")).ok());
  EXPECT_EQ(TileSource::Open(t.sub("empty")).status().code(), Code::kInvalidArgument);
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + "rest", jpeg = "\xff\xd8\xff\xe0rest",
                    webp = std::string("RIFF\x10\0\0\0WEBPVP8 ", 16);
  Put(t.sub("tiles/3/2/1.png"), png);
  Put(t.sub("tiles/3/2/2.jpg"), jpeg);
  Put(t.sub("tiles/4/0/0.webp"), webp);
  Put(t.sub("tiles/4/0/1.png"), "<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"x()\"/>");
  Put(t.sub("tiles/attribution.txt"), "Tiles: the organisation's own\nsecond line");
  auto src = TileSource::Open(t.sub("tiles"));
  ASSERT_TRUE(src.ok()) << src.status().message();
  EXPECT_EQ((*src)->min_zoom(), 3);
  EXPECT_EQ((*src)->max_zoom(), 4);
  EXPECT_EQ((*src)->attribution(), "Tiles: the organisation's own");
  EXPECT_EQ((*src)->Read(3, 2, 1)->content_type, "image/png");
  EXPECT_EQ((*src)->Read(3, 2, 2)->content_type, "image/jpeg");
  EXPECT_EQ((*src)->Read(4, 0, 0)->content_type, "image/webp");
  EXPECT_EQ((*src)->Read(3, 2, 1)->bytes, png);
  EXPECT_EQ((*src)->Read(4, 0, 1).status().code(), Code::kNotFound);  // not an image, whatever its name
  EXPECT_EQ((*src)->Read(3, 9, 9).status().code(), Code::kNotFound);  // outside the zoom's 8 x 8 tiles
  EXPECT_EQ((*src)->Read(3, -1, 1).status().code(), Code::kNotFound);
  EXPECT_EQ((*src)->Read(5, 0, 0).status().code(), Code::kNotFound);  // a zoom it does not have
  EXPECT_TRUE((*src)->Has(3, 2, 1));
  EXPECT_FALSE((*src)->Has(3, 2, 3));
  EXPECT_FALSE((*src)->Has(4, 0, 1));  // a map does not name what is not served: the browser would fail to load it
}

}  // namespace
}  // namespace dala::desk::web
