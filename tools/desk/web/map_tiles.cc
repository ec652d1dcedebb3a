#include "desk/web/map_tiles.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "base/fsutil.h"

namespace dala::desk::web {
namespace {

constexpr const char* kExtensions[] = {".png", ".jpg", ".jpeg", ".webp"};
constexpr size_t kMaxTileBytes = 1u << 20;

bool IsFile(const std::string& path) {
  struct stat sb{};
  return ::stat(path.c_str(), &sb) == 0 && S_ISREG(sb.st_mode);
}

// What the bytes are, by their signature.
const char* ImageType(const std::string& b) {
  if (b.size() >= 8 && b.compare(0, 8, "\x89PNG\r\n\x1a\n", 8) == 0) return "image/png";
  if (b.size() >= 3 && b.compare(0, 3, "\xff\xd8\xff", 3) == 0) return "image/jpeg";
  if (b.size() >= 12 && b.compare(0, 4, "RIFF") == 0 && b.compare(8, 4, "WEBP") == 0) return "image/webp";
  return nullptr;
}

}  // namespace

MapPixel Project(double latitude, double longitude, int z) {
  // Web Mercator stops at about 85.0511 degrees, where the map is square.
  const double lat = std::clamp(latitude, -85.05112878, 85.05112878) * std::numbers::pi / 180.0;
  const double world = kTileSize * std::ldexp(1.0, z);
  MapPixel p;
  p.x = (longitude + 180.0) / 360.0 * world;
  p.y = (1.0 - std::log(std::tan(lat) + 1.0 / std::cos(lat)) / std::numbers::pi) / 2.0 * world;
  return p;
}

Result<std::unique_ptr<TileSource>> TileSource::Open(const std::string& dir) {
  if (!fs::IsDirectory(dir)) return Status(Code::kNotFound, "no tile directory at '" + dir + "'");
  auto t = std::unique_ptr<TileSource>(new TileSource());
  t->dir_ = dir;
  for (int z = 0; z <= kMaxZoom; ++z) {
    if (!fs::IsDirectory(fs::Join(dir, std::to_string(z)))) continue;
    if (t->max_zoom_ < 0) t->min_zoom_ = z;
    t->max_zoom_ = z;
  }
  if (t->max_zoom_ < 0)
    return Status(Code::kInvalidArgument, "'" + dir + "' holds no tiles: expected DIR/Z/X/Y.png (zoom 0 to 22)");
  if (auto a = fs::ReadFile(fs::Join(dir, "attribution.txt"), 4096); a.ok()) {
    std::string text(a->begin(), a->end());
    text = text.substr(0, text.find('\n'));
    if (text.size() > 300) text.resize(300);
    t->attribution_ = text;  // escaped where it is shown
  }
  return t;
}

std::optional<std::string> TileSource::PathOf(int z, int64_t x, int64_t y) const {
  if (z < min_zoom_ || z > max_zoom_) return std::nullopt;
  const int64_t n = int64_t{1} << z;
  if (x < 0 || y < 0 || x >= n || y >= n) return std::nullopt;
  const std::string stem = fs::Join(fs::Join(fs::Join(dir_, std::to_string(z)), std::to_string(x)), std::to_string(y));
  for (const char* ext : kExtensions)
    if (IsFile(stem + ext)) return stem + ext;
  return std::nullopt;
}

bool TileSource::Has(int z, int64_t x, int64_t y) const {
  // As Read would serve it: a map names no tile the browser would then fail to load.
  auto path = PathOf(z, x, y);
  struct stat sb{};
  if (!path || ::stat(path->c_str(), &sb) != 0 || sb.st_size > static_cast<off_t>(kMaxTileBytes)) return false;
  char head[12];
  const int fd = ::open(path->c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = ::read(fd, head, sizeof head);
  ::close(fd);
  return n > 0 && ImageType(std::string(head, static_cast<size_t>(n))) != nullptr;
}

Result<Tile> TileSource::Read(int z, int64_t x, int64_t y) const {
  auto path = PathOf(z, x, y);
  if (!path) return Status(Code::kNotFound, "no such tile");
  auto bytes = fs::ReadFile(*path, kMaxTileBytes);
  if (!bytes.ok()) return Status(Code::kNotFound, "no such tile");
  Tile t;
  t.bytes.assign(bytes->begin(), bytes->end());
  const char* type = ImageType(t.bytes);
  if (type == nullptr) return Status(Code::kNotFound, "no such tile");  // not an image the desk shows
  t.content_type = type;
  return t;
}

}  // namespace dala::desk::web
