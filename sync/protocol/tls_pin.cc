#include "protocol/tls_pin.h"

#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <cstdio>

namespace dala::tls {

std::string SpkiPin(X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
  if (len <= 0) return {};
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(der, static_cast<size_t>(len), reinterpret_cast<unsigned char*>(out.data()));
  OPENSSL_free(der);
  return out;
}

Result<std::string> CertificateFilePin(const std::string& pem_path) {
  FILE* f = std::fopen(pem_path.c_str(), "r");
  if (f == nullptr) return Status(Code::kNotFound, "cannot read the certificate '" + pem_path + "'");
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (cert == nullptr) return Status(Code::kInvalidArgument, "'" + pem_path + "' is not a PEM certificate");
  std::string pin = SpkiPin(cert);
  X509_free(cert);
  if (pin.empty()) return Status(Code::kInvalidArgument, "the certificate has no usable public key");
  return pin;
}

}  // namespace dala::tls
