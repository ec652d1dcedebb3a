// Wall-clock time as Unix milliseconds: the one clock the store, the sync engine and the server read
// (each lets tests replace it).
#pragma once

#include <cstdint>
#include <string>

namespace dala {
int64_t SystemNowMs();
// Unix milliseconds as ISO 8601 in UTC with milliseconds ("2026-12-05T15:13:27.123Z"); "" for 0 or less
// (a time never set).
std::string IsoTime(int64_t ms);
}
