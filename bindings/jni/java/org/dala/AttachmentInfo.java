package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** One attachment of a report (never its key). */
public final class AttachmentInfo {
    public final @NotNull AttachmentId id;
    public final int version;          // the draft version it was added to
    public final @NotNull String mimeType;
    public final long size;            // plaintext bytes
    public final long ciphertextSize;  // bytes of the encrypted file (what is uploaded)

    AttachmentInfo(AttachmentId id, int version, String mimeType, long size, long ciphertextSize) {
        this.id = id;
        this.version = version;
        this.mimeType = mimeType;
        this.size = size;
        this.ciphertextSize = ciphertextSize;
    }

    static AttachmentInfo of(byte[] id, int version, byte[] mime, long size, long ciphertextSize) {
        return new AttachmentInfo(new AttachmentId(id), version, Native.string(mime), size, ciphertextSize);
    }
}
