package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** A point on Earth ({@code dala_geo}): latitude -90..90, longitude -180..180, accuracy in metres (0: unknown). */
public final class GeoPoint {
    public final double latitude;
    public final double longitude;
    public final double accuracyM;

    public GeoPoint(double latitude, double longitude, double accuracyM) {
        this.latitude = latitude;
        this.longitude = longitude;
        this.accuracyM = accuracyM;
    }

    @Override
    public boolean equals(@Nullable Object o) {
        if (!(o instanceof GeoPoint)) return false;
        GeoPoint g = (GeoPoint) o;
        return Double.compare(latitude, g.latitude) == 0 && Double.compare(longitude, g.longitude) == 0
                && Double.compare(accuracyM, g.accuracyM) == 0;
    }

    @Override
    public int hashCode() {
        return java.util.Arrays.hashCode(new double[] {latitude, longitude, accuracyM});
    }

    @Override
    public @NotNull String toString() {
        return latitude + "," + longitude + " ±" + accuracyM + " m";
    }
}
