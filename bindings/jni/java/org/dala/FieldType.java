package org.dala;

/** {@code dala_field_type}. */
public enum FieldType {
    TEXT, INTEGER, DECIMAL, BOOLEAN, TIMESTAMP, GEO, PEOPLE;

    static FieldType of(int v) {  // the C numbers start at 1
        FieldType[] all = values();
        return v >= 1 && v <= all.length ? all[v - 1] : null;
    }
}
