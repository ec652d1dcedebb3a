#include "server/log_line.h"

#include <cstdio>
#include <mutex>

#include "base/clock.h"

namespace dala::server {

void LogLine(const char* level, const std::string& fields) {
  static std::mutex mu;
  const std::string time = IsoTime(SystemNowMs());
  std::lock_guard lock(mu);  // whole lines, never interleaved
  std::fprintf(stderr, "{\"time\":\"%s\",\"level\":\"%s\",%s}\n", time.c_str(), level, fields.c_str());
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out + "\"";
}

}  // namespace dala::server
