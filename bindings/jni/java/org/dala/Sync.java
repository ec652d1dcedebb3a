package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** Delivery to the organisation's servers. */
public final class Sync {
    /**
     * Called on the thread running the sync, after each request: a lambda in Java and Kotlin
     * ({@code p -> bar.setProgress(p.uploadDone, p.uploadTotal)}).
     */
    @FunctionalInterface
    public interface ProgressListener {
        void onProgress(@NotNull SyncProgress progress);
    }

    /** What a run did. */
    public static final class Result {
        public final long delivered;
        public final long rejected;
        public final long remaining;
        public final boolean unreachable;

        Result(long[] r) {
            delivered = r[0];
            rejected = r[1];
            remaining = r[2];
            unreachable = r[3] != 0;
        }
    }

    private final Store store;
    private final String proxyUrl;

    Sync(Store store) {
        this(store, null);
    }

    private Sync(Store store, String proxyUrl) {
        this.store = store;
        this.proxyUrl = proxyUrl;
    }

    /**
     * The same, with every connection of the built-in transport through a SOCKS5 proxy,
     * "socks5h://HOST:PORT" (Orbot: socks5h://127.0.0.1:9050); server names are resolved by the proxy.
     * Without one, an .onion address is refused. A malformed URL throws {@link DalaException.InvalidArgument}
     * when a run starts.
     */
    public @NotNull Sync throughProxy(@Nullable String proxyUrl) {
        return new Sync(store, proxyUrl);
    }

    /**
     * Sends what is due until nothing is, the timeout passes, or a server cannot be reached (the built-in
     * HTTP/HTTPS transport). A listener that throws does not stop the run or harm the store: its first
     * exception is thrown again once the run has ended and everything it did is recorded.
     */
    public @NotNull Result runOnce(long timeoutMs, @Nullable ProgressListener listener) {
        return runOnce(timeoutMs, listener, null);
    }

    /** The same through the app's own transport (null: the built-in one). */
    public @NotNull Result runOnce(long timeoutMs, @Nullable ProgressListener listener, @Nullable Transport transport) {
        byte[] proxy = proxyUrl == null ? null : Native.bytes(proxyUrl);
        return new Result(store.with(h -> Native.syncRunOnce(h, timeoutMs, listener, transport, proxy, 0)));
    }

    /**
     * {@link #runOnce} on the executor's thread (one that runs one task at a time keeps runs apart, as the
     * library asks); returns at once. {@code cancel} stops the run promptly, whatever its argument (the
     * thread is never interrupted inside the library): a request of the built-in transport in flight is cut
     * off, nothing more is sent, nothing is lost (what was not acknowledged stays queued, due at once for
     * the next run: a stop is not a failed contact). {@code get} gives the result, or
     * an {@link java.util.concurrent.ExecutionException} with the run's {@link DalaException} (or a
     * listener's exception) as its cause.
     */
    // The library runs one sync at a time per store: a run started while another is going waits for it. After
    // cancel, the run may still be ending on the executor's thread; an executor of one thread orders them.
    public @NotNull java.util.concurrent.Future<Result> runAsync(@NotNull java.util.concurrent.Executor executor,
                                                                 long timeoutMs, @Nullable ProgressListener listener,
                                                                 @Nullable Transport transport) {
        byte[] proxy = proxyUrl == null ? null : Native.bytes(proxyUrl);
        long cancel = Native.cancelCreate();
        Run run = new Run(cancel,
                () -> new Result(store.with(h -> Native.syncRunOnce(h, timeoutMs, listener, transport, proxy, cancel))));
        try {
            executor.execute(run);
        } catch (RuntimeException e) {  // rejected: it never runs
            run.release();
            throw e;
        }
        return run;
    }

    /** A run on an executor, whose cancel triggers its stop token; the token is freed once the run is over. */
    private static final class Run extends java.util.concurrent.FutureTask<Result> {
        private long cancel;  // 0 once freed

        Run(long cancel, java.util.concurrent.Callable<Result> body) {
            super(body);
            this.cancel = cancel;
        }

        @Override
        public boolean cancel(boolean mayInterruptIfRunning) {
            boolean cancelled = super.cancel(false);
            synchronized (this) {
                if (cancel != 0) Native.cancelTrigger(cancel);
            }
            return cancelled;
        }

        @Override
        public void run() {
            try {
                super.run();
            } finally {
                release();
            }
        }

        synchronized void release() {
            if (cancel != 0) Native.cancelFree(cancel);
            cancel = 0;
        }
    }

    /**
     * Starts background delivery (see {@link SyncSession}); each run is bounded by timeoutMs. Exceptions a
     * listener throws there are dropped (the run goes on); the transport's IOException means unreachable.
     */
    public @NotNull SyncSession startSession(long timeoutMs, @Nullable ProgressListener listener,
                                             @Nullable Transport transport) {
        byte[] proxy = proxyUrl == null ? null : Native.bytes(proxyUrl);
        SyncSession s = new SyncSession(store,
                store.with(h -> Native.sessionStart(h, timeoutMs, listener, transport, proxy)));
        store.remember(s);
        return s;
    }
}
