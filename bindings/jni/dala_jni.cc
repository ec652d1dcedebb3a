// JNI glue for org.dala.Native: each function converts arguments, calls one C API function, and turns a
// failure into an org.dala.DalaException. No logic of its own. Strings cross as UTF-8 byte arrays (JNI's
// "modified UTF-8" would mangle characters outside the BMP, such as emoji); secrets are copied out of
// their Java arrays and the copies zeroed after the call (the Java side zeroes the arrays).
#include <dala/dala.h>
#include <jni.h>

#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "org_dala_Native.h"
#include "jni_util.h"

using namespace dala_jni;

namespace {

JavaVM* g_vm = nullptr;
// Looked up once in JNI_OnLoad, where the class loader that loaded org.dala is in effect: a library thread
// attached later would only see the system class loader.
jclass g_native = nullptr, g_io_exception = nullptr, g_sync_progress = nullptr;
jmethodID g_sync_progress_init = nullptr;  // SyncProgress(String, long x5)
jmethodID g_string = nullptr;

// The JNIEnv of this thread; a library thread (a sync session's) is attached for the call and detached after.
struct ThreadEnv {
  JNIEnv* env = nullptr;
  bool attached = false;
  ThreadEnv() {
    if (g_vm->GetEnv(reinterpret_cast<void**>(&env), JNI_VERSION_1_6) == JNI_EDETACHED) {
      attached = g_vm->AttachCurrentThread(reinterpret_cast<void**>(&env), nullptr) == JNI_OK;
      if (!attached) env = nullptr;
    }
  }
  ~ThreadEnv() {
    if (attached) g_vm->DetachCurrentThread();
  }
};

// A Java String from UTF-8 (through Native.string: never JNI's modified UTF-8). Null if it failed.
jstring JString(JNIEnv* env, const char* s) {
  jbyteArray b = Utf8(env, s);
  auto out = static_cast<jstring>(env->CallStaticObjectMethod(g_native, g_string, b));
  if (env->ExceptionCheck()) {
    env->ExceptionClear();
    out = nullptr;
  }
  env->DeleteLocalRef(b);
  return out;
}

// What a sync run calls back into: the progress listener and the app's transport (global references, so
// that a session's own thread can use them). In run_once, the first exception a callback throws is kept
// and thrown again once the run has ended; in a session, it is dropped (the run goes on).
struct Callbacks {
  jobject listener = nullptr, transport = nullptr;
  jmethodID on_progress = nullptr, post = nullptr, upload = nullptr;
  jfieldID status = nullptr, body = nullptr;
  bool keep_thrown = false;
  jthrowable thrown = nullptr;  // global

  bool Init(JNIEnv* env, jobject l, jobject t) {
    if (l != nullptr) {
      listener = env->NewGlobalRef(l);
      jclass c = env->GetObjectClass(l);
      on_progress = env->GetMethodID(c, "onProgress", "(Lorg/dala/SyncProgress;)V");
      if (on_progress == nullptr) return false;
    }
    if (t != nullptr) {
      transport = env->NewGlobalRef(t);
      jclass c = env->GetObjectClass(t);
      post = env->GetMethodID(c, "post", "(Ljava/lang/String;[BJ[B)Lorg/dala/Transport$Response;");
      upload = env->GetMethodID(c, "upload",
                                "(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;JJJ[B)Lorg/dala/Transport$Response;");
      jclass rc = env->FindClass("org/dala/Transport$Response");
      if (post == nullptr || upload == nullptr || rc == nullptr) return false;
      status = env->GetFieldID(rc, "status", "I");
      body = env->GetFieldID(rc, "body", "[B");
      if (status == nullptr || body == nullptr) return false;
    }
    return true;
  }

  void Release(JNIEnv* env) {
    if (listener) env->DeleteGlobalRef(listener);
    if (transport) env->DeleteGlobalRef(transport);
    if (thrown) env->DeleteGlobalRef(thrown);
    listener = transport = nullptr;
    thrown = nullptr;
  }

  // After a Java call: true when it threw (cleared, and kept when asked to). An IOException from the
  // transport is its way of saying "unreachable": never kept.
  bool Threw(JNIEnv* env) {
    if (!env->ExceptionCheck()) return false;
    jthrowable t = env->ExceptionOccurred();
    env->ExceptionClear();
    if (keep_thrown && thrown == nullptr && !env->IsInstanceOf(t, g_io_exception))
      thrown = static_cast<jthrowable>(env->NewGlobalRef(t));
    env->DeleteLocalRef(t);
    return true;
  }

  dala_status Answer(JNIEnv* env, jobject resp, dala_http_response* out) {
    if (Threw(env) || resp == nullptr) return DALA_ERR_IO;  // IOException (or a bug): unreachable
    jint st = env->GetIntField(resp, status);
    auto b = static_cast<jbyteArray>(env->GetObjectField(resp, body));
    auto bytes = Str(env, b);
    dala_http_response_set(out, st, reinterpret_cast<const uint8_t*>(bytes ? bytes->data() : ""),
                           bytes ? bytes->size() : 0);
    env->DeleteLocalRef(b);
    env->DeleteLocalRef(resp);
    return DALA_OK;
  }
};

void OnProgress(void* ctx, const dala_sync_progress* p) {
  auto* cb = static_cast<Callbacks*>(ctx);
  ThreadEnv te;
  JNIEnv* env = te.env;
  if (env == nullptr || cb->listener == nullptr) return;
  jstring dest = JString(env, p->destination);
  if (dest == nullptr) return;
  jobject progress = env->NewObject(g_sync_progress, g_sync_progress_init, dest, static_cast<jlong>(p->delivered),
                                    static_cast<jlong>(p->rejected), static_cast<jlong>(p->remaining),
                                    static_cast<jlong>(p->upload_done), static_cast<jlong>(p->upload_total));
  env->DeleteLocalRef(dest);
  if (progress == nullptr) {  // out of memory: the OutOfMemoryError pending is handled as a listener's exception
    cb->Threw(env);
    return;
  }
  env->CallVoidMethod(cb->listener, cb->on_progress, progress);
  cb->Threw(env);
  env->DeleteLocalRef(progress);
}

dala_status OnPost(void* ctx, const char* url, const uint8_t* body, size_t size, int64_t timeout_ms,
                   const uint8_t* pin, size_t pin_size, dala_http_response* response) {
  auto* cb = static_cast<Callbacks*>(ctx);
  ThreadEnv te;
  JNIEnv* env = te.env;
  if (env == nullptr) return DALA_ERR_IO;
  jstring u = JString(env, url);
  jbyteArray b = Bytes(env, body, size), p = Bytes(env, pin, pin_size);
  jobject resp = env->CallObjectMethod(cb->transport, cb->post, u, b, static_cast<jlong>(timeout_ms), p);
  dala_status st = cb->Answer(env, resp, response);
  env->DeleteLocalRef(u);
  env->DeleteLocalRef(b);
  env->DeleteLocalRef(p);
  return st;
}

dala_status OnUpload(void* ctx, const char* url, const char* header, const char* file, uint64_t offset,
                     uint64_t length, int64_t timeout_ms, const uint8_t* pin, size_t pin_size,
                     dala_http_response* response) {
  auto* cb = static_cast<Callbacks*>(ctx);
  ThreadEnv te;
  JNIEnv* env = te.env;
  if (env == nullptr) return DALA_ERR_IO;
  jstring u = JString(env, url), h = JString(env, header), f = JString(env, file);
  jbyteArray p = Bytes(env, pin, pin_size);
  jobject resp = env->CallObjectMethod(cb->transport, cb->upload, u, h, f, static_cast<jlong>(offset),
                                       static_cast<jlong>(length), static_cast<jlong>(timeout_ms), p);
  dala_status st = cb->Answer(env, resp, response);
  env->DeleteLocalRef(u);
  env->DeleteLocalRef(h);
  env->DeleteLocalRef(f);
  env->DeleteLocalRef(p);
  return st;
}

void Wire(dala_sync_options& o, Callbacks& cb) {
  if (cb.listener != nullptr) {
    o.progress = OnProgress;
    o.progress_context = &cb;
  }
  if (cb.transport != nullptr) {
    o.transport = OnPost;
    o.transport_upload = OnUpload;
    o.transport_context = &cb;
  }
}

struct Session {
  dala_sync_session* s = nullptr;
  Callbacks cb;
};

jlongArray ResultArray(JNIEnv* env, const dala_sync_result& r) {
  jlong vals[4] = {static_cast<jlong>(r.delivered), static_cast<jlong>(r.rejected), static_cast<jlong>(r.remaining),
                   r.unreachable};
  jlongArray out = env->NewLongArray(4);
  if (out != nullptr) env->SetLongArrayRegion(out, 0, 4, vals);
  return out;
}

void FreeSession(jlong h) {
  auto* session = reinterpret_cast<Session*>(h);
  dala_sync_session_free(session->s);  // waits for a run in progress; no callback runs after it
  JNIEnv* env = nullptr;
  if (g_vm->GetEnv(reinterpret_cast<void**>(&env), JNI_VERSION_1_6) == JNI_OK) session->cb.Release(env);
  delete session;
}

}  // namespace

extern "C" {

JNIEXPORT void JNICALL Java_org_dala_Native_free(JNIEnv*, jclass, jint kind, jlong h) {
  switch (kind) {
    case org_dala_Native_STORE: dala_store_close(S(h)); break;
    case org_dala_Native_REPORT: dala_report_free(R(h)); break;
    case org_dala_Native_WRITER: dala_attachment_writer_free(reinterpret_cast<dala_attachment_writer*>(h)); break;
    case org_dala_Native_READER: dala_attachment_reader_free(reinterpret_cast<dala_attachment_reader*>(h)); break;
    case org_dala_Native_SESSION: FreeSession(h); break;
    default: break;
  }
}

JNIEXPORT jintArray JNICALL Java_org_dala_Native_statusCodes(JNIEnv* env, jclass) {
  // Every value the header defines: the names that dala_status_name knows.
  std::vector<jint> codes;
  for (int c = 0; c < 256; ++c)
    if (std::strcmp(dala_status_name(static_cast<dala_status>(c)), "DALA_ERR_UNKNOWN") != 0) codes.push_back(c);
  jintArray a = env->NewIntArray(static_cast<jsize>(codes.size()));
  if (a != nullptr) env->SetIntArrayRegion(a, 0, static_cast<jsize>(codes.size()), codes.data());
  return a;
}

JNIEXPORT jstring JNICALL Java_org_dala_Native_statusName(JNIEnv* env, jclass, jint code) {
  return env->NewStringUTF(dala_status_name(static_cast<dala_status>(code)));
}

// --- stores ---

JNIEXPORT jlong JNICALL Java_org_dala_Native_storeCreate(JNIEnv* env, jclass, jbyteArray dir, jint kind, jbyteArray cred,
                                                         jlong ops, jlong mem, jboolean dad) {
  auto d = Str(env, dir);
  Credential c(env, kind, cred);
  dala_store_options o;
  dala_store_options_init(&o);
  o.kdf_opslimit = static_cast<uint64_t>(ops);
  o.kdf_memlimit = static_cast<uint64_t>(mem);
  o.delete_after_delivery = dad ? 1 : 0;
  dala_store* s = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_store_create(C(d), c.get(), &o, &s, &e), e)) return 0;
  return reinterpret_cast<jlong>(s);
}

JNIEXPORT jlong JNICALL Java_org_dala_Native_storeOpen(JNIEnv* env, jclass, jbyteArray dir, jint kind, jbyteArray cred,
                                                       jlong ops, jlong mem) {
  auto d = Str(env, dir);
  Credential c(env, kind, cred);
  dala_store_options o;
  dala_store_options_init(&o);
  o.kdf_opslimit = static_cast<uint64_t>(ops);
  o.kdf_memlimit = static_cast<uint64_t>(mem);
  dala_store* s = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_store_open(C(d), c.get(), &o, &s, &e), e)) return 0;
  return reinterpret_cast<jlong>(s);
}

JNIEXPORT void JNICALL Java_org_dala_Native_storeWipe(JNIEnv* env, jclass, jbyteArray dir) {
  auto d = Str(env, dir);
  dala_error* e = nullptr;
  Ok(env, dala_store_wipe(C(d), &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_storeChangeCredential(JNIEnv* env, jclass, jbyteArray dir, jint ok,
                                                                  jbyteArray oc, jint nk, jbyteArray nc, jlong ops,
                                                                  jlong mem) {
  auto d = Str(env, dir);
  Credential oldc(env, ok, oc), newc(env, nk, nc);
  dala_store_options o;
  dala_store_options_init(&o);
  o.kdf_opslimit = static_cast<uint64_t>(ops);
  o.kdf_memlimit = static_cast<uint64_t>(mem);
  dala_error* e = nullptr;
  Ok(env, dala_store_change_credential(C(d), oldc.get(), newc.get(), &o, &e), e);
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_storeDeviceKey(JNIEnv* env, jclass, jlong s) {
  uint8_t key[32];
  dala_error* e = nullptr;
  if (!Ok(env, dala_store_get_device_key(S(s), key, &e), e)) return nullptr;
  return Bytes(env, key, sizeof key);
}

JNIEXPORT void JNICALL Java_org_dala_Native_storeNotifyOnline(JNIEnv* env, jclass, jlong s) {
  dala_error* e = nullptr;
  Ok(env, dala_store_notify_online(S(s), &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_storeCheck(JNIEnv* env, jclass, jlong s) {
  dala_error* e = nullptr;
  Ok(env, dala_store_check(S(s), &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_storeSetDeleteAfterDelivery(JNIEnv* env, jclass, jlong s, jboolean on) {
  dala_error* e = nullptr;
  Ok(env, dala_store_set_delete_after_delivery(S(s), on ? 1 : 0, &e), e);
}

JNIEXPORT jlongArray JNICALL Java_org_dala_Native_outboxStats(JNIEnv* env, jclass, jlong s, jbyteArray destination) {
  auto d = Str(env, destination);
  dala_outbox_stats st;
  dala_error* e = nullptr;
  if (!Ok(env, dala_outbox_get_stats(S(s), C(d), &st, &e), e)) return nullptr;
  const jlong v[5] = {static_cast<jlong>(st.pending), static_cast<jlong>(st.in_flight),
                      static_cast<jlong>(st.delivered), static_cast<jlong>(st.rejected),
                      static_cast<jlong>(st.next_attempt_ms)};
  jlongArray out = env->NewLongArray(5);
  if (out != nullptr) env->SetLongArrayRegion(out, 0, 5, v);
  return out;
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_version(JNIEnv* env, jclass) { return Utf8(env, dala_version()); }

JNIEXPORT jint JNICALL Java_org_dala_Native_versionNumber(JNIEnv*, jclass) {
  return static_cast<jint>(dala_version_number());
}

JNIEXPORT void JNICALL Java_org_dala_Native_storeRetryNow(JNIEnv* env, jclass, jlong s) {
  dala_error* e = nullptr;
  Ok(env, dala_store_retry_now(S(s), &e), e);
}

namespace {
dala_store_options KdfOptions(jlong ops, jlong mem) {
  dala_store_options o;
  dala_store_options_init(&o);
  o.kdf_opslimit = static_cast<uint64_t>(ops);
  o.kdf_memlimit = static_cast<uint64_t>(mem);
  return o;
}

// Re-key progress into a Store.RekeyListener, on the calling thread. The first exception it throws is kept
// (the re-key cannot stop midway) and thrown once the re-key has ended.
struct RekeyProgress {
  JNIEnv* env;
  jobject listener;
  jmethodID on_progress = nullptr;
  jthrowable thrown = nullptr;
};

void OnRekeyProgress(void* ctx, int phase, uint64_t done, uint64_t total) {
  auto* p = static_cast<RekeyProgress*>(ctx);
  if (p->on_progress == nullptr || p->thrown != nullptr) return;
  p->env->CallVoidMethod(p->listener, p->on_progress, static_cast<jint>(phase), static_cast<jlong>(done),
                         static_cast<jlong>(total));
  if (p->env->ExceptionCheck()) {
    p->thrown = p->env->ExceptionOccurred();
    p->env->ExceptionClear();
  }
}

int OnDestroyPlatformKey(void* ctx) {
  auto* p = static_cast<std::pair<JNIEnv*, jobject>*>(ctx);
  JNIEnv* env = p->first;
  jclass c = env->GetObjectClass(p->second);
  jmethodID destroy = c != nullptr ? env->GetMethodID(c, "destroy", "()Z") : nullptr;
  jboolean gone = destroy != nullptr ? env->CallBooleanMethod(p->second, destroy) : JNI_FALSE;
  if (env->ExceptionCheck()) {  // a destroyer that threw did not destroy the key; the wipe goes on
    env->ExceptionClear();
    return 1;
  }
  return gone ? 0 : 1;
}
}  // namespace

JNIEXPORT void JNICALL Java_org_dala_Native_storeRekey(JNIEnv* env, jclass, jbyteArray dir, jint ok, jbyteArray oc,
                                                       jint nk, jbyteArray nc, jlong ops, jlong mem, jobject listener) {
  auto d = Str(env, dir);
  Credential oldc(env, ok, oc), newc(env, nk, nc);
  dala_store_options o = KdfOptions(ops, mem);
  RekeyProgress progress{env, listener};
  if (listener != nullptr) {
    jclass c = env->GetObjectClass(listener);
    progress.on_progress = env->GetMethodID(c, "onProgress", "(IJJ)V");
    if (progress.on_progress == nullptr) return;
  }
  dala_error* e = nullptr;
  dala_status st = dala_store_rekey(C(d), oldc.get(), newc.get(), &o, listener ? OnRekeyProgress : nullptr,
                                    &progress, &e);
  if (!Ok(env, st, e)) return;  // the re-key's own failure comes first
  if (progress.thrown != nullptr) env->Throw(progress.thrown);
}

JNIEXPORT void JNICALL Java_org_dala_Native_storeSetDuress(JNIEnv* env, jclass, jbyteArray dir, jint kind,
                                                           jbyteArray cred, jbyteArray duress, jlong ops, jlong mem) {
  auto d = Str(env, dir);
  Credential c(env, kind, cred), w(env, 1, duress);
  dala_store_options o = KdfOptions(ops, mem);
  dala_error* e = nullptr;
  Ok(env, dala_store_set_duress(C(d), c.get(), w.c.bytes, w.c.length, &o, &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_storeClearDuress(JNIEnv* env, jclass, jbyteArray dir, jint kind,
                                                             jbyteArray cred, jlong ops, jlong mem) {
  auto d = Str(env, dir);
  Credential c(env, kind, cred);
  dala_store_options o = KdfOptions(ops, mem);
  dala_error* e = nullptr;
  Ok(env, dala_store_clear_duress(C(d), c.get(), &o, &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_storeWipeWithOptions(JNIEnv* env, jclass, jbyteArray dir,
                                                                 jobject destroyer) {
  auto d = Str(env, dir);
  dala_store_options o;
  dala_store_options_init(&o);
  std::pair<JNIEnv*, jobject> ctx{env, destroyer};
  if (destroyer != nullptr) {
    o.destroy_platform_key = OnDestroyPlatformKey;
    o.destroy_platform_key_context = &ctx;
  }
  dala_error* e = nullptr;
  Ok(env, dala_store_wipe_with_options(C(d), &o, &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_storeSealReports(JNIEnv* env, jclass, jlong s, jobjectArray ids) {
  if (ids == nullptr) return ThrowInvalid(env, "the report ids are null");
  std::vector<dala_report_id> all(static_cast<size_t>(env->GetArrayLength(ids)));
  for (size_t i = 0; i < all.size(); ++i) {
    auto id = static_cast<jbyteArray>(env->GetObjectArrayElement(ids, static_cast<jsize>(i)));
    bool ok = ToId(env, id, &all[i], "a report id must be 16 bytes");
    env->DeleteLocalRef(id);
    if (!ok) return;
  }
  dala_error* e = nullptr;
  Ok(env, dala_store_seal_reports(S(s), all.data(), all.size(), &e), e);
}

JNIEXPORT jobjectArray JNICALL Java_org_dala_Native_servers(JNIEnv* env, jclass, jlong s) {
  dala_server_list* list = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_store_list_servers(S(s), &list, &e), e)) return nullptr;
  size_t n = dala_server_list_count(list);
  jclass cls = nullptr;
  jobjectArray out = NewArray(env, "org/dala/Server", n, &cls);
  jmethodID of = out ? env->GetStaticMethodID(cls, "of", "([B[B[B[BZ[B[B[B)Lorg/dala/Server;") : nullptr;
  for (size_t i = 0; of != nullptr && i < n && !env->ExceptionCheck(); ++i) {
    dala_server_info info;
    if (dala_server_list_get(list, i, &info, nullptr) != DALA_OK) continue;
    jbyteArray dest = Utf8(env, info.destination), org = Utf8(env, info.organisation), url = Utf8(env, info.url),
               key = Bytes(env, info.server_key, 32), err = Utf8(env, info.last_error),
               fp = Utf8(env, info.fingerprint), root = Bytes(env, info.organisation_key, 32);
    jobject o = env->CallStaticObjectMethod(cls, of, dest, org, url, key, static_cast<jboolean>(info.enrolled != 0),
                                            err, fp, root);
    if (env->ExceptionCheck()) break;
    env->SetObjectArrayElement(out, static_cast<jsize>(i), o);
    for (jobject r : {static_cast<jobject>(dest), static_cast<jobject>(org), static_cast<jobject>(url),
                      static_cast<jobject>(key), static_cast<jobject>(err), static_cast<jobject>(fp),
                      static_cast<jobject>(root), o})
      env->DeleteLocalRef(r);
  }
  dala_server_list_free(list);
  return out;
}

// --- delivery ---

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_join(JNIEnv* env, jclass, jlong s, jbyteArray invite,
                                                       jboolean include_existing) {
  auto inv = Str(env, invite);
  char* dest = nullptr;
  dala_error* e = nullptr;
  dala_join_options o;
  dala_join_options_init(&o);
  o.include_existing = include_existing ? 1 : 0;
  if (!Ok(env, dala_store_join(S(s), C(inv), &o, &dest, &e), e)) return nullptr;
  jbyteArray out = Utf8(env, dest);
  dala_string_free(dest);
  return out;
}

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM* vm, void*) {
  g_vm = vm;
  JNIEnv* env = nullptr;
  if (vm->GetEnv(reinterpret_cast<void**>(&env), JNI_VERSION_1_6) != JNI_OK) return JNI_ERR;
  jclass nat = env->FindClass("org/dala/Native");
  jclass io = env->FindClass("java/io/IOException");
  // Found here, with the app's class loader: a thread the library started would find only the system's.
  jclass progress = env->FindClass("org/dala/SyncProgress");
  if (nat == nullptr || io == nullptr || progress == nullptr) return JNI_ERR;
  g_native = static_cast<jclass>(env->NewGlobalRef(nat));
  g_io_exception = static_cast<jclass>(env->NewGlobalRef(io));
  g_sync_progress = static_cast<jclass>(env->NewGlobalRef(progress));
  g_sync_progress_init = env->GetMethodID(g_sync_progress, "<init>", "(Ljava/lang/String;JJJJJ)V");
  if (g_sync_progress_init == nullptr) return JNI_ERR;
  g_string = env->GetStaticMethodID(g_native, "string", "([B)Ljava/lang/String;");
  return g_string != nullptr ? JNI_VERSION_1_6 : JNI_ERR;
}

JNIEXPORT jlong JNICALL Java_org_dala_Native_cancelCreate(JNIEnv* env, jclass) {
  dala_sync_cancel* c = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_sync_cancel_create(&c, &e), e)) return 0;
  return reinterpret_cast<jlong>(c);
}

JNIEXPORT void JNICALL Java_org_dala_Native_cancelTrigger(JNIEnv*, jclass, jlong c) {
  dala_sync_cancel_trigger(reinterpret_cast<dala_sync_cancel*>(c));
}

JNIEXPORT void JNICALL Java_org_dala_Native_cancelFree(JNIEnv*, jclass, jlong c) {
  dala_sync_cancel_free(reinterpret_cast<dala_sync_cancel*>(c));
}

JNIEXPORT jlongArray JNICALL Java_org_dala_Native_syncRunOnce(JNIEnv* env, jclass, jlong s, jlong timeout,
                                                              jobject listener, jobject transport, jbyteArray proxy,
                                                              jlong cancel) {
  std::optional<std::string> proxy_url;
  if (proxy != nullptr) proxy_url = Str(env, proxy);
  Callbacks cb;
  cb.keep_thrown = true;
  if (!cb.Init(env, listener, transport)) {
    cb.Release(env);
    return nullptr;  // a NoSuchMethodError is pending
  }
  dala_sync_options o;
  dala_sync_options_init(&o);
  o.timeout_ms = timeout;
  if (proxy_url) o.proxy_url = proxy_url->c_str();
  o.cancel = reinterpret_cast<dala_sync_cancel*>(cancel);
  Wire(o, cb);
  dala_sync_result r{};
  dala_error* e = nullptr;
  dala_status st = dala_sync_run_once(S(s), &o, &r, &e);
  if (cb.thrown != nullptr) {
    dala_error_free(e);
    env->Throw(cb.thrown);
    cb.Release(env);
    return nullptr;
  }
  cb.Release(env);
  if (!Ok(env, st, e)) return nullptr;
  return ResultArray(env, r);
}

JNIEXPORT jlong JNICALL Java_org_dala_Native_sessionStart(JNIEnv* env, jclass, jlong s, jlong timeout, jobject listener,
                                                          jobject transport, jbyteArray proxy) {
  std::optional<std::string> proxy_url;
  if (proxy != nullptr) proxy_url = Str(env, proxy);
  auto* session = new Session;
  if (!session->cb.Init(env, listener, transport)) {
    session->cb.Release(env);
    delete session;
    return 0;
  }
  dala_sync_options o;
  dala_sync_options_init(&o);
  o.timeout_ms = timeout;
  if (proxy_url) o.proxy_url = proxy_url->c_str();
  Wire(o, session->cb);
  dala_error* e = nullptr;
  if (!Ok(env, dala_sync_session_start(S(s), &o, &session->s, &e), e)) {
    session->cb.Release(env);
    delete session;
    return 0;
  }
  return reinterpret_cast<jlong>(session);
}

JNIEXPORT void JNICALL Java_org_dala_Native_sessionNotifyOnline(JNIEnv*, jclass, jlong h) {
  dala_sync_session_notify_online(reinterpret_cast<Session*>(h)->s);
}

JNIEXPORT void JNICALL Java_org_dala_Native_sessionCancel(JNIEnv*, jclass, jlong h) {
  dala_sync_session_cancel(reinterpret_cast<Session*>(h)->s);
}

JNIEXPORT jlongArray JNICALL Java_org_dala_Native_sessionLastResult(JNIEnv* env, jclass, jlong h) {
  dala_sync_result r{};
  if (dala_sync_session_get_last_result(reinterpret_cast<Session*>(h)->s, &r, nullptr) != DALA_OK) return nullptr;
  return ResultArray(env, r);
}

JNIEXPORT jobjectArray JNICALL Java_org_dala_Native_receipts(JNIEnv* env, jclass, jlong s) {
  dala_receipt_list* list = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_store_list_receipts(S(s), &list, &e), e)) return nullptr;
  size_t n = dala_receipt_list_count(list);
  jclass cls = nullptr;
  jobjectArray out = NewArray(env, "org/dala/Receipt", n, &cls);
  jmethodID of = out ? env->GetStaticMethodID(cls, "of", "([BI[BJJZ)Lorg/dala/Receipt;") : nullptr;
  for (size_t i = 0; of != nullptr && i < n && !env->ExceptionCheck(); ++i) {
    dala_receipt_info info;
    if (dala_receipt_list_get(list, i, &info, nullptr) != DALA_OK) continue;
    jbyteArray id = Bytes(env, info.id.bytes, 16), dest = Utf8(env, info.destination);
    jobject o = env->CallStaticObjectMethod(cls, of, id, static_cast<jint>(info.version), dest,
                                            static_cast<jlong>(info.sequence), static_cast<jlong>(info.server_time_ms),
                                            static_cast<jboolean>(info.verified != 0));
    if (env->ExceptionCheck()) break;
    env->SetObjectArrayElement(out, static_cast<jsize>(i), o);
    env->DeleteLocalRef(o);
    env->DeleteLocalRef(id);
    env->DeleteLocalRef(dest);
  }
  dala_receipt_list_free(list);
  return out;
}

}  // extern "C"
