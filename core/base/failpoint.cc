#include "failpoint.h"

#include <atomic>

namespace dala::testing {
static std::atomic<FailpointHook> g_hook{nullptr};
void SetFailpointHook(FailpointHook hook) { g_hook.store(hook); }
}  // namespace dala::testing

namespace dala {
void Failpoint(const char* name) {
  auto hook = testing::g_hook.load(std::memory_order_relaxed);
  if (hook != nullptr) hook(name);
}
}  // namespace dala
