package androidx.work;

public abstract class WorkManager {
    public static WorkManager getInstance(android.content.Context context) { throw new UnsupportedOperationException("stub"); }
    public abstract Object enqueueUniquePeriodicWork(String uniqueWorkName, ExistingPeriodicWorkPolicy policy,
                                                     PeriodicWorkRequest request);
    public abstract Object enqueueUniqueWork(String uniqueWorkName, ExistingWorkPolicy policy, OneTimeWorkRequest request);
}
