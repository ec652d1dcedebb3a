// What the opaque handles of dala.h hold: each a thin owner of the C++ object it stands for.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "capi/boundary.h"
#include "client/background_sync.h"
#include "crypto/attachment_file.h"
#include "format/report.h"
#include "store/store.h"

struct dala_store {
  explicit dala_store(std::unique_ptr<dala::Store> s) : impl(std::move(s)) {}
  std::unique_ptr<dala::Store> impl;
  std::mutex sync_run;  // dala_sync_run_once: one run at a time on this handle; a second waits for the first
};
struct dala_report {
  dala::Report r;
  std::string form;  // "name/version", kept for dala_report_get_form
};
struct dala_report_list {
  std::vector<dala::ReportInfo> items;
  std::string next;  // the next page's cursor; empty: none
};
struct dala_attachment_writer {
  std::unique_ptr<dala::AttachmentCapture> impl;
};
struct dala_attachment_reader {
  std::unique_ptr<dala::attachment::Reader> impl;
};
struct dala_attachment_list {
  std::vector<dala::AttachmentInfo> items;
};
struct dala_server_list {
  std::vector<dala::ServerInfo> items;
};
struct dala_receipt_list {
  std::vector<dala::ReceiptInfo> items;
};
// A run_once's stop token: the flag the engine checks between requests, and the transport of the run in
// progress (cut off by a trigger), registered under mu for the run's duration.
struct dala_sync_cancel {
  std::atomic<bool> flag{false};
  std::mutex mu;
  dala::sync::Transport* running = nullptr;
  bool used = false;  // a token serves one run
};
struct dala_sync_session {
  std::unique_ptr<dala::sync::BackgroundSync> impl;
};
struct dala_http_response {
  int status = 0;
  std::string body;
  bool set = false;
};

namespace dala::capi {
inline dala_report* NewReport(Report r) {
  auto* h = new dala_report{std::move(r), {}};
  h->form = h->r.form();
  return h;
}
StoreOptions ToOptions(const dala_store_options* o);
}  // namespace dala::capi
