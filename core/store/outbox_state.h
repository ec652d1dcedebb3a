// The states of an outbox row (outbox.state in docs/storage-format.md). C++ uses the enum; SQL text uses
// the DALA_OUTBOX_* literals, so that no query spells a state as a bare number.
#pragma once

#include <cstdint>

#include "format/report.h"

namespace dala {

#define DALA_OUTBOX_PENDING "0"    /* due at next_attempt_ms */
#define DALA_OUTBOX_IN_FLIGHT "1"  /* handed to a sync run; pending again after a crash */
#define DALA_OUTBOX_DELIVERED "2"  /* receipt kept */
#define DALA_OUTBOX_REJECTED "3"   /* refused for good */

enum class OutboxState : int { kPending = 0, kInFlight = 1, kDelivered = 2, kRejected = 3 };
static_assert(DALA_OUTBOX_PENDING[0] - '0' == static_cast<int>(OutboxState::kPending) &&
              DALA_OUTBOX_IN_FLIGHT[0] - '0' == static_cast<int>(OutboxState::kInFlight) &&
              DALA_OUTBOX_DELIVERED[0] - '0' == static_cast<int>(OutboxState::kDelivered) &&
              DALA_OUTBOX_REJECTED[0] - '0' == static_cast<int>(OutboxState::kRejected));

// A version's state follows from whether it is sealed and from its outbox rows (one per destination).
inline ReportState DeriveState(bool sealed, int64_t queued, int64_t delivered, int64_t rejected) {
  if (!sealed) return ReportState::kDraft;
  if (queued == 0) return ReportState::kSealed;
  if (rejected > 0) return ReportState::kRejected;
  if (delivered == queued) return ReportState::kDelivered;
  return ReportState::kQueued;
}

}  // namespace dala
