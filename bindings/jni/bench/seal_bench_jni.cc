// The C half of SealBench (benchmarks only): the same calls org.dala makes for one seal, timed in native
// code on the Java side's store.
#include <dala/dala.h>
#include <jni.h>

#include <chrono>
#include <string>
#include <vector>

extern "C" JNIEXPORT jdoubleArray JNICALL Java_org_dala_SealBench_sealInC(JNIEnv* env, jclass, jlong h, jint n,
                                                                         jbyteArray narrative) {
  auto* store = reinterpret_cast<dala_store*>(h);
  std::string text(static_cast<size_t>(env->GetArrayLength(narrative)), '\0');
  env->GetByteArrayRegion(narrative, 0, static_cast<jsize>(text.size()), reinterpret_cast<jbyte*>(text.data()));
  std::vector<jdouble> t(static_cast<size_t>(n));
  for (jint i = 0; i < n; ++i) {
    auto start = std::chrono::steady_clock::now();
    dala_report* r = nullptr;
    if (dala_report_create(store, "detention/1", &r, nullptr) != DALA_OK ||
        dala_report_set_text(r, "place", "Oral", nullptr) != DALA_OK ||
        dala_report_set_narrative(r, text.c_str(), nullptr) != DALA_OK || dala_report_seal(store, r, nullptr) != DALA_OK)
      return nullptr;
    dala_report_free(r);
    t[static_cast<size_t>(i)] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }
  jdoubleArray out = env->NewDoubleArray(n);
  if (out != nullptr) env->SetDoubleArrayRegion(out, 0, n, t.data());
  return out;
}

// One dala_sync_run_once of the store (the built-in transport, default options but the timeout): what it
// delivered, or -1.
extern "C" JNIEXPORT jlong JNICALL Java_org_dala_SealBench_syncInC(JNIEnv*, jclass, jlong h, jlong timeout_ms) {
  dala_sync_options o;
  dala_sync_options_init(&o);
  o.timeout_ms = timeout_ms;
  dala_sync_result r{};
  if (dala_sync_run_once(reinterpret_cast<dala_store*>(h), &o, &r, nullptr) != DALA_OK) return -1;
  return r.remaining == 0 ? static_cast<jlong>(r.delivered) : -1;
}
