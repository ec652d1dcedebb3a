// dala desk pull (docs/desk.md): fetches what is new straight from the organisation's servers, page by page
// (POST /v2/export, docs/protocol.md, "Pulling exports"), signed with this desk's pull key, which the
// organisation's statement lists; downloads the attachment files the store does not hold, resuming where an
// interrupted pull stopped; then imports it all exactly as dala desk import does (every check; refused
// whole, the store unchanged, if anything fails). What is fetched is what an export file holds: sealed
// envelopes and encrypted attachments, kept in DIR/pull/ until imported.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "client/transport.h"
#include "crypto/crypto.h"
#include "desk/desk_key.h"
#include "desk/desk_store.h"

namespace dala::desk {

struct PullTarget {
  crypto::PublicKey server{};
  std::vector<std::string> urls;  // tried in order for each request
  std::string tls_pin;            // empty or 32 bytes
};

struct PullOptions {
  // The server to pull from; empty urls: every server this desk pulled from before (the store remembers
  // their addresses). A zero server key: the one server the statement authorises (kInvalidArgument if it
  // authorises several).
  PullTarget target;
  int64_t timeout_ms = 120'000;  // one request
  uint32_t range_bytes = 8u << 20;  // attachment bytes asked for in one request (1 to 8 MiB)
  OpenOptions open;              // time-stamp certificates, phones' receipts (as for import)
};

struct PullResult {
  crypto::PublicKey server{};
  uint64_t log_from = 0, log_size = 0;  // the leaves fetched: [log_from, log_size)
  uint64_t pages = 0, media_files = 0, media_bytes = 0;
  bool listed_desk = false;  // the statement was changed to list this desk (a new version, in the key file)
  Status error;              // not OK: this server could not be pulled from (import unset)
  ImportResult import;
};

// A second pull of the same store waits for the first (DATA/pull/pull.lock). Each server's outcome is its
// result: one that cannot be reached or refuses the desk does not stop the others. Attachment files fetched
// for an import that did not happen are kept, and used by the next pull only if they are the files their
// devices signed.
Result<std::vector<PullResult>> Pull(Organisation& org, DeskStore& store, const PullOptions& options,
                                     sync::Transport& transport);

}  // namespace dala::desk
