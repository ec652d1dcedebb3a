package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

import java.util.EnumSet;
import java.util.Set;

/**
 * Which reports a page of {@link Store#reports(ListOptions)} lists ({@code dala_report_list_options}).
 * The defaults: 50 reports from the newest, any state, any form.
 */
public final class ListOptions {
    int limit = 50;
    String after;
    final EnumSet<ReportState> states = EnumSet.noneOf(ReportState.class);
    String form;

    /** At most this many reports on the page, 1 to 1000. */
    public @NotNull ListOptions limit(int limit) {
        this.limit = limit;
        return this;
    }

    /** The page after this cursor ({@link ReportPage#next} of the page before); null: from the newest. */
    public @NotNull ListOptions after(@Nullable String cursor) {
        this.after = cursor;
        return this;
    }

    /** Only reports whose latest version is in one of these states; empty: any. */
    public @NotNull ListOptions states(@NotNull Set<ReportState> states) {
        this.states.clear();
        this.states.addAll(states);
        return this;
    }

    /** Only this form: "name" (every version) or "name/version"; null: any. */
    public @NotNull ListOptions form(@Nullable String form) {
        this.form = form;
        return this;
    }

    int stateMask() {
        int mask = 0;
        for (ReportState s : states) mask |= 1 << s.ordinal();
        return mask;
    }
}
