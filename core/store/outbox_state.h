// The states of an outbox row (outbox.state in docs/storage-format.md). C++ uses the enum; SQL text uses
// the DALA_OUTBOX_* literals, so that no query spells a state as a bare number.
#pragma once

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

}  // namespace dala
