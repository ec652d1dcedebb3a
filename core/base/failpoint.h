// Crash-test hook: the code calls Failpoint(name) between the steps of multi-step operations. Tests set
// a hook (for example one that _exit()s the process at a chosen step). Not exported from libdala.
#pragma once

namespace dala::testing {
using FailpointHook = void (*)(const char* name);
void SetFailpointHook(FailpointHook hook);
}  // namespace dala::testing

namespace dala {
void Failpoint(const char* name);
}
