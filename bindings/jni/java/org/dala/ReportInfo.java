package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** One line of {@link Store#reports()}: a report's latest version. */
public final class ReportInfo {
    public final @NotNull ReportId id;
    public final int version;
    public final @NotNull ReportState state;
    public final long createdMs;
    public final long updatedMs;
    public final @NotNull String form;

    ReportInfo(ReportId id, int version, ReportState state, long createdMs, long updatedMs, String form) {
        this.id = id;
        this.version = version;
        this.state = state;
        this.createdMs = createdMs;
        this.updatedMs = updatedMs;
        this.form = form;
    }

    /** Called by the native glue. */
    static ReportInfo of(byte[] id, int version, int state, long created, long updated, byte[] form) {
        return new ReportInfo(new ReportId(id), version, ReportState.of(state), created, updated, Native.string(form));
    }
}
