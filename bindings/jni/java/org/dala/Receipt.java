package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** A server's signed receipt for one report version, kept on the phone. */
public final class Receipt {
    public final @NotNull ReportId id;
    public final int version;
    public final @NotNull String destination;
    public final long sequence;
    public final long serverTimeMs;
    public final boolean verified;  // against the server key from the invite

    Receipt(ReportId id, int version, String destination, long sequence, long serverTimeMs, boolean verified) {
        this.id = id;
        this.version = version;
        this.destination = destination;
        this.sequence = sequence;
        this.serverTimeMs = serverTimeMs;
        this.verified = verified;
    }

    static Receipt of(byte[] id, int version, byte[] destination, long sequence, long serverTimeMs, boolean verified) {
        return new Receipt(new ReportId(id), version, Native.string(destination), sequence, serverTimeMs, verified);
    }
}
