package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** A report's id: 16 bytes, shown as 32 lowercase hex characters. */
public final class ReportId extends Id16 {
    ReportId(byte[] bytes) {
        super(bytes, "a report id");
    }

    public static @NotNull ReportId parse(@NotNull String hex) {
        return new ReportId(Hex.decode(hex, 16, "a report id is 32 hexadecimal characters"));
    }
}
