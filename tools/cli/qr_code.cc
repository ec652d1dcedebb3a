#include "qr_code.h"

#include <fcntl.h>
#include <png.h>
#include <qrencode.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "cli.h"

namespace dala::cli {
namespace {

constexpr int kQuietZone = 4;         // modules of light around the code (ISO/IEC 18004)
constexpr int kPixelsPerModule = 8;   // ~800 px for an invite: sharp on a screen, 7 cm printed at 300 dpi

}  // namespace

QrCode::QrCode(std::string_view text) {
  // 8-bit mode, byte for byte: what a phone reads back is exactly the text (libqrencode picks the
  // smallest version that holds it).
  errno = 0;
  std::unique_ptr<QRcode, decltype(&QRcode_free)> code(
      QRcode_encodeData(static_cast<int>(text.size()), reinterpret_cast<const unsigned char*>(text.data()), 0,
                        QR_ECLEVEL_M),
      &QRcode_free);
  if (!code) {
    if (errno == ERANGE)
      throw UsageError{"the invite (" + std::to_string(text.size()) + " bytes) is too long for a QR code"};
    throw std::runtime_error(std::string("QR encoding failed: ") + std::strerror(errno));
  }
  const int width = code->width;
  size_ = width + 2 * kQuietZone;
  dark_.assign(static_cast<size_t>(size_) * size_, false);
  for (int y = 0; y < width; ++y)
    for (int x = 0; x < width; ++x)  // bit 0 of each of libqrencode's bytes: dark
      dark_[static_cast<size_t>(y + kQuietZone) * size_ + x + kQuietZone] = code->data[y * width + x] & 1;
}

bool QrCode::dark(int x, int y) const {
  if (x < 0 || y < 0 || x >= size_ || y >= size_) return false;
  return dark_[static_cast<size_t>(y) * size_ + x];
}

std::string TerminalQr(const QrCode& qr) {
  // A terminal draws characters in its foreground colour, light on most consoles: so light modules are
  // drawn and dark ones left blank, and the colours are set, so that a light theme does not invert it.
  std::string out;
  for (int y = 0; y < qr.size(); y += 2) {  // an odd last row gets light below it: more quiet zone
    out += "\x1b[97;40m";
    for (int x = 0; x < qr.size(); ++x) {
      bool top = !qr.dark(x, y), bottom = !qr.dark(x, y + 1);
      out += top ? (bottom ? "\u2588" : "\u2580") : (bottom ? "\u2584" : " ");  // full, upper, lower half
    }
    out += "\x1b[0m\n";  // reset before the line ends, so the colours do not run on
  }
  return out;
}

void ShowTerminalQr(const QrCode& qr) {
  std::fputs(TerminalQr(qr).c_str(), stderr);
  const int columns = qr.size(), lines = (qr.size() + 1) / 2;
  winsize ws{};
  if (isatty(STDERR_FILENO) && ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 &&
      (ws.ws_col < columns || ws.ws_row < lines))
    std::fprintf(stderr,
                 "dala: this terminal shows %d columns and %d lines; the QR code needs %d and %d. Enlarge it or use "
                 "a smaller font, or write a PNG with --qr FILE.png.\n",
                 ws.ws_col, ws.ws_row, columns, lines);
}

QrPngFile::QrPngFile(std::string path) : path_(std::move(path)) {
  std::string temp = path_ + ".XXXXXX";
  fd_ = mkostemp(temp.data(), O_CLOEXEC);
  if (fd_ < 0) throw UsageError{"cannot write the QR code to '" + path_ + "': " + std::strerror(errno)};
  temp_ = temp;
}

QrPngFile::~QrPngFile() {
  if (fd_ >= 0) close(fd_);
  if (!temp_.empty()) unlink(temp_.c_str());
}

void QrPngFile::Commit(const QrCode& qr) {
  auto fail = [&](const std::string& why) {
    throw UsageError{"cannot write the QR code to '" + path_ + "': " + why};
  };
  const int side = qr.size() * kPixelsPerModule;
  std::vector<png_byte> pixels(static_cast<size_t>(side) * side);
  for (int y = 0; y < side; ++y)
    for (int x = 0; x < side; ++x)
      pixels[static_cast<size_t>(y) * side + x] = qr.dark(x / kPixelsPerModule, y / kPixelsPerModule) ? 0 : 255;

  // 0600 whatever the umask (mkstemp's mode, set again so that it is stated here): the code carries the invite's
  // enrolment secret, so other accounts on the machine must not read it.
  if (fchmod(fd_, 0600) != 0) fail(std::strerror(errno));
  std::FILE* f = fdopen(fd_, "wb");
  if (f == nullptr) fail(std::strerror(errno));
  fd_ = -1;  // f owns it now
  // libpng's simplified API reports errors by its result (no longjmp through this C++ code).
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(side);
  image.height = static_cast<png_uint_32>(side);
  image.format = PNG_FORMAT_GRAY;
  bool ok = png_image_write_to_stdio(&image, f, 0, pixels.data(), 0, nullptr) != 0;
  std::string why = ok ? "" : image.message;
  png_image_free(&image);
  if (ok && (std::fflush(f) != 0 || fsync(fileno(f)) != 0)) {  // on disk before it takes the name
    ok = false;
    why = std::strerror(errno);
  }
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    why = std::strerror(errno);
  }
  if (!ok) fail(why);
  if (std::rename(temp_.c_str(), path_.c_str()) != 0) fail(std::strerror(errno));
  temp_.clear();
  // The rename itself on disk; the file is in place either way, so a failure here is not one.
  std::string dir = std::filesystem::path(path_).parent_path().string();
  int dfd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
}

}  // namespace dala::cli
