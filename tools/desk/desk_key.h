// The organisation's desk key: an X25519 key pair whose secret is kept only wrapped (crypto/keyfile.h)
// under the desk's passphrase or a raw key. Sealed envelopes are opened with it.
#pragma once

#include <string>

#include "base/status.h"
#include "crypto/crypto.h"
#include "crypto/keyfile.h"

namespace dala::desk {

// Writes a new key file at `path` (kExists if anything is there) and returns the recipient public key.
Result<crypto::PublicKey> GenerateKey(const std::string& path, const Credential& cred, const KdfParams& kdf);
// Unwraps the key file at `path`. kNotFound: no file; kWrongKey: wrong credential.
Result<crypto::BoxKeyPair> OpenKey(const std::string& path, const Credential& cred);

}  // namespace dala::desk
