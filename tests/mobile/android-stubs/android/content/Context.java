package android.content;

public abstract class Context {
    public java.io.File getNoBackupFilesDir() { throw new UnsupportedOperationException("stub"); }
    public Context getApplicationContext() { throw new UnsupportedOperationException("stub"); }
    public <T> T getSystemService(Class<T> serviceClass) { throw new UnsupportedOperationException("stub"); }
}
