package org.dala;

/** A person named in a report ({@code dala_person}), with their role ("detained", "witness"...; may be empty). */
public final class Person {
    public final String name;
    public final String role;

    public Person(String name, String role) {
        this.name = java.util.Objects.requireNonNull(name, "a person needs a name");
        this.role = role == null ? "" : role;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Person && name.equals(((Person) o).name) && role.equals(((Person) o).role);
    }

    @Override
    public int hashCode() {
        return name.hashCode() * 31 + role.hashCode();
    }

    @Override
    public String toString() {
        return role.isEmpty() ? name : name + " (" + role + ")";
    }
}
