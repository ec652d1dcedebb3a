package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** Every {@code dala_status} of the C API, with the same numbers (they never change; a test checks). */
public enum Status {
    OK(0, "DALA_OK"),
    INTERNAL(1, "DALA_ERR_INTERNAL"),
    INVALID_ARGUMENT(2, "DALA_ERR_INVALID_ARGUMENT"),
    WRONG_KEY(3, "DALA_ERR_WRONG_KEY"),
    NOT_FOUND(4, "DALA_ERR_NOT_FOUND"),
    EXISTS(5, "DALA_ERR_EXISTS"),
    CORRUPT(6, "DALA_ERR_CORRUPT"),
    IO(7, "DALA_ERR_IO"),
    PERMISSION(8, "DALA_ERR_PERMISSION"),
    STATE(9, "DALA_ERR_STATE"),
    TOO_LARGE(10, "DALA_ERR_TOO_LARGE"),
    VERIFY(11, "DALA_ERR_VERIFY"),
    BUSY(12, "DALA_ERR_BUSY"),
    NOT_ENCRYPTED(13, "DALA_ERR_NOT_ENCRYPTED"),
    NO_MEMORY(14, "DALA_ERR_NO_MEMORY"),
    NO_SPACE(15, "DALA_ERR_NO_SPACE");

    private final int code;
    private final String cName;

    Status(int code, String cName) {
        this.code = code;
        this.cName = cName;
    }

    /** The number in the C API. */
    public int code() {
        return code;
    }

    /** The C enumerator's name, e.g. "DALA_ERR_WRONG_KEY". */
    public @NotNull String cName() {
        return cName;
    }

    /** The status with this number; INTERNAL for a number this version does not know. */
    public static @NotNull Status fromCode(int code) {
        for (Status s : values()) {
            if (s.code == code) return s;
        }
        return INTERNAL;
    }
}
