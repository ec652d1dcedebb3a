package android.net;

public class ConnectivityManager {
    public static class NetworkCallback {
        public void onAvailable(Network network) {}
        public void onLost(Network network) {}
    }

    public void registerDefaultNetworkCallback(NetworkCallback networkCallback) {
        throw new UnsupportedOperationException("stub");
    }
}
