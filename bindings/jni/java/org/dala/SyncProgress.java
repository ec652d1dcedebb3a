package org.dala;

import org.jetbrains.annotations.NotNull;

/** Where a sync run is, for one destination, after a request ({@code dala_sync_progress}). */
public final class SyncProgress {
    /** The destination (the organisation's servers) the request went to. */
    public final @NotNull String destination;
    /** Reports delivered in this run. */
    public final long delivered;
    /** Reports the server refused in this run (kept; {@code Store.retry} queues one again). */
    public final long rejected;
    /** Reports still to deliver to this destination (pending and in flight). */
    public final long remaining;
    /** Attachment bytes the server holds, of the reports uploading in this run. */
    public final long uploadDone;
    /** Their total. */
    public final long uploadTotal;

    SyncProgress(@NotNull String destination, long delivered, long rejected, long remaining, long uploadDone,
                 long uploadTotal) {
        this.destination = destination;
        this.delivered = delivered;
        this.rejected = rejected;
        this.remaining = remaining;
        this.uploadDone = uploadDone;
        this.uploadTotal = uploadTotal;
    }

    @Override
    public @NotNull String toString() {
        return "SyncProgress{" + destination + ": delivered " + delivered + ", rejected " + rejected + ", remaining "
                + remaining + ", uploaded " + uploadDone + "/" + uploadTotal + "}";
    }
}
