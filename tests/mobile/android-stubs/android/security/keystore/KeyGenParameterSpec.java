package android.security.keystore;

public final class KeyGenParameterSpec implements java.security.spec.AlgorithmParameterSpec {
    public static final class Builder {
        public Builder(String keystoreAlias, int purposes) {}
        public Builder setBlockModes(String... blockModes) { return this; }
        public Builder setEncryptionPaddings(String... paddings) { return this; }
        public Builder setKeySize(int keySize) { return this; }
        public Builder setUnlockedDeviceRequired(boolean unlockedDeviceRequired) { return this; }
        public KeyGenParameterSpec build() { throw new UnsupportedOperationException("stub"); }
    }
}
