// Sizes that say little: Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and
// Communication with PURBs", PETS 2019). A length L is rounded up so that only its top ~log2(log2 L) + 1
// bits remain: at most about 12% more bytes, and an observer learns O(log log L) bits of the length instead
// of all of them. Used for envelopes, signed requests and attachment files (docs/protocol.md, "Padding").
#pragma once

#include <cstdint>

namespace dala {

// The Padmé length of `len`, and at least `minimum`.
uint64_t PadmeLength(uint64_t len, uint64_t minimum);

}  // namespace dala
