package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

import java.util.Arrays;

/** 16 bytes that name something (a report, an attachment), shown as 32 lowercase hex characters. */
abstract class Id16 {
    private final byte[] bytes;

    Id16(byte[] bytes, String what) {
        if (bytes == null || bytes.length != 16) throw new DalaException.InvalidArgument(what + " is 16 bytes");
        this.bytes = bytes.clone();
    }

    final byte[] bytes() {
        return bytes.clone();
    }

    @Override
    public final @NotNull String toString() {
        return Hex.encode(bytes);
    }

    @Override
    public final boolean equals(@Nullable Object o) {
        return o != null && o.getClass() == getClass() && Arrays.equals(bytes, ((Id16) o).bytes);
    }

    @Override
    public final int hashCode() {
        return Arrays.hashCode(bytes);
    }
}
