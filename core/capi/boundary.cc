#include "capi/boundary.h"

#include <sodium.h>

#include <cstdlib>

#include "base/encoding.h"

namespace dala::capi {

void IdToText(const uint8_t* bytes, char out[33]) noexcept {
  if (out == nullptr) return;
  out[0] = '\0';
  if (bytes == nullptr) return;
  sodium_bin2hex(out, 33, bytes, 16);
}

Status IdFromText(const char* text, uint8_t (&bytes)[16], const char* what) {
  if (text == nullptr) return Invalid("the id text is NULL");
  uint8_t parsed[16];
  if (!encoding::FromHex(text, {parsed, sizeof parsed}))
    return Status(Code::kInvalidArgument, std::string(what) + " is 32 hexadecimal characters");
  std::memcpy(bytes, parsed, sizeof parsed);
  return Status::Ok();
}

dala_error* NewError(const Status& st) noexcept {
  const std::string& m = st.message();
  auto* e = static_cast<dala_error*>(std::malloc(sizeof(dala_error) + m.size()));
  if (e == nullptr) return nullptr;
  e->status = static_cast<dala_status>(st.code());
  std::memcpy(e->message, m.c_str(), m.size() + 1);
  return e;
}

Status InitOrFail() {
  if (!InitSodium()) return {Code::kInternal, "libsodium could not start (no randomness?)"};
  return Status::Ok();
}

Result<Credential> ToCredential(const dala_credential* c) {
  if (c == nullptr) return Invalid("a credential (passphrase or key) is required");
  if (c->bytes == nullptr && c->length > 0) return Invalid("credential bytes are NULL");
  Credential out;
  int kind = RawEnum(c->kind);
  if (kind == DALA_CREDENTIAL_PASSPHRASE) out.kind = CredentialKind::kPassphrase;
  else if (kind == DALA_CREDENTIAL_RAW_KEY) out.kind = CredentialKind::kRawKey;
  else if (kind == DALA_CREDENTIAL_PASSPHRASE_AND_KEY) out.kind = CredentialKind::kPassphraseAndKey;
  else return Invalid("unknown credential kind");
  if (c->length > 4096) return Invalid("the credential is too long");
  out.bytes = SecretBuffer(c->bytes, c->length);
  if (out.kind == CredentialKind::kPassphraseAndKey) {
    // The app could not get its platform key (locked keystore, key deleted): said plainly, nothing touched.
    if (c->key == nullptr || c->key_length != 32)
      return Invalid("this credential needs the platform key as well (32 bytes); none was given");
    out.key = SecretBuffer(c->key, c->key_length);
  }
  DALA_RETURN_IF_ERROR(ValidateCredential(out));
  return out;
}

Status CheckString(const char* s, const char* what) {
  if (s == nullptr) return {Code::kInvalidArgument, std::string(what) + " is NULL"};
  return Status::Ok();
}

char* CopyString(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) throw std::bad_alloc();
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

}  // namespace dala::capi
