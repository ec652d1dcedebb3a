package androidx.work;

public final class PeriodicWorkRequest extends WorkRequest {
    public static final class Builder {
        public Builder(Class<? extends ListenableWorker> workerClass, long repeatInterval,
                       java.util.concurrent.TimeUnit repeatIntervalTimeUnit) {}
        public Builder setConstraints(Constraints constraints) { return this; }
        public PeriodicWorkRequest build() { throw new UnsupportedOperationException("stub"); }
    }
}
