// Benchmarks print each figure beside its limit, measured in the same run, and count the misses.
#pragma once

#include <cstdio>
#include <cstring>

namespace bench {

inline int failures = 0;

inline void Row(const char* metric, double measured, const char* op, double limit, const char* unit,
                const char* basis) {
  bool ok = std::strcmp(op, "<=") == 0 ? measured <= limit : measured >= limit;
  if (!ok) ++failures;
  std::printf("%-44s %12.3f %s  %2s %12.3f %s   %-4s  (%s)\n", metric, measured, unit, op, limit, unit,
              ok ? "ok" : "MISS", basis);
}

}  // namespace bench
