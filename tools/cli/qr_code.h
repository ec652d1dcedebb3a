// Invites as QR codes, for phones to scan: encoded by libqrencode, written as PNG by libpng or drawn in a
// terminal with Unicode half blocks. Only the dala CLI links these libraries, never libdala.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dala::cli {

// The QR code of `text` as bytes (8-bit mode), at error-correction level M (15% of it may be lost: a
// scratched print, glare on a screen), with its quiet zone of 4 modules around it, as the standard asks.
class QrCode {
 public:
  explicit QrCode(std::string_view text);  // UsageError if the text does not fit in a QR code
  int size() const { return size_; }        // modules on a side, quiet zone included
  bool dark(int x, int y) const;           // light outside the code

 private:
  int size_ = 0;
  std::vector<bool> dark_;
};

// The code as lines of half blocks, two module rows a line: light modules are drawn (the foreground) and
// dark ones left blank, in bright white on black so it reads dark-on-light on any terminal theme.
std::string TerminalQr(const QrCode& qr);

// TerminalQr on stderr; when stderr is a terminal too small to show the code whole (a wrapped one reads as
// nothing), says so after it.
void ShowTerminalQr(const QrCode& qr);

// A PNG at `path` (mode 0644, replaced whole if it exists), written whole or not at all: a temporary
// file beside it, renamed over it at Commit. The constructor creates that file, so a bad path fails
// before any work; if Commit is never reached, the destructor removes it.
class QrPngFile {
 public:
  explicit QrPngFile(std::string path);  // UsageError if the file cannot be created there
  ~QrPngFile();
  QrPngFile(const QrPngFile&) = delete;
  QrPngFile& operator=(const QrPngFile&) = delete;
  void Commit(const QrCode& qr);  // UsageError if it cannot be written

 private:
  std::string path_, temp_;
  int fd_ = -1;
};

}  // namespace dala::cli
