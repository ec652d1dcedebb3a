package org.dala;

/** An attachment's id: 16 bytes, shown as 32 lowercase hex characters. */
public final class AttachmentId extends Id16 {
    AttachmentId(byte[] bytes) {
        super(bytes, "an attachment id");
    }

    public static AttachmentId parse(String hex) {
        return new AttachmentId(Hex.decode(hex, 16, "an attachment id is 32 hexadecimal characters"));
    }
}
