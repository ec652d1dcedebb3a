// Wall-clock time as Unix milliseconds: the one clock the store, the sync engine and the server read
// (each lets tests replace it).
#pragma once

#include <cstdint>

namespace dala {
int64_t SystemNowMs();
}
