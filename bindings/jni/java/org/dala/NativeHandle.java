package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

import java.lang.ref.PhantomReference;
import java.lang.ref.ReferenceQueue;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A native handle with an idempotent {@link #close()}. Calls hold a read lock on the handle, close takes
 * the write lock, so closing while another thread is inside a call waits for that call instead of freeing
 * memory under it. A handle that is never closed is freed once the object is unreachable (a backstop:
 * close handles yourself, with try-with-resources).
 */
abstract class NativeHandle implements AutoCloseable {
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private final String what;
    private long handle;
    private final Backstop backstop;

    NativeHandle(long handle, int kind, String what) {
        this.handle = handle;
        this.what = what;
        this.backstop = new Backstop(this, handle, kind);
    }

    /** Runs body with the live handle; IllegalStateException once closed. */
    final <T> T with(HandleFunction<T> body) {
        ReentrantReadWriteLock.ReadLock r = lock.readLock();
        r.lock();
        try {
            if (handle == 0) throw new IllegalStateException("this " + what + " is closed");
            return body.apply(handle);
        } finally {
            r.unlock();
        }
    }

    final void run(HandleAction body) {
        with(h -> {
            body.apply(h);
            return null;
        });
    }

    final boolean isClosed() {
        lock.readLock().lock();
        try {
            return handle == 0;
        } finally {
            lock.readLock().unlock();
        }
    }

    @Override
    public void close() {
        long h;
        lock.writeLock().lock();
        try {
            h = handle;
            handle = 0;
        } finally {
            lock.writeLock().unlock();
        }
        if (h != 0) backstop.freeNow();
    }

    interface HandleFunction<T> {
        @Nullable T apply(long handle);
    }

    interface HandleAction {
        void apply(long handle);
    }

    private static final ReferenceQueue<NativeHandle> QUEUE = new ReferenceQueue<>();
    private static final AtomicLong BACKSTOP_FREED = new AtomicLong();

    /** How many handles the backstop freed because their owner was never closed (tests). */
    static long backstopFreed() {
        return BACKSTOP_FREED.get();
    }
    private static final Set<Backstop> LIVE = Collections.synchronizedSet(
            Collections.newSetFromMap(new IdentityHashMap<Backstop, Boolean>()));

    static {
        Thread t = new Thread(() -> {
            for (;;) {
                try {
                    ((Backstop) QUEUE.remove()).freeUnreachable();
                } catch (InterruptedException e) {
                    return;
                }
            }
        }, "dala-handle-backstop");
        t.setDaemon(true);
        t.start();
    }

    private static final class Backstop extends PhantomReference<NativeHandle> {
        private final long handle;
        private final int kind;

        Backstop(NativeHandle owner, long handle, int kind) {
            super(owner, QUEUE);
            this.handle = handle;
            this.kind = kind;
            LIVE.add(this);
        }

        void freeNow() {
            if (LIVE.remove(this)) Native.free(kind, handle);
        }

        void freeUnreachable() {
            if (LIVE.contains(this)) BACKSTOP_FREED.incrementAndGet();
            freeNow();
        }
    }
}
