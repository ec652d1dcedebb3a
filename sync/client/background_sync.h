// Background sync: one thread per session that runs the sync engine at start, whenever the app says the
// network is back (or the user asks), and when the earliest retry falls due. Cancel stops a run promptly.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "client/sync_engine.h"

namespace dala::sync {

class BackgroundSync {
 public:
  // The store must outlive the session. progress runs on the session's thread.
  BackgroundSync(Store& store, std::unique_ptr<Transport> transport, ProgressFn progress, int64_t run_timeout_ms);
  ~BackgroundSync();  // stops: cancels a run in progress and joins the thread
  BackgroundSync(const BackgroundSync&) = delete;
  BackgroundSync& operator=(const BackgroundSync&) = delete;

  void NotifyOnline();
  void Cancel();
  // The last run's result, or its error. kNotFound before the first run ended.
  Result<RunResult> LastResult();
  uint64_t runs();

 private:
  void Loop();
  int64_t NextWakeMs();

  Store& store_;
  std::unique_ptr<Transport> transport_;
  ProgressFn progress_;
  int64_t run_timeout_ms_;
  std::atomic<bool> cancel_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = true, online_ = false, stopping_ = false;
  uint64_t runs_ = 0;
  std::optional<Result<RunResult>> last_;
  std::thread thread_;
};

}  // namespace dala::sync
