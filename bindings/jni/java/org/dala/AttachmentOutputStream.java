package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

import java.io.OutputStream;

/**
 * Captures an attachment: bytes written here are encrypted at once (never plaintext on disk). close()
 * finishes the capture and records it in the draft; {@link #id()} then names it. Use {@link #abort()} to
 * discard a capture. An attachment that was neither closed nor aborted is discarded when collected.
 */
public final class AttachmentOutputStream extends OutputStream {
    private final Handle handle;
    private AttachmentId id;

    AttachmentOutputStream(long writer) {
        handle = new Handle(writer);
    }

    @Override
    public void write(int b) {
        write(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public void write(@NotNull byte[] b) {
        write(b, 0, b == null ? 0 : b.length);
    }

    @Override
    public void write(@NotNull byte[] b, int off, int len) {
        if (b == null) throw new DalaException.InvalidArgument("the data is null");
        if (off < 0 || len < 0 || off > b.length - len) throw new IndexOutOfBoundsException();
        handle.run(h -> Native.writerWrite(h, b, off, len));
    }

    /** Finishes the capture (idempotent). */
    @Override
    public synchronized void close() {
        if (id != null || handle.isClosed()) return;
        try {
            id = new AttachmentId(handle.with(Native::writerFinish));
        } finally {
            handle.close();
        }
    }

    /** Discards the capture and its file. */
    public synchronized void abort() {
        handle.close();
    }

    /** The attachment's id, once closed. */
    public synchronized @NotNull AttachmentId id() {
        if (id == null) throw new IllegalStateException("the attachment is not finished; close the stream first");
        return id;
    }

    private static final class Handle extends NativeHandle {
        Handle(long h) {
            super(h, Native.WRITER, "attachment stream");
        }
    }
}
