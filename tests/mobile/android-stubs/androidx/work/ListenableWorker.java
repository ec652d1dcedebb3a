package androidx.work;

public abstract class ListenableWorker {
    public ListenableWorker(android.content.Context appContext, WorkerParameters workerParams) {}
    public final android.content.Context getApplicationContext() { throw new UnsupportedOperationException("stub"); }
    public void onStopped() {}

    public abstract static class Result {
        public static Result success() { throw new UnsupportedOperationException("stub"); }
        public static Result retry() { throw new UnsupportedOperationException("stub"); }
        public static Result failure() { throw new UnsupportedOperationException("stub"); }
    }
}
