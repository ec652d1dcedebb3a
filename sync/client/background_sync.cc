#include "client/background_sync.h"
#include "base/clock.h"

#include <algorithm>
#include <chrono>

namespace dala::sync {

BackgroundSync::BackgroundSync(Store& store, std::unique_ptr<Transport> transport, ProgressFn progress,
                               int64_t run_timeout_ms)
    : store_(store), transport_(std::move(transport)), progress_(std::move(progress)), run_timeout_ms_(run_timeout_ms) {
  thread_ = std::thread([this] { Loop(); });
}

BackgroundSync::~BackgroundSync() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  Cancel();
  cv_.notify_all();
  thread_.join();
}

void BackgroundSync::NotifyOnline() {
  {
    std::lock_guard lock(mu_);
    wake_ = online_ = true;
  }
  cv_.notify_all();
}

void BackgroundSync::Cancel() {
  cancel_ = true;
  transport_->Cancel();
}

Result<RunResult> BackgroundSync::LastResult() {
  std::lock_guard lock(mu_);
  if (!last_) return Status(Code::kNotFound, "no sync run has finished yet");
  return *last_;
}

uint64_t BackgroundSync::runs() {
  std::lock_guard lock(mu_);
  return runs_;
}

// When the earliest queued item is due (pending items in backoff), or never.
int64_t BackgroundSync::NextWakeMs() {
  int64_t next = INT64_MAX;
  auto servers = store_.Servers();
  if (!servers.ok()) return SystemNowMs() + 60000;
  for (const auto& s : *servers) {
    if (s.legacy || !s.authorised) continue;  // nothing is sent there (RunOnce skips it)
    auto st = store_.Stats(s.destination);
    if (st.ok() && st->pending > 0) next = std::min(next, std::max<int64_t>(st->next_attempt_ms, SystemNowMs()));
  }
  return next;
}

void BackgroundSync::Loop() {
  for (;;) {
    bool online = false;
    {
      std::unique_lock lock(mu_);
      for (;;) {
        if (stopping_) return;
        if (wake_) break;
        int64_t wake_at = NextWakeMs();
        if (wake_at == INT64_MAX) {
          cv_.wait(lock);
        } else {
          int64_t wait = std::max<int64_t>(wake_at - SystemNowMs(), 250);  // never spin
          if (!cv_.wait_for(lock, std::chrono::milliseconds(wait), [this] { return wake_ || stopping_; })) break;
        }
      }
      online = online_;
      wake_ = online_ = false;
      cancel_ = false;
      transport_->Reset();
    }
    if (online) (void)store_.RetryOfflineNow();
    auto r = RunOnce(store_, *transport_, SystemNowMs() + run_timeout_ms_, progress_, &cancel_);
    std::lock_guard lock(mu_);
    ++runs_;
    last_ = std::move(r);
  }
}

}  // namespace dala::sync
