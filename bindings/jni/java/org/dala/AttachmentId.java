package org.dala;

import java.util.Arrays;

/** An attachment's id: 16 bytes, shown as 32 lowercase hex characters. */
public final class AttachmentId {
    private final byte[] bytes;

    AttachmentId(byte[] bytes) {
        if (bytes == null || bytes.length != 16) throw new DalaException.InvalidArgument("an attachment id is 16 bytes");
        this.bytes = bytes.clone();
    }

    public static AttachmentId parse(String hex) {
        return new AttachmentId(Hex.decode(hex, 16, "an attachment id is 32 hexadecimal characters"));
    }

    byte[] bytes() {
        return bytes.clone();
    }

    @Override
    public String toString() {
        return Hex.encode(bytes);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof AttachmentId && Arrays.equals(bytes, ((AttachmentId) o).bytes);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(bytes);
    }
}
