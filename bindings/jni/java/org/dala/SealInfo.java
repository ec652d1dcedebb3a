package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** A sealed version's signature facts ({@code dala_report_get_seal_info}). */
public final class SealInfo {
    /** The signing device's Ed25519 public key (32 bytes). */
    public final @NotNull byte[] deviceKey;
    /** BLAKE2b-256 of the signed bytes. */
    public final @NotNull byte[] contentHash;
    /** The previous version's content hash; all zero for version 1. */
    public final @NotNull byte[] previousHash;

    SealInfo(byte[] all) {
        deviceKey = java.util.Arrays.copyOfRange(all, 0, 32);
        contentHash = java.util.Arrays.copyOfRange(all, 32, 64);
        previousHash = java.util.Arrays.copyOfRange(all, 64, 96);
    }
}
