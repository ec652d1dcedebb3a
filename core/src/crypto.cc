#include "crypto.h"

#include <sodium.h>

#include <cstring>

#include "attachment.h"
#include "dala/v1/report.pb.h"

namespace dala::crypto {

Hash Blake2b256(std::span<const uint8_t> data) {
  Hash h;
  crypto_generichash(h.data(), h.size(), data.data(), data.size(), nullptr, 0);
  return h;
}

SigningKey GenerateSigningKey() {
  SigningKey k;
  k.secret_key = SecretBuffer(crypto_sign_SECRETKEYBYTES);
  crypto_sign_keypair(k.public_key.data(), k.secret_key.data());
  return k;
}

Result<SigningKey> SigningKeyFromSecret(std::span<const uint8_t> secret64) {
  if (secret64.size() != crypto_sign_SECRETKEYBYTES) return Status(Code::kCorrupt, "device key has the wrong size");
  SigningKey k;
  k.secret_key = SecretBuffer(secret64.data(), secret64.size());
  crypto_sign_ed25519_sk_to_pk(k.public_key.data(), k.secret_key.data());
  return k;
}

static std::vector<uint8_t> Framed(std::string_view domain, std::span<const uint8_t> message) {
  std::vector<uint8_t> m;
  m.reserve(domain.size() + 1 + message.size());
  m.insert(m.end(), domain.begin(), domain.end());
  m.push_back(0);
  m.insert(m.end(), message.begin(), message.end());
  return m;
}

Signature Sign(const SigningKey& key, std::string_view domain, std::span<const uint8_t> message) {
  Signature sig;
  auto m = Framed(domain, message);
  crypto_sign_detached(sig.data(), nullptr, m.data(), m.size(), key.secret_key.data());
  return sig;
}

bool Verify(std::span<const uint8_t> public_key, std::string_view domain, std::span<const uint8_t> message,
            std::span<const uint8_t> signature) {
  if (public_key.size() != crypto_sign_PUBLICKEYBYTES || signature.size() != crypto_sign_BYTES) return false;
  auto m = Framed(domain, message);
  return crypto_sign_verify_detached(signature.data(), m.data(), m.size(), public_key.data()) == 0;
}

BoxKeyPair GenerateBoxKeyPair() {
  BoxKeyPair k;
  k.secret_key = SecretBuffer(crypto_box_SECRETKEYBYTES);
  crypto_box_keypair(k.public_key.data(), k.secret_key.data());
  return k;
}

bool IsUsableBoxPublicKey(const PublicKey& key) {
  uint8_t probe[32] = {0}, sealed[crypto_box_SEALBYTES + sizeof probe];
  return crypto_box_seal(sealed, probe, sizeof probe, key.data()) == 0;
}

PublicKey BoxPublicFromSecret(const SecretBuffer& secret_key) {
  PublicKey pk;
  crypto_scalarmult_base(pk.data(), secret_key.data());
  return pk;
}

namespace {
constexpr char kAeadLabel[] = "dala/v1/envelope-aead";

std::vector<uint8_t> EnvelopeAd(const EnvelopeHeader& h) {
  std::vector<uint8_t> ad(kAeadLabel, kAeadLabel + sizeof kAeadLabel - 1);
  ad.insert(ad.end(), h.report_id.begin(), h.report_id.end());
  for (int i = 0; i < 4; ++i) ad.push_back(static_cast<uint8_t>(h.version >> (8 * i)));
  ad.insert(ad.end(), h.device_key.begin(), h.device_key.end());
  return ad;
}

Status ParseVerified(std::span<const uint8_t> envelope, v1::EnvelopeBody* body, EnvelopeHeader* header) {
  v1::SealedEnvelope env;
  if (!env.ParseFromArray(envelope.data(), static_cast<int>(envelope.size())))
    return {Code::kVerify, "the sealed envelope is malformed"};
  if (!body->ParseFromString(env.body())) return {Code::kVerify, "the sealed envelope body is malformed"};
  if (body->report_id().size() != 16 || body->device_key().size() != 32 ||
      body->nonce().size() != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES || body->version() == 0)
    return {Code::kVerify, "the sealed envelope has fields of the wrong size"};
  if (!Verify(Bytes(body->device_key()), kDomainEnvelope, Bytes(env.body()), Bytes(env.signature())))
    return {Code::kVerify, "the sealed envelope's device signature does not verify (altered or forged)"};
  std::memcpy(header->report_id.data(), body->report_id().data(), 16);
  header->version = body->version();
  std::memcpy(header->device_key.data(), body->device_key().data(), 32);
  header->attachments.clear();
  for (const auto& m : body->attachments()) {
    DALA_RETURN_IF_ERROR(media::CheckManifest(m));
    for (const auto& seen : header->attachments)
      if (seen.attachment_id() == m.attachment_id())
        return {Code::kVerify, "the sealed envelope lists one attachment twice"};
    header->attachments.push_back(m);
  }
  return Status::Ok();
}
}  // namespace

Result<std::string> SealEnvelope(const SigningKey& device, const EnvelopeHeader& header,
                                 std::span<const uint8_t> plaintext, std::span<const PublicKey> recipients) {
  if (recipients.empty()) return Status(Code::kInternal, "no recipients to seal to");
  SecretBuffer content_key(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  crypto_aead_xchacha20poly1305_ietf_keygen(content_key.data());

  v1::EnvelopeBody body;
  body.set_report_id(header.report_id.data(), header.report_id.size());
  body.set_version(header.version);
  body.set_device_key(header.device_key.data(), header.device_key.size());
  for (const auto& m : header.attachments) *body.add_attachments() = m;
  for (const PublicKey& r : recipients) {
    auto* wk = body.add_keys();
    wk->set_recipient(r.data(), r.size());
    std::string sealed(crypto_box_SEALBYTES + content_key.size(), '\0');
    if (crypto_box_seal(reinterpret_cast<uint8_t*>(sealed.data()), content_key.data(), content_key.size(),
                        r.data()) != 0)
      return Status(Code::kInvalidArgument, "a recipient public key is not a usable X25519 key");
    wk->set_sealed_key(std::move(sealed));
  }
  uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
  randombytes_buf(nonce, sizeof nonce);
  body.set_nonce(nonce, sizeof nonce);
  std::string ct(plaintext.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  auto ad = EnvelopeAd(header);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(reinterpret_cast<uint8_t*>(ct.data()), &clen, plaintext.data(),
                                             plaintext.size(), ad.data(), ad.size(), nullptr, nonce,
                                             content_key.data());
  body.set_ciphertext(std::move(ct));

  v1::SealedEnvelope env;
  env.set_body(body.SerializeAsString());
  Signature sig = Sign(device, kDomainEnvelope, Bytes(env.body()));
  env.set_signature(sig.data(), sig.size());
  return env.SerializeAsString();
}

Status VerifyEnvelope(std::span<const uint8_t> envelope, EnvelopeHeader* header) {
  v1::EnvelopeBody body;
  return ParseVerified(envelope, &body, header);
}

Result<SecretBuffer> OpenEnvelope(std::span<const uint8_t> envelope, const BoxKeyPair& recipient,
                                  EnvelopeHeader* header) {
  v1::EnvelopeBody body;
  DALA_RETURN_IF_ERROR(ParseVerified(envelope, &body, header));
  const v1::WrappedKey* mine = nullptr;
  for (const auto& wk : body.keys()) {
    if (wk.recipient().size() == 32 && std::memcmp(wk.recipient().data(), recipient.public_key.data(), 32) == 0) {
      mine = &wk;
      break;
    }
  }
  if (mine == nullptr) return Status(Code::kNotFound, "the envelope is not sealed to this organisation key");
  SecretBuffer content_key(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  if (mine->sealed_key().size() != crypto_box_SEALBYTES + content_key.size() ||
      crypto_box_seal_open(content_key.data(), reinterpret_cast<const uint8_t*>(mine->sealed_key().data()),
                           mine->sealed_key().size(), recipient.public_key.data(), recipient.secret_key.data()) != 0)
    return Status(Code::kVerify, "the envelope's content key does not open with this organisation key");
  const std::string& ct = body.ciphertext();
  if (ct.size() < crypto_aead_xchacha20poly1305_ietf_ABYTES)
    return Status(Code::kVerify, "the envelope's ciphertext is truncated");
  SecretBuffer plain(ct.size() - crypto_aead_xchacha20poly1305_ietf_ABYTES);
  auto ad = EnvelopeAd(*header);
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain.data(), &mlen, nullptr,
                                                 reinterpret_cast<const uint8_t*>(ct.data()), ct.size(), ad.data(),
                                                 ad.size(), reinterpret_cast<const uint8_t*>(body.nonce().data()),
                                                 content_key.data()) != 0)
    return Status(Code::kVerify, "the envelope's content failed authentication (altered)");
  return plain;
}

std::string ToHex(std::span<const uint8_t> bytes) {
  std::string s(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(s.data(), s.size(), bytes.data(), bytes.size());
  s.pop_back();
  return s;
}

bool FromHex(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != out.size() * 2) return false;
  size_t len = 0;
  const char* end = nullptr;
  return sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &len, &end) == 0 &&
         len == out.size() && end == hex.data() + hex.size();
}

}  // namespace dala::crypto
