package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

import java.util.Collections;
import java.util.List;

/** A page of reports, newest first, and where the next one starts. */
public final class ReportPage {
    /** The reports of this page (their latest versions). */
    public final @NotNull List<ReportInfo> reports;
    /** The cursor to pass to {@link ListOptions#after} for the next page; null when this is the last. */
    public final @Nullable String next;

    ReportPage(List<ReportInfo> reports, String next) {
        this.reports = Collections.unmodifiableList(reports);
        this.next = next;
    }
}
