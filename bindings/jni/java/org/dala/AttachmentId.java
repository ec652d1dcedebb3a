package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** An attachment's id: 16 bytes, shown as 32 lowercase hex characters. */
public final class AttachmentId extends Id16 {
    AttachmentId(byte[] bytes) {
        super(bytes, "an attachment id");
    }

    public static @NotNull AttachmentId parse(@NotNull String hex) {
        return new AttachmentId(Hex.decode(hex, 16, "an attachment id is 32 hexadecimal characters"));
    }
}
