// Offline map tiles an organisation provides for the web desk (dala desk serve --tiles DIR, docs/desk.md,
// "Maps"): a directory of XYZ tiles, DIR/Z/X/Y.png (or .jpg, .jpeg, .webp), as gdal2tiles --xyz and most tile
// tools write them, with an optional DIR/attribution.txt shown under each map. Read only; nothing is fetched
// from anywhere else. And the Web Mercator arithmetic that places tiles and points on a map.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/status.h"

namespace dala::desk::web {

inline constexpr int kTileSize = 256;  // pixels
inline constexpr int kMaxZoom = 22;

// A point in Web Mercator (EPSG:3857) pixels of the whole world at zoom z: 0 <= x, y < 256 * 2^z.
struct MapPixel {
  double x = 0, y = 0;
};
MapPixel Project(double latitude, double longitude, int z);

struct Tile {
  std::string bytes;
  std::string content_type;  // image/png, image/jpeg or image/webp: what the bytes are, not what the name says
};

class TileSource {
 public:
  // kNotFound: no such directory; kInvalidArgument: no zoom level directory (0 to 22) in it.
  static Result<std::unique_ptr<TileSource>> Open(const std::string& dir);

  int min_zoom() const { return min_zoom_; }
  int max_zoom() const { return max_zoom_; }
  bool Has(int z, int64_t x, int64_t y) const;  // Read would serve it
  // The tile's bytes (at most 1 MiB), only if they are a PNG, JPEG or WebP image. kNotFound otherwise: a
  // file of another kind (an SVG, an HTML page) is never served, whatever its name.
  Result<Tile> Read(int z, int64_t x, int64_t y) const;
  // DIR/attribution.txt (at most 300 bytes, one line), or empty.
  const std::string& attribution() const { return attribution_; }

 private:
  std::optional<std::string> PathOf(int z, int64_t x, int64_t y) const;
  std::string dir_;
  int min_zoom_ = 0, max_zoom_ = -1;
  std::string attribution_;
};

}  // namespace dala::desk::web
