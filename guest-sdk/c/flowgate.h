// Flowgate plugins in C: write one function over an event, get both entry points.
//
//   #include "flowgate.h"
//
//   int fg_process(const fg_event *e, fg_out *out, fg_error *err) {
//     fg_emit(out, e, e->value, e->value_len);   // zero, one or more outputs
//     return 0;                                  // or fg_fail(err, FG_INVALID_INPUT, "why")
//   }
//
// This header implements the `flowgate:plugin/stage` world's `init`, `on-event` and `on-batch`
// (bindings/stage.h, generated from the WIT) around `fg_process`: `on-batch` walks the batch's
// flat buffers and writes outputs into flat buffers; `on-event` runs the same code on a
// one-row batch, so both give the same output. A row that fails leaves no output behind and
// is reported alone (the host sends it to the dead-letter topic); FG_FATAL fails the call.
//
// `flowgate plugin build` compiles the implementation (this header with FG_IMPLEMENTATION
// defined) as C next to your sources; C++ sources include it the same way. To check the config
// at load time, define `int fg_init(const fg_config *c, fg_error *err)` (return 0, or fail).
#ifndef FLOWGATE_H
#define FLOWGATE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stage.h"

#ifdef __cplusplus
extern "C" {
#endif

// One input event, read in place.
typedef struct {
  const uint8_t *key;  // NULL when the event has no key
  size_t key_len;
  const uint8_t *value;
  size_t value_len;
  int64_t timestamp;
  // internal: where the row is
  const stage_batch_t *batch_;
  size_t row_;
} fg_event;

typedef stage_list_tuple2_string_string_t fg_config;

// Error kinds, as in the WIT.
enum { FG_RETRYABLE = 0, FG_INVALID_INPUT = 1, FG_FATAL = 2 };

typedef struct {
  int kind;
  char message[256];
} fg_error;

// A growable buffer.
typedef struct {
  uint8_t *ptr;
  size_t len, cap;
} fg_buf;

// Where outputs go: FG_NBUF buffers, then the row being processed.
#define FG_NBUF 12
typedef struct {
  fg_buf values, value_ends, keys, key_ends, has_key, timestamps, header_ends, header_names,
      header_name_ends, header_values, header_value_ends, origins;
  uint32_t row;
} fg_out;

// Yours: called for each input event.
int fg_process(const fg_event *e, fg_out *out, fg_error *err);
// Yours if you want it: called once with the config; the default accepts any config.
int fg_init(const fg_config *config, fg_error *err);
// Emits `in` with its value replaced by `value` (key, time and headers kept).
void fg_emit(fg_out *out, const fg_event *in, const uint8_t *value, size_t value_len);
// Emits `in` unchanged.
void fg_emit_input(fg_out *out, const fg_event *in);
// The value of config `key`, copied NUL-terminated into `buf`; NULL when not set.
const char *fg_config_get(const fg_config *c, const char *key, char *buf, size_t size);

// Sets an error and returns 1 (so `return fg_fail(...)` reads well).
#ifdef __cplusplus
}
#endif

static inline int fg_fail(fg_error *err, int kind, const char *message) {
  err->kind = kind;
  strncpy(err->message, message, sizeof err->message - 1);
  err->message[sizeof err->message - 1] = 0;
  return 1;
}

#ifdef FG_IMPLEMENTATION

__attribute__((weak)) int fg_init(const fg_config *config, fg_error *err) {
  (void)config;
  (void)err;
  return 0;
}

static void fg_buf_put(fg_buf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->len + n) cap *= 2;
    b->ptr = realloc(b->ptr, cap);
    if (!b->ptr) abort();
    b->cap = cap;
  }
  if (n) memcpy(b->ptr + b->len, p, n);
  b->len += n;
}

static void fg_buf_u32(fg_buf *b, uint32_t v) { fg_buf_put(b, &v, 4); }

// `data[ends[i-1]..ends[i]]` of a column.
static const uint8_t *fg_col(const flowgate_plugin_types_bytes_column_t *c, size_t i, size_t *len) {
  uint32_t start = i ? c->ends.ptr[i - 1] : 0;
  *len = c->ends.ptr[i] - start;
  return c->data.ptr + start;
}

void fg_emit(fg_out *out, const fg_event *in, const uint8_t *value, size_t value_len) {
  fg_buf_put(&out->values, value, value_len);
  fg_buf_u32(&out->value_ends, (uint32_t)out->values.len);
  if (in->key) fg_buf_put(&out->keys, in->key, in->key_len);
  fg_buf_u32(&out->key_ends, (uint32_t)out->keys.len);
  uint8_t has = in->key != NULL;
  fg_buf_put(&out->has_key, &has, 1);
  fg_buf_put(&out->timestamps, &in->timestamp, 8);
  const stage_batch_t *b = in->batch_;
  uint32_t first = in->row_ ? b->header_ends.ptr[in->row_ - 1] : 0;
  for (uint32_t h = first; h < b->header_ends.ptr[in->row_]; h++) {
    size_t n;
    const uint8_t *p = fg_col(&b->header_names, h, &n);
    fg_buf_put(&out->header_names, p, n);
    fg_buf_u32(&out->header_name_ends, (uint32_t)out->header_names.len);
    p = fg_col(&b->header_values, h, &n);
    fg_buf_put(&out->header_values, p, n);
    fg_buf_u32(&out->header_value_ends, (uint32_t)out->header_values.len);
  }
  fg_buf_u32(&out->header_ends, (uint32_t)(out->header_name_ends.len / 4));
  fg_buf_u32(&out->origins, out->row);
}

void fg_emit_input(fg_out *out, const fg_event *in) {
  fg_emit(out, in, in->value, in->value_len);
}

const char *fg_config_get(const fg_config *c, const char *key, char *buf, size_t size) {
  for (size_t i = c->len; i-- > 0;) {
    if (c->ptr[i].f0.len == strlen(key) && !memcmp(c->ptr[i].f0.ptr, key, c->ptr[i].f0.len)) {
      size_t n = c->ptr[i].f1.len < size - 1 ? c->ptr[i].f1.len : size - 1;
      memcpy(buf, c->ptr[i].f1.ptr, n);
      buf[n] = 0;
      return buf;
    }
  }
  return NULL;
}

static void fg_set_error(stage_error_t *e, const fg_error *err) {
  e->tag = (uint8_t)err->kind;
  stage_string_dup(&e->val.fatal, err->message);  // the three variants share one layout
}

bool exports_stage_init(stage_list_tuple2_string_string_t *config, stage_error_t *e) {
  fg_error err = {FG_FATAL, {0}};
  int rc = fg_init(config, &err);
  if (rc) fg_set_error(e, &err);
  stage_list_tuple2_string_string_free(config);
  return rc == 0;
}

// Moves a buffer into a list of the generated type (freed by the post-return function).
#define FG_MOVE(list, buf, T)                   \
  do {                                          \
    (list).ptr = (T *)(buf).ptr;                \
    (list).len = (buf).len / sizeof(T);         \
    if (!(list).ptr) (list).ptr = malloc(1);    \
  } while (0)

static void fg_column(flowgate_plugin_types_bytes_column_t *c, fg_buf *data, fg_buf *ends) {
  FG_MOVE(c->data, *data, uint8_t);
  FG_MOVE(c->ends, *ends, uint32_t);
}

// Runs fg_process on every row; on a fatal error returns 0 with `err` set.
static int fg_run(const stage_batch_t *in, fg_out *out, flowgate_plugin_types_list_row_error_t *fails,
                  fg_error *fatal) {
  size_t rows = in->timestamps.len, nfail = 0;
  fails->ptr = NULL;
  for (size_t i = 0; i < rows; i++) {
    fg_event e;
    e.value = fg_col(&in->values, i, &e.value_len);
    e.key = in->has_key.ptr[i] ? fg_col(&in->keys, i, &e.key_len) : NULL;
    if (!e.key) e.key_len = 0;
    e.timestamp = in->timestamps.ptr[i];
    e.batch_ = in;
    e.row_ = i;
    out->row = (uint32_t)i;
    fg_out mark = *out;
    fg_error err = {FG_INVALID_INPUT, {0}};
    if (fg_process(&e, out, &err)) {
      if (err.kind == FG_FATAL) {
        *fatal = err;
        return 0;
      }
      // Take back what the row emitted.
      fg_buf *now = &out->values, *then = &mark.values;
      for (size_t k = 0; k < FG_NBUF; k++) now[k].len = then[k].len;
      fails->ptr = realloc(fails->ptr, (nfail + 1) * sizeof *fails->ptr);
      fails->ptr[nfail].row = (uint32_t)i;
      fg_set_error(&fails->ptr[nfail].error, &err);
      nfail++;
    }
  }
  fails->len = nfail;
  if (!fails->ptr) fails->ptr = malloc(1);
  return 1;
}

static void fg_finish(fg_out *out, stage_batch_t *b) {
  fg_column(&b->values, &out->values, &out->value_ends);
  fg_column(&b->keys, &out->keys, &out->key_ends);
  FG_MOVE(b->has_key, out->has_key, uint8_t);
  FG_MOVE(b->timestamps, out->timestamps, int64_t);
  FG_MOVE(b->header_ends, out->header_ends, uint32_t);
  fg_column(&b->header_names, &out->header_names, &out->header_name_ends);
  fg_column(&b->header_values, &out->header_values, &out->header_value_ends);
}

static void fg_free_out(fg_out *out) {
  fg_buf *b = &out->values;
  for (size_t k = 0; k < FG_NBUF; k++) free(b[k].ptr);
}

bool exports_stage_on_batch(stage_batch_t *input, stage_batch_result_t *ret, stage_error_t *e) {
  fg_out out;
  memset(&out, 0, sizeof out);
  fg_error fatal;
  int ok = fg_run(input, &out, &ret->failures, &fatal);
  stage_batch_free(input);
  if (!ok) {
    free(ret->failures.ptr);
    fg_free_out(&out);
    fg_set_error(e, &fatal);
    return false;
  }
  FG_MOVE(ret->origins, out.origins, uint32_t);
  fg_finish(&out, &ret->output);
  return true;
}

// One event: as a one-row batch, through the same code.
bool exports_stage_on_event(stage_event_t *event, stage_list_event_t *ret, stage_error_t *e) {
  stage_batch_t b;
  memset(&b, 0, sizeof b);
  uint32_t vend = (uint32_t)event->value.len, kend = event->key.is_some ? (uint32_t)event->key.val.len : 0;
  uint8_t has = event->key.is_some;
  uint32_t hn = (uint32_t)event->headers.len;
  fg_buf names = {0}, name_ends = {0}, values = {0}, value_ends = {0};
  for (uint32_t h = 0; h < hn; h++) {
    fg_buf_put(&names, event->headers.ptr[h].name.ptr, event->headers.ptr[h].name.len);
    fg_buf_u32(&name_ends, (uint32_t)names.len);
    fg_buf_put(&values, event->headers.ptr[h].value.ptr, event->headers.ptr[h].value.len);
    fg_buf_u32(&value_ends, (uint32_t)values.len);
  }
  b.values.data.ptr = event->value.ptr;
  b.values.data.len = event->value.len;
  b.values.ends.ptr = &vend;
  b.values.ends.len = 1;
  b.keys.data.ptr = event->key.is_some ? event->key.val.ptr : NULL;
  b.keys.data.len = kend;
  b.keys.ends.ptr = &kend;
  b.keys.ends.len = 1;
  b.has_key.ptr = &has;
  b.has_key.len = 1;
  b.timestamps.ptr = &event->timestamp;
  b.timestamps.len = 1;
  b.header_ends.ptr = &hn;
  b.header_ends.len = 1;
  b.header_names.data.ptr = names.ptr;
  b.header_names.data.len = names.len;
  b.header_names.ends.ptr = (uint32_t *)name_ends.ptr;
  b.header_names.ends.len = hn;
  b.header_values.data.ptr = values.ptr;
  b.header_values.data.len = values.len;
  b.header_values.ends.ptr = (uint32_t *)value_ends.ptr;
  b.header_values.ends.len = hn;

  fg_out out;
  memset(&out, 0, sizeof out);
  flowgate_plugin_types_list_row_error_t fails;
  fg_error fatal;
  int ok = fg_run(&b, &out, &fails, &fatal);
  free(names.ptr);
  free(name_ends.ptr);
  free(values.ptr);
  free(value_ends.ptr);
  stage_event_free(event);
  if (!ok || fails.len) {
    if (ok) {
      *e = fails.ptr[0].error;
    } else {
      fg_set_error(e, &fatal);
    }
    free(fails.ptr);
    fg_free_out(&out);
    return false;
  }
  free(fails.ptr);
  size_t n = out.timestamps.len / 8;
  ret->len = n;
  ret->ptr = calloc(n ? n : 1, sizeof(stage_event_t));
  const uint32_t *ve = (const uint32_t *)out.value_ends.ptr, *ke = (const uint32_t *)out.key_ends.ptr;
  const uint32_t *he = (const uint32_t *)out.header_ends.ptr;
  const uint32_t *hne = (const uint32_t *)out.header_name_ends.ptr, *hve = (const uint32_t *)out.header_value_ends.ptr;
  for (size_t i = 0; i < n; i++) {
    stage_event_t *o = &ret->ptr[i];
    uint32_t v0 = i ? ve[i - 1] : 0, k0 = i ? ke[i - 1] : 0, h0 = i ? he[i - 1] : 0;
    o->value.len = ve[i] - v0;
    o->value.ptr = malloc(o->value.len + 1);
    memcpy(o->value.ptr, out.values.ptr + v0, o->value.len);
    o->key.is_some = out.has_key.ptr[i];
    if (o->key.is_some) {
      o->key.val.len = ke[i] - k0;
      o->key.val.ptr = malloc(o->key.val.len + 1);
      memcpy(o->key.val.ptr, out.keys.ptr + k0, o->key.val.len);
    }
    memcpy(&o->timestamp, out.timestamps.ptr + i * 8, 8);
    o->headers.len = he[i] - h0;
    o->headers.ptr = calloc(o->headers.len ? o->headers.len : 1, sizeof(flowgate_plugin_types_header_t));
    for (uint32_t h = h0; h < he[i]; h++) {
      flowgate_plugin_types_header_t *oh = &o->headers.ptr[h - h0];
      uint32_t n0 = h ? hne[h - 1] : 0, x0 = h ? hve[h - 1] : 0;
      stage_string_dup_n(&oh->name, (const char *)out.header_names.ptr + n0, hne[h] - n0);
      oh->value.len = hve[h] - x0;
      oh->value.ptr = malloc(oh->value.len + 1);
      memcpy(oh->value.ptr, out.header_values.ptr + x0, oh->value.len);
    }
  }
  fg_free_out(&out);
  return true;
}

#endif  // FG_IMPLEMENTATION
#endif  // FLOWGATE_H
