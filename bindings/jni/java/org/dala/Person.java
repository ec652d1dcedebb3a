package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** A person named in a report ({@code dala_person}), with their role ("detained", "witness"...; may be empty). */
public final class Person {
    public final @NotNull String name;
    public final @NotNull String role;

    public Person(@NotNull String name, @Nullable String role) {
        this.name = java.util.Objects.requireNonNull(name, "a person needs a name");
        this.role = role == null ? "" : role;
    }

    @Override
    public boolean equals(@Nullable Object o) {
        return o instanceof Person && name.equals(((Person) o).name) && role.equals(((Person) o).role);
    }

    @Override
    public int hashCode() {
        return name.hashCode() * 31 + role.hashCode();
    }

    @Override
    public @NotNull String toString() {
        return role.isEmpty() ? name : name + " (" + role + ")";
    }
}
