// The certificate pin an invite carries: SHA-256 of the certificate's SubjectPublicKeyInfo (DER). One
// definition for the client (checking) and dala-server (printing it into invites).
#pragma once

#include <string>

#include "base/status.h"

typedef struct x509_st X509;

namespace dala::tls {

std::string SpkiPin(X509* cert);                               // empty on failure
Result<std::string> CertificateFilePin(const std::string& pem_path);

}  // namespace dala::tls
