package org.dala;

/** {@code dala_report_state}. */
public enum ReportState {
    DRAFT, SEALED, QUEUED, DELIVERED, REJECTED;

    static ReportState of(int v) {
        ReportState[] all = values();
        return v >= 0 && v < all.length ? all[v] : REJECTED;
    }
}
