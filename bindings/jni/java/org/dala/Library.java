package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** The loaded libdala ({@code dala_version}, {@code dala_version_number}). */
public final class Library {
    private Library() {}

    /** "major.minor.patch" of the library in use (it may be newer than these classes). */
    public static @NotNull String version() {
        return Native.string(Native.version());
    }

    /** major * 10000 + minor * 100 + patch. */
    public static int versionNumber() {
        return Native.versionNumber();
    }
}
