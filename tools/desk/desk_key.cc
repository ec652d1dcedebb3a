#include "desk/desk_key.h"

#include "base/fsutil.h"

namespace dala::desk {

Result<crypto::PublicKey> GenerateKey(const std::string& path, const Credential& cred, const KdfParams& kdf) {
  if (fs::Exists(path)) return Status(Code::kExists, "'" + path + "' already exists; not overwritten");
  auto keys = crypto::GenerateBoxKeyPair();
  DALA_ASSIGN_OR_RETURN(auto file, WrapSecret(KeyPurpose::kDeskSecret, keys.secret_key, cred, kdf));
  DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(path, file));
  return keys.public_key;
}

Result<crypto::BoxKeyPair> OpenKey(const std::string& path, const Credential& cred) {
  auto file = fs::ReadFile(path, 4096);
  if (!file.ok()) {
    if (file.status().code() == Code::kNotFound)
      return Status(Code::kNotFound, "no organisation key file at '" + path + "'");
    return file.status();
  }
  DALA_ASSIGN_OR_RETURN(SecretBuffer sk, UnwrapSecret(KeyPurpose::kDeskSecret, *file, cred));
  crypto::BoxKeyPair keys;
  keys.public_key = crypto::BoxPublicFromSecret(sk);
  keys.secret_key = std::move(sk);
  return keys;
}

}  // namespace dala::desk
