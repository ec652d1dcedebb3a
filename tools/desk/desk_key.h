// The organisation's key file, kept at the desk: one 32-byte master secret wrapped (crypto/keyfile.h) under
// the desk's passphrase or a raw key, followed by the newest SignedStatement (public, signed by the root).
// From the master secret (libsodium's crypto_kdf): the root signing key (context "dalaroot", 0) and the
// recipient X25519 keys, one per generation (context "dalarcpt", 0, 1, ...). docs/protocol.md, "The
// organisation".
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "crypto/crypto.h"
#include "crypto/keyfile.h"
#include "dala/v1/sync.pb.h"

namespace dala::desk {

struct Organisation {
  std::string path;                          // the key file
  SecretBuffer master;                       // the master secret (every key below comes from it)
  crypto::SigningKey root;
  std::vector<crypto::BoxKeyPair> recipients;  // every generation up to the newest the statement names
  v1::OrgStatement statement;
  std::string signed_statement;
};

// Writes a new key file at `path` (kExists if anything is there) with a first statement (version 1, one
// recipient, no server, `name`) and returns the organisation's public identity (DALA-ORG1-...).
Result<std::string> GenerateKey(const std::string& path, const Credential& cred, const KdfParams& kdf,
                                const std::string& name);
// Unwraps the key file at `path` and checks its statement. kNotFound: no file; kWrongKey: wrong credential.
Result<Organisation> OpenKey(const std::string& path, const Credential& cred);

// Authorises `server` from now on (a new statement, saved in the key file), unless the statement already
// does. kState if that server key was revoked.
Status AuthoriseServer(Organisation& org, const crypto::PublicKey& server, int64_t now_ms);

// Revokes `server` from `revoked_ms` on (a new statement, saved): receipts it signs dated then or later are
// not the organisation's. kNotFound if the statement never authorised it.
Status RevokeServer(Organisation& org, const crypto::PublicKey& server, int64_t revoked_ms, int64_t now_ms);

// A new recipient key (the next generation) replaces the current ones from now on (a new statement, saved):
// phones seal new reports to it once they hold the statement; older envelopes still open (the desk keeps
// every generation). kState after 64 generations.
Status RotateRecipients(Organisation& org, int64_t now_ms);

// The key this desk signs its export requests with (docs/protocol.md, "Pulling exports"): from the master
// secret (crypto_kdf context "dalapull", subkey 0).
crypto::SigningKey PullKey(const Organisation& org);
// Lists `desk` among the keys that may fetch exports (a new statement, saved), unless the statement lists it
// already. Returns whether it was added.
Result<bool> ListDesk(Organisation& org, const crypto::PublicKey& desk, int64_t now_ms);

// The text of a new invite to `server` (authorised first if need be).
struct InviteParams {
  crypto::PublicKey server{};
  std::vector<std::string> urls;
  uint32_t uses = 1;
  int64_t expires_ms = 0;
  std::string tls_pin;  // empty or 32 bytes
  bool addresses_equivalent = false;
};
Result<std::string> MakeInvite(Organisation& org, const InviteParams& params, int64_t now_ms);

}  // namespace dala::desk
