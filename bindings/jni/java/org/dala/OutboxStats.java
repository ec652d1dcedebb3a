package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** Counts of one destination's outbox ({@code dala_outbox_stats}). */
public final class OutboxStats {
    public final long pending;
    public final long inFlight;
    public final long delivered;
    public final long rejected;
    /** The earliest pending retry (Unix ms), 0 when nothing waits. */
    public final long nextAttemptMs;

    OutboxStats(long[] v) {
        pending = v[0];
        inFlight = v[1];
        delivered = v[2];
        rejected = v[3];
        nextAttemptMs = v[4];
    }
}
