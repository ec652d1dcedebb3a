package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/**
 * A failure reported by the library. {@link #status()} says which kind; each kind also has its own
 * subclass, so callers can catch, say, {@link WrongKey} alone. Messages are for people (what went wrong,
 * what to do) and never contain secrets or report contents.
 */
public class DalaException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final Status status;

    public DalaException(@NotNull Status status, @NotNull String message) {
        super(message);
        this.status = status;
    }

    public @NotNull Status status() {
        return status;
    }

    public static final class Internal extends DalaException {
        private static final long serialVersionUID = 1L;
        public Internal(@NotNull String m) { super(Status.INTERNAL, m); }
    }

    public static final class InvalidArgument extends DalaException {
        private static final long serialVersionUID = 1L;
        public InvalidArgument(@NotNull String m) { super(Status.INVALID_ARGUMENT, m); }
    }

    /** Wrong passphrase or key. */
    public static final class WrongKey extends DalaException {
        private static final long serialVersionUID = 1L;
        public WrongKey(@NotNull String m) { super(Status.WRONG_KEY, m); }
    }

    public static final class NotFound extends DalaException {
        private static final long serialVersionUID = 1L;
        public NotFound(@NotNull String m) { super(Status.NOT_FOUND, m); }
    }

    public static final class Exists extends DalaException {
        private static final long serialVersionUID = 1L;
        public Exists(@NotNull String m) { super(Status.EXISTS, m); }
    }

    public static final class Corrupt extends DalaException {
        private static final long serialVersionUID = 1L;
        public Corrupt(@NotNull String m) { super(Status.CORRUPT, m); }
    }

    public static final class Io extends DalaException {
        private static final long serialVersionUID = 1L;
        public Io(@NotNull String m) { super(Status.IO, m); }
    }

    public static final class Permission extends DalaException {
        private static final long serialVersionUID = 1L;
        public Permission(@NotNull String m) { super(Status.PERMISSION, m); }
    }

    /** Not allowed in the object's current state (e.g. editing a sealed version, using a closed handle). */
    public static final class State extends DalaException {
        private static final long serialVersionUID = 1L;
        public State(@NotNull String m) { super(Status.STATE, m); }
    }

    public static final class TooLarge extends DalaException {
        private static final long serialVersionUID = 1L;
        public TooLarge(@NotNull String m) { super(Status.TOO_LARGE, m); }
    }

    /** A signature, hash or authentication tag did not verify: altered or damaged data. */
    public static final class Verify extends DalaException {
        private static final long serialVersionUID = 1L;
        public Verify(@NotNull String m) { super(Status.VERIFY, m); }
    }

    public static final class Busy extends DalaException {
        private static final long serialVersionUID = 1L;
        public Busy(@NotNull String m) { super(Status.BUSY, m); }
    }

    /** Encryption could not be confirmed (e.g. plain SQLite loaded in the process): refused. */
    public static final class NotEncrypted extends DalaException {
        private static final long serialVersionUID = 1L;
        public NotEncrypted(@NotNull String m) { super(Status.NOT_ENCRYPTED, m); }
    }

    public static final class NoMemory extends DalaException {
        private static final long serialVersionUID = 1L;
        public NoMemory(@NotNull String m) { super(Status.NO_MEMORY, m); }
    }

    public static final class NoSpace extends DalaException {
        private static final long serialVersionUID = 1L;
        public NoSpace(@NotNull String m) { super(Status.NO_SPACE, m); }
    }

    /** Called by the native glue (the message arrives as UTF-8). */
    static DalaException create(int code, byte[] utf8Message) {
        String m = Native.string(utf8Message);
        switch (Status.fromCode(code)) {
            case INVALID_ARGUMENT: return new InvalidArgument(m);
            case WRONG_KEY: return new WrongKey(m);
            case NOT_FOUND: return new NotFound(m);
            case EXISTS: return new Exists(m);
            case CORRUPT: return new Corrupt(m);
            case IO: return new Io(m);
            case PERMISSION: return new Permission(m);
            case STATE: return new State(m);
            case TOO_LARGE: return new TooLarge(m);
            case VERIFY: return new Verify(m);
            case BUSY: return new Busy(m);
            case NOT_ENCRYPTED: return new NotEncrypted(m);
            case NO_MEMORY: return new NoMemory(m);
            case NO_SPACE: return new NoSpace(m);
            case INTERNAL:
            case OK:
            default: return new Internal(m);
        }
    }
}
