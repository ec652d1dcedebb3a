// An organisation for tests, in memory: a root key, a recipient key pair and its statement, making
// invites exactly as the desk does (docs/protocol.md, "The organisation"). Header-only; links dala_format.
#pragma once

#include <string>
#include <vector>

#include "base/clock.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"
#include "format/invite.h"
#include "format/organisation.h"

namespace dala::testing {

struct TestOrg {
  crypto::SigningKey root = crypto::GenerateSigningKey();
  crypto::BoxKeyPair recipient = crypto::GenerateBoxKeyPair();
  v1::OrgStatement statement;

  explicit TestOrg(const std::string& name = "KIBHR") {
    statement.set_organisation_key(root.public_key.data(), 32);
    statement.set_version(1);
    statement.set_name(name);
    statement.add_recipients(recipient.public_key.data(), 32);
  }
  std::string Identity() const { return protocol::IdentityText(root.public_key); }
  std::string SignedStatement() const { return protocol::SignStatement(root, statement); }
  // A new statement version authorising `server` from `not_before_ms` (unless it is listed already).
  void Authorise(const crypto::PublicKey& server, int64_t not_before_ms = 0) {
    if (protocol::FindServer(statement, server)) return;
    auto* s = statement.add_servers();
    s->set_server_key(server.data(), 32);
    s->set_not_before_ms(not_before_ms);
    statement.set_version(statement.version() + 1);
  }
  // The invite text the desk would print for `server`, authorising it first.
  std::string Invite(const crypto::PublicKey& server, uint32_t uses = 10, int64_t ttl_ms = 3600000,
                     std::vector<std::string> urls = {"http://127.0.0.1:1"}, const std::string& tls_pin = "") {
    Authorise(server);
    v1::Invite inv;
    for (const auto& u : urls) inv.add_urls(u);
    inv.set_server_key(server.data(), 32);
    inv.set_uses(uses);
    inv.set_issued_ms(SystemNowMs());
    inv.set_expires_ms(SystemNowMs() + ttl_ms);
    inv.set_tls_pin(tls_pin);
    inv.set_statement(SignedStatement());
    return protocol::EncodeInvite(std::move(inv), root);
  }
};

}  // namespace dala::testing
