// A dala-server core for the server fuzz targets: created once per process in a scratch directory, with
// the fixed organisation's root and the fixed device enrolled through its invite.
#pragma once

#include <memory>

#include "fuzz_common.h"
#include "format/invite.h"
#include "format/receipt.h"
#include "format/request.h"
#include "format/response.h"
#include "protocol/http_api.h"
#include "server/server_core.h"

namespace dala::fuzz {

inline server::ServerCore& Server() {
  static server::ServerCore* core = [] {
    const std::string dir = ScratchDir() + "/server";
    if (!server::ServerCore::Init(dir, FixedSigningKey(kRootLabel).public_key).ok()) std::abort();
    server::ServerLimits limits;
    limits.max_storage_bytes = 64u << 20;  // storage-full answers are reachable
    auto opened = server::ServerCore::Open(dir, limits);
    if (!opened.ok()) std::abort();
    server::ServerCore* s = opened->release();
    std::atexit([] { delete core; });
    // Enrol the fixed device, as a phone would with an invite.
    auto invite = protocol::DecodeInvite(FixedOrgInvite(s->server_key(), 1000));
    if (!invite.ok()) std::abort();
    v1::Request req;
    const crypto::SigningKey device = FixedSigningKey(kDeviceLabel);
    req.set_device_key(device.public_key.data(), 32);
    req.set_server_key(s->server_key().data(), 32);
    req.mutable_enrol()->set_invite(invite->checked.signed_invite);
    req.mutable_enrol()->set_proof(protocol::EnrolProof(invite->enrol_secret, device.public_key, s->server_key()));
    auto r = s->Handle("POST", protocol::kPathEnrol, protocol::kContentType, protocol::SignRequest(device, req));
    if (r.status != 200) std::abort();
    return s;
  }();
  return *core;
}

// Every answer is an HTTP status the front end can send, and every protobuf answer is signed by the server
// and parses.
inline void CheckAnswer(const server::HttpResult& r) {
  if (r.status < 200 || r.status > 599) std::abort();
  if (r.content_type == protocol::kContentType) {
    v1::SignedResponse sr;
    v1::Response resp;
    if (!sr.ParseFromString(r.body) || !resp.ParseFromString(sr.response()) || resp.request_hash().size() != 32)
      std::abort();
    if (!crypto::Verify(Server().server_key(), protocol::kDomainResponse, crypto::Bytes(sr.response()),
                        crypto::Bytes(sr.signature())))
      std::abort();
  }
}

}  // namespace dala::fuzz
