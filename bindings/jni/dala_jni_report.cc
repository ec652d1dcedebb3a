// JNI glue for org.dala.Native's reports and attachments (conventions as in dala_jni.cc).
#include <dala/dala.h>
#include <jni.h>

#include <vector>
#include <optional>
#include <string>
#include "jni_util.h"
#include "org_dala_Native.h"

using namespace dala_jni;

extern "C" {

// --- reports ---

JNIEXPORT jlong JNICALL Java_org_dala_Native_reportCreate(JNIEnv* env, jclass, jlong s, jbyteArray form) {
  auto f = Str(env, form);
  dala_report* r = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_report_create(S(s), C(f), &r, &e), e)) return 0;
  return reinterpret_cast<jlong>(r);
}

JNIEXPORT jlong JNICALL Java_org_dala_Native_reportGet(JNIEnv* env, jclass, jlong s, jbyteArray id, jint version) {
  dala_report_id rid;
  if (!ToId(env, id, &rid, "a report id is 16 bytes")) return 0;
  dala_report* r = nullptr;
  dala_error* e = nullptr;
  dala_status st = version > 0 ? dala_report_load_version(S(s), &rid, static_cast<uint32_t>(version), &r, &e)
                               : dala_report_load(S(s), &rid, &r, &e);
  if (!Ok(env, st, e)) return 0;
  return reinterpret_cast<jlong>(r);
}

JNIEXPORT jlong JNICALL Java_org_dala_Native_reportEdit(JNIEnv* env, jclass, jlong s, jbyteArray id) {
  dala_report_id rid;
  if (!ToId(env, id, &rid, "a report id is 16 bytes")) return 0;
  dala_report* r = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_report_edit(S(s), &rid, &r, &e), e)) return 0;
  return reinterpret_cast<jlong>(r);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportDeleteDraft(JNIEnv* env, jclass, jlong s, jbyteArray id) {
  dala_report_id rid;
  if (!ToId(env, id, &rid, "a report id is 16 bytes")) return;
  dala_error* e = nullptr;
  Ok(env, dala_report_delete_draft(S(s), &rid, &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportRetry(JNIEnv* env, jclass, jlong s, jbyteArray id) {
  dala_report_id rid;
  if (!ToId(env, id, &rid, "a report id is 16 bytes")) return;
  dala_error* e = nullptr;
  Ok(env, dala_report_retry(S(s), &rid, &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSave(JNIEnv* env, jclass, jlong s, jlong r) {
  dala_error* e = nullptr;
  Ok(env, dala_report_save(S(s), R(r), &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSeal(JNIEnv* env, jclass, jlong s, jlong r) {
  dala_error* e = nullptr;
  Ok(env, dala_report_seal(S(s), R(r), &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSetText(JNIEnv* env, jclass, jlong r, jbyteArray k, jbyteArray v) {
  auto key = Str(env, k), value = Str(env, v);
  dala_error* e = nullptr;
  Ok(env, dala_report_set_text(R(r), C(key), C(value), &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSetInteger(JNIEnv* env, jclass, jlong r, jbyteArray k, jlong v) {
  auto key = Str(env, k);
  dala_error* e = nullptr;
  Ok(env, dala_report_set_integer(R(r), C(key), v, &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSetBoolean(JNIEnv* env, jclass, jlong r, jbyteArray k, jboolean v) {
  auto key = Str(env, k);
  dala_error* e = nullptr;
  Ok(env, dala_report_set_boolean(R(r), C(key), v ? 1 : 0, &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSetTimestamp(JNIEnv* env, jclass, jlong r, jbyteArray k, jlong v) {
  auto key = Str(env, k);
  dala_error* e = nullptr;
  Ok(env, dala_report_set_timestamp(R(r), C(key), v, &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSetDecimal(JNIEnv* env, jclass, jlong r, jbyteArray k, jbyteArray v) {
  auto key = Str(env, k), value = Str(env, v);
  dala_error* e = nullptr;
  Ok(env, dala_report_set_decimal(R(r), C(key), C(value), &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportRemoveField(JNIEnv* env, jclass, jlong r, jbyteArray k) {
  auto key = Str(env, k);
  dala_error* e = nullptr;
  Ok(env, dala_report_remove_field(R(r), C(key), &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSetNarrative(JNIEnv* env, jclass, jlong r, jbyteArray t) {
  auto text = Str(env, t);
  dala_error* e = nullptr;
  Ok(env, dala_report_set_narrative(R(r), C(text), &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSetPriority(JNIEnv* env, jclass, jlong r, jint p) {
  dala_error* e = nullptr;
  Ok(env, dala_report_set_priority(R(r), p, &e), e);
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_reportId(JNIEnv* env, jclass, jlong r) {
  dala_report_id id;
  dala_report_get_id(R(r), &id);
  return Bytes(env, id.bytes, sizeof id.bytes);
}

JNIEXPORT jint JNICALL Java_org_dala_Native_reportVersion(JNIEnv*, jclass, jlong r) {
  return static_cast<jint>(dala_report_get_version(R(r)));
}

JNIEXPORT jint JNICALL Java_org_dala_Native_reportState(JNIEnv*, jclass, jlong r) {
  return static_cast<jint>(dala_report_get_state(R(r)));
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_reportForm(JNIEnv* env, jclass, jlong r) {
  return Utf8(env, dala_report_get_form(R(r)));
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_reportNarrative(JNIEnv* env, jclass, jlong r) {
  return Utf8(env, dala_report_get_narrative(R(r)));
}

// A typed read: false with nothing thrown when the field is absent (absent_is_null), else as Ok().
static bool Read(JNIEnv* env, dala_status st, dala_error* e, bool absent_is_null) {
  if (absent_is_null && st == DALA_ERR_NOT_FOUND) {
    dala_error_free(e);
    return false;
  }
  return Ok(env, st, e);
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_reportGetText(JNIEnv* env, jclass, jlong r, jbyteArray k) {
  auto key = Str(env, k);
  const char* v = nullptr;
  dala_error* e = nullptr;
  if (!Read(env, dala_report_get_text(R(r), C(key), &v, &e), e, true)) return nullptr;
  return Utf8(env, v);
}

JNIEXPORT jlong JNICALL Java_org_dala_Native_reportGetInteger(JNIEnv* env, jclass, jlong r, jbyteArray k) {
  auto key = Str(env, k);
  int64_t v = 0;
  dala_error* e = nullptr;
  Ok(env, dala_report_get_integer(R(r), C(key), &v, &e), e);
  return v;
}

// A byte[][] of the given strings (null with a Java exception pending on failure).
static jobjectArray ByteArrays(JNIEnv* env, const std::vector<const char*>& items) {
  jclass bytes = env->FindClass("[B");
  if (bytes == nullptr) return nullptr;
  jobjectArray out = env->NewObjectArray(static_cast<jsize>(items.size()), bytes, nullptr);
  for (size_t i = 0; out != nullptr && i < items.size() && !env->ExceptionCheck(); ++i) {
    jbyteArray b = Utf8(env, items[i] != nullptr ? items[i] : "");
    if (b == nullptr) return nullptr;  // out of memory: the exception is pending
    env->SetObjectArrayElement(out, static_cast<jsize>(i), b);
    env->DeleteLocalRef(b);
  }
  return env->ExceptionCheck() ? nullptr : out;
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_reportGetDecimal(JNIEnv* env, jclass, jlong r, jbyteArray k) {
  auto key = Str(env, k);
  const char* v = nullptr;
  dala_error* e = nullptr;
  if (!Read(env, dala_report_get_decimal(R(r), C(key), &v, &e), e, true)) return nullptr;
  return Utf8(env, v);
}

JNIEXPORT jboolean JNICALL Java_org_dala_Native_reportGetBoolean(JNIEnv* env, jclass, jlong r, jbyteArray k) {
  auto key = Str(env, k);
  int v = 0;
  dala_error* e = nullptr;
  Ok(env, dala_report_get_boolean(R(r), C(key), &v, &e), e);
  return v != 0 ? JNI_TRUE : JNI_FALSE;
}

JNIEXPORT jlong JNICALL Java_org_dala_Native_reportGetTimestamp(JNIEnv* env, jclass, jlong r, jbyteArray k) {
  auto key = Str(env, k);
  int64_t v = 0;
  dala_error* e = nullptr;
  Ok(env, dala_report_get_timestamp(R(r), C(key), &v, &e), e);
  return v;
}

JNIEXPORT jdoubleArray JNICALL Java_org_dala_Native_reportGetGeo(JNIEnv* env, jclass, jlong r, jbyteArray k) {
  auto key = Str(env, k);
  dala_geo g{};
  dala_error* e = nullptr;
  if (!Read(env, dala_report_get_geo(R(r), C(key), &g, &e), e, true)) return nullptr;
  const jdouble v[3] = {g.latitude, g.longitude, g.accuracy_m};
  jdoubleArray out = env->NewDoubleArray(3);
  if (out != nullptr) env->SetDoubleArrayRegion(out, 0, 3, v);
  return out;
}

JNIEXPORT jobjectArray JNICALL Java_org_dala_Native_reportGetPeople(JNIEnv* env, jclass, jlong r, jbyteArray k) {
  auto key = Str(env, k);
  size_t count = 0;
  dala_error* e = nullptr;
  if (!Read(env, dala_report_get_people(R(r), C(key), nullptr, 0, &count, &e), e, true)) return nullptr;
  std::vector<dala_person> people(count);
  if (count > 0 && !Ok(env, dala_report_get_people(R(r), C(key), people.data(), count, &count, &e), e)) return nullptr;
  std::vector<const char*> flat;
  for (size_t i = 0; i < count && i < people.size(); ++i) {
    flat.push_back(people[i].name);
    flat.push_back(people[i].role);
  }
  return ByteArrays(env, flat);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSetGeo(JNIEnv* env, jclass, jlong r, jbyteArray k, jdouble lat,
                                                         jdouble lon, jdouble acc) {
  auto key = Str(env, k);
  const dala_geo g{lat, lon, acc};
  dala_error* e = nullptr;
  Ok(env, dala_report_set_geo(R(r), C(key), &g, &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSetLocation(JNIEnv* env, jclass, jlong r, jboolean clear, jdouble lat,
                                                              jdouble lon, jdouble acc) {
  const dala_geo g{lat, lon, acc};
  dala_error* e = nullptr;
  Ok(env, dala_report_set_location(R(r), clear ? nullptr : &g, &e), e);
}

JNIEXPORT void JNICALL Java_org_dala_Native_reportSetPeople(JNIEnv* env, jclass, jlong r, jbyteArray k,
                                                            jobjectArray names, jobjectArray roles) {
  auto key = Str(env, k);
  const jsize n = names != nullptr ? env->GetArrayLength(names) : 0;
  if (roles == nullptr || env->GetArrayLength(roles) != n) return ThrowInvalid(env, "names and roles must pair up");
  std::vector<std::optional<std::string>> strings;
  strings.reserve(2 * static_cast<size_t>(n));
  for (jsize i = 0; i < n; ++i) {
    for (jobjectArray a : {names, roles}) {
      auto b = static_cast<jbyteArray>(env->GetObjectArrayElement(a, i));
      strings.push_back(Str(env, b));
      env->DeleteLocalRef(b);
    }
  }
  std::vector<dala_person> people;
  for (jsize i = 0; i < n; ++i) people.push_back(dala_person{C(strings[2 * i]), C(strings[2 * i + 1])});
  dala_error* e = nullptr;
  Ok(env, dala_report_set_people(R(r), C(key), people.data(), people.size(), &e), e);
}

JNIEXPORT jlong JNICALL Java_org_dala_Native_reportCreatedMs(JNIEnv*, jclass, jlong r) {
  return dala_report_get_created_ms(R(r));
}

JNIEXPORT jboolean JNICALL Java_org_dala_Native_reportIsPurged(JNIEnv*, jclass, jlong r) {
  return dala_report_is_purged(R(r)) != 0 ? JNI_TRUE : JNI_FALSE;
}

JNIEXPORT jobjectArray JNICALL Java_org_dala_Native_reportFieldKeys(JNIEnv* env, jclass, jlong r) {
  std::vector<const char*> keys;
  for (size_t i = 0; i < dala_report_get_field_count(R(r)); ++i) keys.push_back(dala_report_get_field_key(R(r), i));
  return ByteArrays(env, keys);
}

JNIEXPORT jintArray JNICALL Java_org_dala_Native_reportFieldTypes(JNIEnv* env, jclass, jlong r) {
  const size_t n = dala_report_get_field_count(R(r));
  std::vector<jint> types;
  for (size_t i = 0; i < n; ++i) types.push_back(static_cast<jint>(dala_report_get_field_type(R(r), i)));
  jintArray out = env->NewIntArray(static_cast<jsize>(n));
  if (out != nullptr && n > 0) env->SetIntArrayRegion(out, 0, static_cast<jsize>(n), types.data());
  return out;
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_reportSealInfo(JNIEnv* env, jclass, jlong r) {
  uint8_t all[96];
  dala_error* e = nullptr;
  if (!Ok(env, dala_report_get_seal_info(R(r), all, all + 32, all + 64, &e), e)) return nullptr;
  return Bytes(env, all, sizeof all);
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_reportJson(JNIEnv* env, jclass, jlong r) {
  char* json = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_report_to_json(R(r), &json, &e), e)) return nullptr;
  jbyteArray out = Utf8(env, json);
  dala_string_free(json);
  return out;
}

// The list's items as org.dala.ReportInfo[] (null with a Java exception pending on failure).
static jobjectArray ReportInfos(JNIEnv* env, const dala_report_list* list) {
  size_t n = dala_report_list_count(list);
  jclass cls = nullptr;
  jobjectArray out = NewArray(env, "org/dala/ReportInfo", n, &cls);
  jmethodID of = out ? env->GetStaticMethodID(cls, "of", "([BIIJJ[B)Lorg/dala/ReportInfo;") : nullptr;
  for (size_t i = 0; of != nullptr && i < n && !env->ExceptionCheck(); ++i) {
    dala_report_info info;
    if (dala_report_list_get(list, i, &info, nullptr) != DALA_OK) continue;
    jbyteArray id = Bytes(env, info.id.bytes, 16), form = Utf8(env, info.form);
    jobject o = env->CallStaticObjectMethod(cls, of, id, static_cast<jint>(info.version), static_cast<jint>(info.state),
                                            static_cast<jlong>(info.created_ms), static_cast<jlong>(info.updated_ms), form);
    if (env->ExceptionCheck()) break;
    env->SetObjectArrayElement(out, static_cast<jsize>(i), o);
    env->DeleteLocalRef(o);
    env->DeleteLocalRef(id);
    env->DeleteLocalRef(form);
  }
  return env->ExceptionCheck() ? nullptr : out;
}

JNIEXPORT jobjectArray JNICALL Java_org_dala_Native_listReports(JNIEnv* env, jclass, jlong s) {
  dala_report_list* list = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_store_list_reports(S(s), &list, &e), e)) return nullptr;
  jobjectArray out = ReportInfos(env, list);
  dala_report_list_free(list);
  return out;
}

JNIEXPORT jobjectArray JNICALL Java_org_dala_Native_listReportsPage(JNIEnv* env, jclass, jlong s, jint limit,
                                                                     jbyteArray after, jint states, jbyteArray form) {
  auto a = Str(env, after), f = Str(env, form);
  dala_report_list_options o;
  dala_report_list_options_init(&o);
  o.limit = static_cast<uint32_t>(limit);
  o.after = C(a);
  o.states = static_cast<uint32_t>(states);
  o.form = C(f);
  dala_report_list* list = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_store_list_reports_page(S(s), &o, &list, &e), e)) return nullptr;
  jobjectArray items = ReportInfos(env, list);
  jbyteArray next = items != nullptr ? Utf8(env, dala_report_list_next(list)) : nullptr;
  dala_report_list_free(list);
  if (items == nullptr || env->ExceptionCheck()) return nullptr;
  jclass object = env->FindClass("java/lang/Object");
  jobjectArray out = object != nullptr ? env->NewObjectArray(2, object, nullptr) : nullptr;
  if (out == nullptr) return nullptr;
  env->SetObjectArrayElement(out, 0, items);
  env->SetObjectArrayElement(out, 1, next);
  return out;
}

// --- attachments ---

JNIEXPORT jlong JNICALL Java_org_dala_Native_writerOpen(JNIEnv* env, jclass, jlong s, jbyteArray report, jbyteArray mime) {
  dala_report_id rid;
  if (!ToId(env, report, &rid, "a report id is 16 bytes")) return 0;
  auto m = Str(env, mime);
  dala_attachment_writer* w = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_attachment_writer_open(S(s), &rid, C(m), &w, &e), e)) return 0;
  return reinterpret_cast<jlong>(w);
}

JNIEXPORT void JNICALL Java_org_dala_Native_writerWrite(JNIEnv* env, jclass, jlong w, jbyteArray data, jint off, jint len) {
  // In pieces of at most 1 MiB: bounded native memory whatever the caller's buffer.
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<jint>(len, 1 << 20)));
  for (jint done = 0; done < len;) {
    jint n = std::min<jint>(len - done, static_cast<jint>(buf.size()));
    env->GetByteArrayRegion(data, off + done, n, reinterpret_cast<jbyte*>(buf.data()));
    dala_error* e = nullptr;
    if (!Ok(env, dala_attachment_writer_write(reinterpret_cast<dala_attachment_writer*>(w), buf.data(),
                                              static_cast<size_t>(n), &e), e))
      break;
    done += n;
  }
  Zero(buf);
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_writerFinish(JNIEnv* env, jclass, jlong w) {
  dala_attachment_id id;
  dala_error* e = nullptr;
  if (!Ok(env, dala_attachment_writer_finish(reinterpret_cast<dala_attachment_writer*>(w), &id, &e), e)) return nullptr;
  return Bytes(env, id.bytes, 16);
}

JNIEXPORT jbyteArray JNICALL Java_org_dala_Native_attachmentImport(JNIEnv* env, jclass, jlong s, jbyteArray report,
                                                                   jbyteArray path, jbyteArray mime) {
  dala_report_id rid;
  if (!ToId(env, report, &rid, "a report id is 16 bytes")) return nullptr;
  auto p = Str(env, path), m = Str(env, mime);
  dala_attachment_id id;
  dala_error* e = nullptr;
  if (!Ok(env, dala_attachment_import_file(S(s), &rid, C(p), C(m), &id, &e), e)) return nullptr;
  return Bytes(env, id.bytes, 16);
}

JNIEXPORT jlong JNICALL Java_org_dala_Native_readerOpen(JNIEnv* env, jclass, jlong s, jbyteArray aid) {
  dala_attachment_id id;
  if (!ToId(env, aid, &id, "an attachment id is 16 bytes")) return 0;
  dala_attachment_reader* r = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_attachment_reader_open(S(s), &id, &r, &e), e)) return 0;
  return reinterpret_cast<jlong>(r);
}

JNIEXPORT jint JNICALL Java_org_dala_Native_readerRead(JNIEnv* env, jclass, jlong r, jbyteArray b, jint off, jint len) {
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<jint>(len, 1 << 20)));
  size_t n = 0;
  dala_error* e = nullptr;
  if (!Ok(env, dala_attachment_reader_read(reinterpret_cast<dala_attachment_reader*>(r), buf.data(), buf.size(), &n, &e),
          e))
    return -1;
  if (n > 0) env->SetByteArrayRegion(b, off, static_cast<jsize>(n), reinterpret_cast<jbyte*>(buf.data()));
  Zero(buf);
  return n == 0 ? -1 : static_cast<jint>(n);
}

JNIEXPORT void JNICALL Java_org_dala_Native_attachmentRemove(JNIEnv* env, jclass, jlong s, jbyteArray aid) {
  dala_attachment_id id;
  if (!ToId(env, aid, &id, "an attachment id is 16 bytes")) return;
  dala_error* e = nullptr;
  Ok(env, dala_attachment_remove(S(s), &id, &e), e);
}

JNIEXPORT jobjectArray JNICALL Java_org_dala_Native_listAttachments(JNIEnv* env, jclass, jlong s, jbyteArray report) {
  dala_report_id rid;
  if (!ToId(env, report, &rid, "a report id is 16 bytes")) return nullptr;
  dala_attachment_list* list = nullptr;
  dala_error* e = nullptr;
  if (!Ok(env, dala_store_list_attachments(S(s), &rid, &list, &e), e)) return nullptr;
  size_t n = dala_attachment_list_count(list);
  jclass cls = nullptr;
  jobjectArray out = NewArray(env, "org/dala/AttachmentInfo", n, &cls);
  jmethodID of = out ? env->GetStaticMethodID(cls, "of", "([BI[BJJ)Lorg/dala/AttachmentInfo;") : nullptr;
  for (size_t i = 0; of != nullptr && i < n && !env->ExceptionCheck(); ++i) {
    dala_attachment_info info;
    if (dala_attachment_list_get(list, i, &info, nullptr) != DALA_OK) continue;
    jbyteArray id = Bytes(env, info.id.bytes, 16), mime = Utf8(env, info.mime_type);
    jobject o = env->CallStaticObjectMethod(cls, of, id, static_cast<jint>(info.version), mime,
                                            static_cast<jlong>(info.size), static_cast<jlong>(info.ciphertext_size));
    if (env->ExceptionCheck()) break;
    env->SetObjectArrayElement(out, static_cast<jsize>(i), o);
    env->DeleteLocalRef(o);
    env->DeleteLocalRef(id);
    env->DeleteLocalRef(mime);
  }
  dala_attachment_list_free(list);
  return out;
}

}  // extern "C"
