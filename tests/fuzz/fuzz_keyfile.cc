// The key file (docs/storage-format.md, 148 bytes) is read from a phone's storage that may have been
// damaged or tampered with. First byte: bit 0 recomputes the file's checksum (so the fields behind it
// are reached), bit 1 asks for the desk purpose instead of the store's, bit 2 unwraps with a passphrase
// instead of a platform key (only when the file records the cheapest Argon2id cost: a damaged file may
// ask for up to 1 GiB). Wrong inputs must be told apart (damaged, wrong key, wrong kind), never crash.
#include "crypto/store_key_file.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  constexpr size_t kOffKdf = 10, kOffOps = 28, kOffMem = 36, kOffChecksum = 116;  // format v1, frozen
  fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  std::string_view rest = in.Rest();
  std::vector<uint8_t> file(rest.begin(), rest.end());
  if ((mode & 1) && file.size() == kKeyFileSize)
    crypto_generichash(file.data() + kOffChecksum, kKeyFileSize - kOffChecksum, file.data(), kOffChecksum, nullptr, 0);
  const KeyPurpose purpose = (mode & 2) ? KeyPurpose::kOrganisation : KeyPurpose::kStoreDatabase;
  Credential cred = fuzz::FixedRawKey();
  if (mode & 4) {
    if (file.size() != kKeyFileSize || file[kOffKdf] != static_cast<uint8_t>(CredentialKind::kPassphrase)) return 0;
    uint64_t ops = 0, mem = 0;
    for (int i = 7; i >= 0; --i) ops = (ops << 8) | file[kOffOps + i];
    for (int i = 7; i >= 0; --i) mem = (mem << 8) | file[kOffMem + i];
    if (ops > kKdfOpsMin || mem > kKdfMemMin) return 0;
    cred.kind = CredentialKind::kPassphrase;
    cred.bytes = SecretBuffer(reinterpret_cast<const uint8_t*>("pw"), 2);
  }
  auto secret = UnwrapSecret(purpose, file, cred);
  if (secret.ok() && secret->size() != kWrappedSecretSize) std::abort();
  if (!secret.ok() && secret.status().code() == Code::kOk) std::abort();
  // The store's key file (format 2, 160 bytes): any bytes are either a wrong key (or damaged: the same
  // answer) or the wrong size; with the platform key it never crashes whatever the slots hold.
  auto store = OpenStoreKeyFile(file, fuzz::FixedRawKey(), KdfParams{});
  if (store.ok() && store->secret.size() != 32) std::abort();
  if (!store.ok() && store.status().code() != (file.size() == kStoreKeyFileSize ? Code::kWrongKey : Code::kCorrupt))
    std::abort();
  return 0;
}
