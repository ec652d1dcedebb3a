package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/**
 * Background delivery: a thread of the library's own runs a sync at start, whenever {@link #notifyOnline}
 * is called, and when the earliest retry falls due. The listener and the transport are called on that
 * thread. {@link #close()} stops it (waiting for a run in progress to end); closing the store closes it.
 */
public final class SyncSession extends NativeHandle {
    private final Store store;

    SyncSession(Store store, long handle) {
        super(handle, Native.SESSION, "SyncSession");
        this.store = store;
    }

    /** Connectivity is back (or the user asked to sync now): run at once. */
    public void notifyOnline() {
        run(Native::sessionNotifyOnline);
    }

    /** Stops a run in progress promptly; the session keeps going and syncs again later. */
    public void cancel() {
        run(Native::sessionCancel);
    }

    /** The last finished run's result, or null before the first run ended. */
    public @Nullable Sync.Result lastResult() {
        long[] r = with(Native::sessionLastResult);
        return r == null ? null : new Sync.Result(r);
    }

    @Override
    public void close() {
        super.close();
        store.forget(this);
    }
}
