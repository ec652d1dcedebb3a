package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

import java.io.InputStream;

/** Decrypts an attachment as it is read; the end (-1) comes only after size and hash verified. */
final class AttachmentInputStream extends InputStream {
    private final Handle handle;

    AttachmentInputStream(long reader) {
        handle = new Handle(reader);
    }

    @Override
    public int read() {
        byte[] one = new byte[1];
        int n = read(one, 0, 1);
        return n < 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public int read(@NotNull byte[] b, int off, int len) {
        if (b == null) throw new DalaException.InvalidArgument("the buffer is null");
        if (off < 0 || len < 0 || off > b.length - len) throw new IndexOutOfBoundsException();
        if (len == 0) return 0;
        return handle.with(h -> Native.readerRead(h, b, off, len));
    }

    @Override
    public void close() {
        handle.close();
    }

    private static final class Handle extends NativeHandle {
        Handle(long h) {
            super(h, Native.READER, "attachment stream");
        }
    }
}
