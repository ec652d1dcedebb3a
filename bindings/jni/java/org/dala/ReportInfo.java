package org.dala;

/** One line of {@link Store#reports()}: a report's latest version. */
public final class ReportInfo {
    public final ReportId id;
    public final int version;
    public final ReportState state;
    public final long createdMs;
    public final long updatedMs;
    public final String form;

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
