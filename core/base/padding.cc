#include "base/padding.h"

#include <bit>

namespace dala {

uint64_t PadmeLength(uint64_t len, uint64_t minimum) {
  if (len <= minimum) return minimum;
  if (len > (uint64_t{1} << 62)) return len;  // no such sizes here; never overflow
  // E = floor(log2 L); S = floor(log2 E) + 1; the last E - S bits are rounded up.
  const int e = std::bit_width(len) - 1;
  const int s = std::bit_width(static_cast<uint64_t>(e));
  const int last_bits = e - s;
  if (last_bits <= 0) return len;
  const uint64_t mask = (uint64_t{1} << last_bits) - 1;
  return (len + mask) & ~mask;
}

}  // namespace dala
