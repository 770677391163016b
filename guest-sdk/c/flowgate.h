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
// (build/include/stage.h, generated from the WIT) around `fg_process`: `on-batch` walks the batch's
// flat buffers and writes outputs into flat buffers; `on-event` runs the same code on a
// one-row batch, so both give the same output. A row that fails leaves no output behind and
// is reported alone (the host sends it to the dead-letter topic); FG_FATAL fails the call.
//
// Outputs:
//   fg_emit(out, e, value, len)   `e` with a new value (key, time and headers kept)
//   fg_emit_input(out, e)         `e` unchanged
//   fg_emit_event(out, &ev)       a whole event of your own (fg_out_event: key or none, value,
//                                 time, headers); start from fg_out_event_of(e) to change
//                                 only some fields. The input's headers are readable in order
//                                 with fg_header_count / fg_header_at.
// To write a value in place instead of copying it, take room for it at the end of the output
// buffer with `uint8_t *v = fg_value_reserve(out, n)`, write up to n bytes there and emit `v`
// (with fg_emit or as an fg_out_event's value) before any other emit: it is not copied again.
//
// With FG_AGGREGATOR defined (`world = "aggregator"` in flowgate.toml), it implements the
// `flowgate:plugin/aggregator` world instead, around fg_agg_create / fg_agg_add /
// fg_agg_merge / fg_agg_finish (see the end of this header's declarations).
//
// With FG_FILTER defined (`world = "filter"` in flowgate.toml), it implements the
// `flowgate:plugin/filter` world instead (build/include/filter.h), around one function that
// says whether to keep an event:
//
//   int fg_keep(const fg_event *e, int *keep, fg_error *err) {
//     *keep = e->value_len > 0;                  // *keep starts at 0: dropped
//     return 0;                                  // or fg_fail(err, FG_INVALID_INPUT, "why")
//   }
//
// `keep-batch` walks the batch's flat buffers and returns only the indices of the rows kept:
// the host passes those rows on from its own copy, so no kept event is copied out of the plugin
// and back. `keep` calls fg_keep on the one event, so both agree. A failing row is reported
// alone (dead-letter topic); FG_FATAL fails the call.
//
// `flowgate plugin build` compiles the implementation (this header with FG_IMPLEMENTATION
// defined) as C next to your sources; C++ sources include it the same way. To check the config
// at load time, define `int fg_init(const fg_config *c, fg_error *err)` (return 0, or fail).
#ifndef FLOWGATE_H
#define FLOWGATE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(FG_AGGREGATOR)
#include "aggregator.h"
#define FG_WORLD(name) aggregator_##name
#elif defined(FG_FILTER)
#include "filter.h"
#define FG_WORLD(name) filter_##name
#else
#include "stage.h"
#define FG_WORLD(name) stage_##name
#endif

#ifdef __cplusplus
extern "C" {
#endif

// Your fg_ functions are compiled with WebAssembly SIMD (this attribute on their declarations
// below carries over to your definitions), so byte loops in them vectorise; wasmtime runs it
// on SSE/AVX.
#if defined(__wasm__) && defined(__clang__)
#define FG_SIMD __attribute__((target("simd128")))
#else
#define FG_SIMD
#endif

// One input event, read in place.
typedef struct fg_event {
  const uint8_t *key;  // NULL when the event has no key
  size_t key_len;
  const uint8_t *value;
  size_t value_len;
  int64_t timestamp;
  // internal: its batch, and its headers there (entries h0_..h1_ of the header columns)
  const flowgate_plugin_types_batch_t *batch_;
  uint32_t h0_, h1_;
#ifdef FG_FILTER
  // internal: with batch_ NULL (`keep`'s one event), its own headers, entries h0_..h1_
  const flowgate_plugin_types_header_t *headers_;
#endif
} fg_event;

// One header: a name (UTF-8, not NUL-terminated) and raw bytes. Names may repeat.
typedef struct {
  const char *name;
  size_t name_len;
  const uint8_t *value;
  size_t value_len;
} fg_header;

// A whole output event, for fg_emit_event. The bytes are copied (except a value written in
// place with fg_value_reserve), so they may live anywhere.
typedef struct {
  const uint8_t *key;  // NULL: no key; non-NULL with key_len 0: the empty key
  size_t key_len;
  const uint8_t *value;
  size_t value_len;
  int64_t timestamp;                // milliseconds since the Unix epoch
  const struct fg_event *headers_of;  // when not NULL: that input's headers come first
  const fg_header *headers;         // then these header_count, in order
  size_t header_count;
} fg_out_event;

typedef FG_WORLD(list_tuple2_string_string_t) fg_config;

// Error kinds, as in the WIT.
enum { FG_RETRYABLE = 0, FG_INVALID_INPUT = 1, FG_FATAL = 2 };

typedef struct {
  int kind;
  char message[256];
} fg_error;

// A growable byte buffer: ptr[0..len) are its bytes (read and write them in place). Grow it
// with fg_buf_append / fg_buf_extend, empty it with fg_buf_clear.
typedef struct {
  uint8_t *ptr;
  size_t len, cap;
} fg_buf;

// Where outputs go. The fields belong to the helper: use the fg_emit functions.
typedef struct {
  fg_buf values, keys, header_names, header_values;
  // one entry per output row
  uint32_t *value_ends, *key_ends, *header_ends, *origins;
  uint8_t *has_key;
  int64_t *timestamps;
  size_t rows, rows_cap;
  // one entry per output header
  uint32_t *header_name_ends, *header_value_ends;
  size_t headers, headers_cap;
  // the input row being processed, and the first output row it emitted
  uint32_t row;
  size_t row_first;
} fg_out;

// Yours if you want it: called once with the config; the default accepts any config.
FG_SIMD int fg_init(const fg_config *config, fg_error *err);
// The value of config `key`, copied NUL-terminated into `buf`; NULL when not set.
const char *fg_config_get(const fg_config *c, const char *key, char *buf, size_t size);

// Appends n bytes.
void fg_buf_append(fg_buf *b, const void *p, size_t n);
// Makes the buffer n bytes longer and returns those bytes (not initialised) to write.
uint8_t *fg_buf_extend(fg_buf *b, size_t n);
// Empties the buffer (its memory stays, for reuse).
static inline void fg_buf_clear(fg_buf *b) { b->len = 0; }

// The headers of an input event, in order: fg_header_at(e, i) for i < fg_header_count(e).
// The bytes stay valid while fg_process (fg_keep, fg_agg_add) runs.
size_t fg_header_count(const fg_event *e);
fg_header fg_header_at(const fg_event *e, size_t i);

#if defined(FG_FILTER)
// Yours: called for each input event, with *keep 0. Set *keep to 1 to keep the event as it is
// (it goes on unchanged; leave 0 to drop it) and return 0, or fail the event with
// `return fg_fail(err, FG_INVALID_INPUT, "why")` (FG_FATAL fails the whole call). The event's
// bytes stay valid while fg_keep runs.
FG_SIMD int fg_keep(const fg_event *e, int *keep, fg_error *err);
#elif !defined(FG_AGGREGATOR)
// Yours: called for each input event.
FG_SIMD int fg_process(const fg_event *e, fg_out *out, fg_error *err);
// Emits `in` with its value replaced by `value` (key, time and headers kept).
void fg_emit(fg_out *out, const fg_event *in, const uint8_t *value, size_t value_len);
// Emits `in` unchanged.
void fg_emit_input(fg_out *out, const fg_event *in);
// Emits a whole event of your own.
void fg_emit_event(fg_out *out, const fg_out_event *ev);
// `in` as an output event: its key, value, time and (headers_of) headers; change what differs.
fg_out_event fg_out_event_of(const fg_event *in);
// Room for the next output's value: n bytes at the end of the output buffer. Write the value
// there and emit this pointer (any length up to n) before any other emit; it is then not
// copied. Calling it again before the emit keeps what was written (the pointer may move).
uint8_t *fg_value_reserve(fg_out *out, size_t n);
#else
// An aggregator keeps one accumulator per key and window: bytes you define (a count and a
// sum as 16 bytes, say), held in an fg_buf. The host stores them between calls.
//
// A window whose result is due.
typedef struct {
  const uint8_t *key;  // NULL when the window's events have no key
  size_t key_len;
  int64_t start, end;  // milliseconds: start inclusive, end exclusive
  const uint8_t *acc;  // its accumulator
  size_t acc_len;
} fg_pane;

// Yours if you want it: writes the accumulator of an empty window into `acc` (empty when
// called). The default leaves it empty.
FG_SIMD void fg_agg_create(fg_buf *acc);
// Yours: adds event `e` into `acc` (change its bytes in place, grow or clear it). Return 0, or
// fail: the accumulator is then put back as it was before this call, bytes and length, whatever
// you wrote (the helper keeps a copy of it per row; keep accumulators small). FG_FATAL fails
// the whole call.
FG_SIMD int fg_agg_add(fg_buf *acc, const fg_event *e, fg_error *err);
// Yours if the aggregation can merge (session windows need it): writes into `out` (empty when
// called) one accumulator holding what `a` and `b` hold, and returns 0. The default returns 1:
// cannot merge.
FG_SIMD int fg_agg_merge(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                          fg_buf *out);
// Yours: writes the output value of window `p` into `value` (empty when called). Return 0, or
// fail (any error fails the call).
FG_SIMD int fg_agg_finish(const fg_pane *p, fg_buf *value, fg_error *err);
#endif

#ifdef __cplusplus
}
#endif

// Sets an error and returns 1 (so `return fg_fail(...)` reads well).
static inline int fg_fail(fg_error *err, int kind, const char *message) {
  err->kind = kind;
  strncpy(err->message, message, sizeof err->message - 1);
  err->message[sizeof err->message - 1] = 0;
  return 1;
}

#ifdef FG_IMPLEMENTATION

// The helper too is compiled with WebAssembly SIMD.
#if defined(__wasm__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("simd128"))), apply_to = function)
#endif

__attribute__((weak)) int fg_init(const fg_config *config, fg_error *err) {
  (void)config;
  (void)err;
  return 0;
}

// Grows *ptr (entries of `size` bytes) to hold at least `need` entries; the capacity at least
// doubles, so appends cost amortised O(1).
__attribute__((noinline)) static void fg_grow(void **ptr, size_t *cap, size_t need, size_t size) {
  size_t c = *cap ? *cap * 2 : 64;
  while (c < need) c *= 2;
  void *p = realloc(*ptr, c * size);
  if (!p) abort();
  *ptr = p;
  *cap = c;
}

static inline void fg_buf_room(fg_buf *b, size_t n) {
  if (n > b->cap - b->len) fg_grow((void **)&b->ptr, &b->cap, b->len + n, 1);
}

void fg_buf_append(fg_buf *b, const void *p, size_t n) {
  fg_buf_room(b, n);
  if (n) memcpy(b->ptr + b->len, p, n);
  b->len += n;
}

uint8_t *fg_buf_extend(fg_buf *b, size_t n) {
  fg_buf_room(b, n ? n : 1);  // never NULL
  b->len += n;
  return b->ptr + b->len - n;
}

// Exactly `n` of capacity, allocated once up front (nothing for 0).
static void fg_buf_init(fg_buf *b, size_t n) {
  b->len = 0;
  b->cap = n;
  b->ptr = n ? (uint8_t *)malloc(n) : NULL;
  if (n && !b->ptr) abort();
}

// `data[ends[i-1]..ends[i]]` of a column.
static inline const uint8_t *fg_col(const flowgate_plugin_types_bytes_column_t *c, size_t i,
                                    size_t *len) {
  uint32_t start = i ? c->ends.ptr[i - 1] : 0;
  *len = c->ends.ptr[i] - start;
  return c->data.ptr + start;
}

size_t fg_header_count(const fg_event *e) { return e->h1_ - e->h0_; }

fg_header fg_header_at(const fg_event *e, size_t i) {
  fg_header h;
#ifdef FG_FILTER
  if (!e->batch_) {
    const flowgate_plugin_types_header_t *x = &e->headers_[e->h0_ + i];
    h.name = (const char *)x->name.ptr;
    h.name_len = x->name.len;
    h.value = x->value.ptr;
    h.value_len = x->value.len;
    return h;
  }
#endif
  const flowgate_plugin_types_batch_t *b = e->batch_;
  h.name = (const char *)fg_col(&b->header_names, e->h0_ + i, &h.name_len);
  h.value = fg_col(&b->header_values, e->h0_ + i, &h.value_len);
  return h;
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

static void fg_set_error(flowgate_plugin_types_error_t *e, const fg_error *err) {
  e->tag = (uint8_t)err->kind;
  FG_WORLD(string_dup)(&e->val.fatal, err->message);  // the three variants share one layout
}

// Where string `i` of a column starts in its data.
static inline uint32_t fg_col_start(const flowgate_plugin_types_bytes_column_t *c, size_t i) {
  return i ? c->ends.ptr[i - 1] : 0;
}

// The input rows of a batch, one fg_event at a time.
static void fg_event_at(const flowgate_plugin_types_batch_t *in, size_t i, fg_event *e) {
  e->value = fg_col(&in->values, i, &e->value_len);
  if (in->has_key.ptr[i]) {
    e->key = fg_col(&in->keys, i, &e->key_len);
    if (!e->key) e->key = (const uint8_t *)"";  // an empty key is still a key
  } else {
    e->key = NULL;
    e->key_len = 0;
  }
  e->timestamp = in->timestamps.ptr[i];
  e->batch_ = in;
  e->h0_ = i ? in->header_ends.ptr[i - 1] : 0;
  e->h1_ = in->header_ends.ptr[i];
}

static void fg_set_error_list(flowgate_plugin_types_list_row_error_t *fails, size_t *cap,
                              uint32_t row, const fg_error *err) {
  if (fails->len == *cap) {
    void *p = fails->ptr;
    fg_grow(&p, cap, fails->len + 1, sizeof *fails->ptr);
    fails->ptr = (flowgate_plugin_types_row_error_t *)p;
  }
  fails->ptr[fails->len].row = row;
  fg_set_error(&fails->ptr[fails->len].error, err);
  fails->len++;
}

// A finished buffer as a list of the generated type (freed by the post-return function,
// which frees non-empty lists only: an empty one is freed here).
#define FG_MOVE(list, p, n, T)      \
  do {                              \
    if (n) {                        \
      (list).ptr = (T *)(p);        \
    } else {                        \
      free(p);                      \
      (list).ptr = NULL;            \
    }                               \
    (list).len = (n);               \
  } while (0)

#if defined(FG_FILTER)

bool exports_filter_init(filter_list_tuple2_string_string_t *config, filter_error_t *e) {
  fg_error err = {FG_FATAL, {0}};
  int rc = fg_init(config, &err);
  if (rc) fg_set_error(e, &err);
  filter_list_tuple2_string_string_free(config);
  return rc == 0;
}

// fg_keep on one event: 1 to keep, 0 to drop, -1 when it failed (`err` set).
static inline int fg_keep_one(const fg_event *e, fg_error *err) {
  int keep = 0;
  err->kind = FG_INVALID_INPUT;  // set, not zeroed, as in the stage's loop
  err->message[0] = 0;
  if (fg_keep(e, &keep, err)) return -1;
  return keep != 0;
}

// The rows of a batch, read in place: only the kept rows' indices and the failures go back.
bool exports_filter_keep_batch(filter_batch_t *input, filter_selection_t *ret, filter_error_t *e) {
  size_t rows = input->timestamps.len, kept = 0, fails_cap = 0;
  uint32_t *rows_kept = rows ? (uint32_t *)malloc(rows * sizeof(uint32_t)) : NULL;
  if (rows && !rows_kept) abort();
  flowgate_plugin_types_list_row_error_t fails = {NULL, 0};
  for (size_t i = 0; i < rows; i++) {
    fg_event ev;
    fg_event_at(input, i, &ev);
    fg_error err;
    int k = fg_keep_one(&ev, &err);
    if (k > 0) {
      rows_kept[kept++] = (uint32_t)i;
    } else if (k < 0) {
      if (err.kind == FG_FATAL) {
        free(rows_kept);
        flowgate_plugin_types_list_row_error_free(&fails);
        filter_batch_free(input);
        fg_set_error(e, &err);
        return false;
      }
      fg_set_error_list(&fails, &fails_cap, (uint32_t)i, &err);
    }
  }
  filter_batch_free(input);
  FG_MOVE(ret->kept, rows_kept, kept, uint32_t);
  ret->failures = fails;
  return true;
}

// One event: viewed as an fg_event in place (its headers read from its own list).
bool exports_filter_keep(filter_event_t *event, bool *ret, filter_error_t *e) {
  fg_event ev;
  ev.value = event->value.ptr;
  ev.value_len = event->value.len;
  if (event->key.is_some) {
    ev.key = event->key.val.ptr ? event->key.val.ptr : (const uint8_t *)"";  // still a key
    ev.key_len = event->key.val.len;
  } else {
    ev.key = NULL;
    ev.key_len = 0;
  }
  ev.timestamp = event->timestamp;
  ev.batch_ = NULL;
  ev.h0_ = 0;
  ev.h1_ = (uint32_t)event->headers.len;
  ev.headers_ = event->headers.ptr;
  fg_error err;
  int k = fg_keep_one(&ev, &err);
  if (k < 0) fg_set_error(e, &err);
  else *ret = k != 0;
  filter_event_free(event);
  return k >= 0;
}

#elif !defined(FG_AGGREGATOR)

// Room for one more output row in every per-row column: a check inline, the growing not.
__attribute__((noinline)) static void fg_rows_grow(fg_out *o) {
  size_t cap = o->rows_cap, need = o->rows + 1;
  fg_grow((void **)&o->value_ends, &cap, need, 4);
  cap = o->rows_cap;
  fg_grow((void **)&o->key_ends, &cap, need, 4);
  cap = o->rows_cap;
  fg_grow((void **)&o->header_ends, &cap, need, 4);
  cap = o->rows_cap;
  fg_grow((void **)&o->origins, &cap, need, 4);
  cap = o->rows_cap;
  fg_grow((void **)&o->has_key, &cap, need, 1);
  cap = o->rows_cap;
  fg_grow((void **)&o->timestamps, &cap, need, 8);
  o->rows_cap = cap;
}

static inline void fg_row_room(fg_out *o) {
  if (o->rows == o->rows_cap) fg_rows_grow(o);
}

__attribute__((noinline)) static void fg_headers_grow(fg_out *o, size_t n) {
  size_t cap = o->headers_cap;
  fg_grow((void **)&o->header_name_ends, &cap, o->headers + n, 4);
  cap = o->headers_cap;
  fg_grow((void **)&o->header_value_ends, &cap, o->headers + n, 4);
  o->headers_cap = cap;
}

static inline void fg_header_room(fg_out *o, size_t n) {
  if (n > o->headers_cap - o->headers) fg_headers_grow(o, n);
}

// Buffers sized for an output like the input (one row per row, the same bytes), so a map or
// filter never grows them.
static void fg_out_init(fg_out *o, const flowgate_plugin_types_batch_t *in) {
  memset(o, 0, sizeof *o);
  size_t rows = in->timestamps.len, headers = in->header_names.ends.len;
  fg_buf_init(&o->values, in->values.data.len);
  fg_buf_init(&o->keys, in->keys.data.len);
  fg_buf_init(&o->header_names, in->header_names.data.len);
  fg_buf_init(&o->header_values, in->header_values.data.len);
  if (rows) {
    o->rows_cap = rows;
    o->value_ends = (uint32_t *)malloc(rows * 4);
    o->key_ends = (uint32_t *)malloc(rows * 4);
    o->header_ends = (uint32_t *)malloc(rows * 4);
    o->origins = (uint32_t *)malloc(rows * 4);
    o->has_key = (uint8_t *)malloc(rows);
    o->timestamps = (int64_t *)malloc(rows * 8);
    if (!o->value_ends || !o->key_ends || !o->header_ends || !o->origins || !o->has_key ||
        !o->timestamps)
      abort();
  }
  if (headers) {
    o->headers_cap = headers;
    o->header_name_ends = (uint32_t *)malloc(headers * 4);
    o->header_value_ends = (uint32_t *)malloc(headers * 4);
    if (!o->header_name_ends || !o->header_value_ends) abort();
  }
}

static void fg_out_free(fg_out *o) {
  free(o->values.ptr);
  free(o->keys.ptr);
  free(o->header_names.ptr);
  free(o->header_values.ptr);
  free(o->value_ends);
  free(o->key_ends);
  free(o->header_ends);
  free(o->origins);
  free(o->has_key);
  free(o->timestamps);
  free(o->header_name_ends);
  free(o->header_value_ends);
}

// Drops the output rows from `rows` on (what a failed input row emitted).
static void fg_out_truncate(fg_out *o, size_t rows) {
  o->rows = rows;
  o->values.len = rows ? o->value_ends[rows - 1] : 0;
  o->keys.len = rows ? o->key_ends[rows - 1] : 0;
  o->headers = rows ? o->header_ends[rows - 1] : 0;
  o->header_names.len = o->headers ? o->header_name_ends[o->headers - 1] : 0;
  o->header_values.len = o->headers ? o->header_value_ends[o->headers - 1] : 0;
}

static inline void fg_put_value(fg_out *o, const uint8_t *value, size_t n) {
  fg_buf *b = &o->values;
  if (value == b->ptr + b->len) {
    if (n > b->cap - b->len) abort();  // more than fg_value_reserve made room for
  } else {
    fg_buf_room(b, n);
    if (n) memcpy(b->ptr + b->len, value, n);
  }
  b->len += n;
}

static inline void fg_put_key(fg_out *o, const uint8_t *key, size_t n) {
  if (key) {
    fg_buf_room(&o->keys, n);
    if (n) memcpy(o->keys.ptr + o->keys.len, key, n);
    o->keys.len += n;
  }
  o->key_ends[o->rows] = (uint32_t)o->keys.len;
  o->has_key[o->rows] = key != NULL;
}

// Copies entries h0..h1 of one header column into the output's: the bytes in one memcpy, the
// ends shifted by where they land.
static inline void fg_copy_col(fg_buf *data, uint32_t *ends, size_t at,
                               const flowgate_plugin_types_bytes_column_t *c, uint32_t h0,
                               uint32_t h1) {
  uint32_t start = fg_col_start(c, h0), stop = c->ends.ptr[h1 - 1];
  fg_buf_room(data, stop - start);
  if (stop > start) memcpy(data->ptr + data->len, c->data.ptr + start, stop - start);
  uint32_t shift = (uint32_t)data->len - start;
  for (uint32_t h = h0; h < h1; h++) ends[at++] = c->ends.ptr[h] + shift;
  data->len += stop - start;
}

static inline void fg_copy_headers(fg_out *o, const fg_event *in) {
  uint32_t n = in->h1_ - in->h0_;
  if (n) {
    fg_header_room(o, n);
    const flowgate_plugin_types_batch_t *b = in->batch_;
    fg_copy_col(&o->header_names, o->header_name_ends, o->headers, &b->header_names, in->h0_,
                in->h1_);
    fg_copy_col(&o->header_values, o->header_value_ends, o->headers, &b->header_values, in->h0_,
                in->h1_);
    o->headers += n;
  }
  o->header_ends[o->rows] = (uint32_t)o->headers;
}

static inline void fg_end_row(fg_out *o, int64_t timestamp) {
  o->value_ends[o->rows] = (uint32_t)o->values.len;
  o->timestamps[o->rows] = timestamp;
  o->origins[o->rows] = o->row;
  o->rows++;
}

void fg_emit(fg_out *out, const fg_event *in, const uint8_t *value, size_t value_len) {
  fg_row_room(out);
  fg_put_value(out, value, value_len);
  fg_put_key(out, in->key, in->key_len);
  fg_copy_headers(out, in);
  fg_end_row(out, in->timestamp);
}

void fg_emit_input(fg_out *out, const fg_event *in) {
  fg_emit(out, in, in->value, in->value_len);
}

static void fg_put_header(fg_out *o, const char *name, size_t name_len, const uint8_t *value,
                          size_t value_len) {
  fg_header_room(o, 1);
  fg_buf_append(&o->header_names, name, name_len);
  o->header_name_ends[o->headers] = (uint32_t)o->header_names.len;
  fg_buf_append(&o->header_values, value, value_len);
  o->header_value_ends[o->headers] = (uint32_t)o->header_values.len;
  o->headers++;
}

void fg_emit_event(fg_out *out, const fg_out_event *ev) {
  fg_row_room(out);
  fg_put_value(out, ev->value, ev->value_len);
  fg_put_key(out, ev->key, ev->key_len);
  if (ev->headers_of) fg_copy_headers(out, ev->headers_of);
  for (size_t h = 0; h < ev->header_count; h++) {
    const fg_header *x = &ev->headers[h];
    fg_put_header(out, x->name, x->name_len, x->value, x->value_len);
  }
  out->header_ends[out->rows] = (uint32_t)out->headers;
  fg_end_row(out, ev->timestamp);
}

fg_out_event fg_out_event_of(const fg_event *in) {
  fg_out_event ev;
  ev.key = in->key;
  ev.key_len = in->key_len;
  ev.value = in->value;
  ev.value_len = in->value_len;
  ev.timestamp = in->timestamp;
  ev.headers_of = in;
  ev.headers = NULL;
  ev.header_count = 0;
  return ev;
}

uint8_t *fg_value_reserve(fg_out *out, size_t n) {
  fg_buf_room(&out->values, n ? n : 1);  // never NULL
  return out->values.ptr + out->values.len;
}

bool exports_stage_init(stage_list_tuple2_string_string_t *config, stage_error_t *e) {
  fg_error err = {FG_FATAL, {0}};
  int rc = fg_init(config, &err);
  if (rc) fg_set_error(e, &err);
  stage_list_tuple2_string_string_free(config);
  return rc == 0;
}

// Runs fg_process on every row; on a fatal error returns 0 with `fatal` set.
static int fg_run(const stage_batch_t *in, fg_out *out, flowgate_plugin_types_list_row_error_t *fails,
                  fg_error *fatal) {
  size_t rows = in->timestamps.len, fails_cap = 0;
  fails->ptr = NULL;
  fails->len = 0;
  for (size_t i = 0; i < rows; i++) {
    fg_event e;
    fg_event_at(in, i, &e);
    out->row = (uint32_t)i;
    out->row_first = out->rows;
    fg_error err;  // set, not zeroed: that would be 260 bytes of stores per row
    err.kind = FG_INVALID_INPUT;
    err.message[0] = 0;
    if (fg_process(&e, out, &err)) {
      if (err.kind == FG_FATAL) {
        *fatal = err;
        free(fails->ptr);
        return 0;
      }
      fg_out_truncate(out, out->row_first);  // take back what the row emitted
      fg_set_error_list(fails, &fails_cap, (uint32_t)i, &err);
    }
  }
  return 1;
}

static void fg_finish(fg_out *o, stage_batch_t *b, stage_list_u32_t *origins) {
  FG_MOVE(b->values.data, o->values.ptr, o->values.len, uint8_t);
  FG_MOVE(b->values.ends, o->value_ends, o->rows, uint32_t);
  FG_MOVE(b->keys.data, o->keys.ptr, o->keys.len, uint8_t);
  FG_MOVE(b->keys.ends, o->key_ends, o->rows, uint32_t);
  FG_MOVE(b->has_key, o->has_key, o->rows, uint8_t);
  FG_MOVE(b->timestamps, o->timestamps, o->rows, int64_t);
  FG_MOVE(b->header_ends, o->header_ends, o->rows, uint32_t);
  FG_MOVE(b->header_names.data, o->header_names.ptr, o->header_names.len, uint8_t);
  FG_MOVE(b->header_names.ends, o->header_name_ends, o->headers, uint32_t);
  FG_MOVE(b->header_values.data, o->header_values.ptr, o->header_values.len, uint8_t);
  FG_MOVE(b->header_values.ends, o->header_value_ends, o->headers, uint32_t);
  FG_MOVE(*origins, o->origins, o->rows, uint32_t);
}

bool exports_stage_on_batch(stage_batch_t *input, stage_batch_result_t *ret, stage_error_t *e) {
  fg_out out;
  fg_out_init(&out, input);
  fg_error fatal;
  int ok = fg_run(input, &out, &ret->failures, &fatal);
  stage_batch_free(input);
  if (!ok) {
    fg_out_free(&out);
    fg_set_error(e, &fatal);
    return false;
  }
  fg_finish(&out, &ret->output, &ret->origins);
  return true;
}

// A copy for a returned list; NULL when empty (the post-return function frees non-empty
// lists only).
static uint8_t *fg_dup(const uint8_t *p, size_t n) {
  if (!n) return NULL;
  uint8_t *d = (uint8_t *)malloc(n);
  if (!d) abort();
  memcpy(d, p, n);
  return d;
}

// Scratch of `on-event`, kept between calls (they are copied out into the returned events):
// the one-row batch's header columns and the outputs.
static fg_buf fg_ev_names, fg_ev_values, fg_ev_ends;
static fg_out fg_ev_out;

// One event: as a one-row batch, through the same code.
bool exports_stage_on_event(stage_event_t *event, stage_list_event_t *ret, stage_error_t *e) {
  stage_batch_t b;
  memset(&b, 0, sizeof b);
  uint32_t vend = (uint32_t)event->value.len, kend = event->key.is_some ? (uint32_t)event->key.val.len : 0;
  uint8_t has = event->key.is_some;
  uint32_t hn = (uint32_t)event->headers.len;
  fg_buf_clear(&fg_ev_names);
  fg_buf_clear(&fg_ev_values);
  fg_buf_clear(&fg_ev_ends);
  uint32_t *ends = (uint32_t *)fg_buf_extend(&fg_ev_ends, 2 * hn * sizeof(uint32_t));
  for (uint32_t h = 0; h < hn; h++) {
    fg_buf_append(&fg_ev_names, event->headers.ptr[h].name.ptr, event->headers.ptr[h].name.len);
    ends[h] = (uint32_t)fg_ev_names.len;
    fg_buf_append(&fg_ev_values, event->headers.ptr[h].value.ptr, event->headers.ptr[h].value.len);
    ends[hn + h] = (uint32_t)fg_ev_values.len;
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
  b.header_names.data.ptr = fg_ev_names.ptr;
  b.header_names.data.len = fg_ev_names.len;
  b.header_names.ends.ptr = ends;
  b.header_names.ends.len = hn;
  b.header_values.data.ptr = fg_ev_values.ptr;
  b.header_values.data.len = fg_ev_values.len;
  b.header_values.ends.ptr = ends + hn;
  b.header_values.ends.len = hn;

  fg_out *out = &fg_ev_out;
  fg_out_truncate(out, 0);
  flowgate_plugin_types_list_row_error_t fails;
  fg_error fatal;
  int ok = fg_run(&b, out, &fails, &fatal);
  if (!ok || fails.len) {
    if (ok) {
      *e = fails.ptr[0].error;
      free(fails.ptr);
    } else {
      fg_set_error(e, &fatal);
    }
    stage_event_free(event);
    return false;
  }
  size_t n = out->rows;
  ret->len = n;
  ret->ptr = n ? (stage_event_t *)calloc(n, sizeof(stage_event_t)) : NULL;
  if (n && !ret->ptr) abort();
  for (size_t i = 0; i < n; i++) {
    stage_event_t *o = &ret->ptr[i];
    uint32_t v0 = i ? out->value_ends[i - 1] : 0, k0 = i ? out->key_ends[i - 1] : 0;
    uint32_t h0 = i ? out->header_ends[i - 1] : 0, h1 = out->header_ends[i];
    o->value.len = out->value_ends[i] - v0;
    o->value.ptr = fg_dup(out->values.ptr + v0, o->value.len);
    o->key.is_some = out->has_key[i];
    if (o->key.is_some) {
      o->key.val.len = out->key_ends[i] - k0;
      o->key.val.ptr = fg_dup(out->keys.ptr + k0, o->key.val.len);
    }
    o->timestamp = out->timestamps[i];
    o->headers.len = h1 - h0;
    o->headers.ptr = h1 > h0 ? (flowgate_plugin_types_header_t *)calloc(
                                   h1 - h0, sizeof(flowgate_plugin_types_header_t))
                             : NULL;
    if (h1 > h0 && !o->headers.ptr) abort();
    for (uint32_t h = h0; h < h1; h++) {
      flowgate_plugin_types_header_t *oh = &o->headers.ptr[h - h0];
      uint32_t n0 = h ? out->header_name_ends[h - 1] : 0;
      uint32_t x0 = h ? out->header_value_ends[h - 1] : 0;
      stage_string_dup_n(&oh->name, (const char *)out->header_names.ptr + n0,
                         out->header_name_ends[h] - n0);
      oh->value.len = out->header_value_ends[h] - x0;
      oh->value.ptr = fg_dup(out->header_values.ptr + x0, oh->value.len);
    }
  }
  stage_event_free(event);
  return true;
}

#else  // FG_AGGREGATOR

bool exports_aggregator_init(aggregator_list_tuple2_string_string_t *config, aggregator_error_t *e) {
  fg_error err = {FG_FATAL, {0}};
  int rc = fg_init(config, &err);
  if (rc) fg_set_error(e, &err);
  aggregator_list_tuple2_string_string_free(config);
  return rc == 0;
}

__attribute__((weak)) void fg_agg_create(fg_buf *acc) { (void)acc; }

__attribute__((weak)) int fg_agg_merge(const uint8_t *a, size_t a_len, const uint8_t *b,
                                       size_t b_len, fg_buf *out) {
  (void)a, (void)a_len, (void)b, (void)b_len, (void)out;
  return 1;
}

// An fg_buf as a returned list.
static aggregator_list_u8_t fg_buf_list(fg_buf *b) {
  aggregator_list_u8_t l;
  FG_MOVE(l, b->ptr, b->len, uint8_t);
  return l;
}

void exports_aggregator_create(aggregator_list_u8_t *ret) {
  fg_buf acc = {NULL, 0, 0};
  fg_agg_create(&acc);
  *ret = fg_buf_list(&acc);
}

bool exports_aggregator_add(aggregator_list_list_u8_t *accs, aggregator_batch_t *input,
                            aggregator_list_u32_t *slots, aggregator_add_result_t *ret,
                            aggregator_error_t *e) {
  size_t rows = input->timestamps.len, n = accs->len, fails_cap = 0;
  int ok = slots->len == rows;
  for (size_t i = 0; ok && i < rows; i++) ok = slots->ptr[i] < n;
  // Each accumulator as an fg_buf, in place (an empty list's pointer is not an allocation).
  fg_buf *bufs = (fg_buf *)malloc((n ? n : 1) * sizeof(fg_buf));
  if (!bufs) abort();
  for (size_t k = 0; k < n; k++) {
    size_t len = accs->ptr[k].len;
    bufs[k].ptr = len ? accs->ptr[k].ptr : NULL;
    bufs[k].len = bufs[k].cap = len;
  }
  flowgate_plugin_types_list_row_error_t fails = {NULL, 0};
  fg_buf saved = {NULL, 0, 0};
  fg_error fatal = {FG_FATAL, {0}};
  if (!ok) fg_fail(&fatal, FG_FATAL, "host sent slots that do not match the batch");
  for (size_t i = 0; ok && i < rows; i++) {
    fg_event ev;
    fg_event_at(input, i, &ev);
    fg_buf *acc = &bufs[slots->ptr[i]];
    fg_buf_clear(&saved);
    fg_buf_append(&saved, acc->ptr, acc->len);
    fg_error err;  // not zeroed, as in fg_run
    err.kind = FG_INVALID_INPUT;
    err.message[0] = 0;
    if (fg_agg_add(acc, &ev, &err)) {
      if (err.kind == FG_FATAL) {
        fatal = err;
        ok = 0;
        break;
      }
      fg_buf_clear(acc);  // back to what it was
      fg_buf_append(acc, saved.ptr, saved.len);
      fg_set_error_list(&fails, &fails_cap, (uint32_t)i, &err);
    }
  }
  free(saved.ptr);
  aggregator_batch_free(input);
  aggregator_list_u32_free(slots);
  if (!ok) {
    for (size_t k = 0; k < n; k++) free(bufs[k].ptr);
    free(bufs);
    free(accs->ptr);
    flowgate_plugin_types_list_row_error_free(&fails);
    fg_set_error(e, &fatal);
    return false;
  }
  // The same list goes back, each entry now pointing at its buffer.
  for (size_t k = 0; k < n; k++) accs->ptr[k] = fg_buf_list(&bufs[k]);
  free(bufs);
  ret->accumulators = *accs;
  if (!n) {
    free(accs->ptr);
    ret->accumulators.ptr = NULL;
  }
  ret->failures.ptr = fails.ptr;
  ret->failures.len = fails.len;
  return true;
}

bool exports_aggregator_merge(aggregator_list_u8_t *a, aggregator_list_u8_t *b,
                              aggregator_list_u8_t *ret) {
  fg_buf out = {NULL, 0, 0};
  int rc = fg_agg_merge(a->ptr, a->len, b->ptr, b->len, &out);
  aggregator_list_u8_free(a);
  aggregator_list_u8_free(b);
  if (rc) {
    free(out.ptr);
    return false;
  }
  *ret = fg_buf_list(&out);
  return true;
}

bool exports_aggregator_finish(aggregator_list_pane_t *panes, aggregator_list_list_u8_t *ret,
                               aggregator_error_t *e) {
  size_t n = panes->len;
  aggregator_list_u8_t *values = n ? (aggregator_list_u8_t *)malloc(n * sizeof *values) : NULL;
  if (n && !values) abort();
  for (size_t k = 0; k < n; k++) {
    const aggregator_pane_t *q = &panes->ptr[k];
    fg_pane p;
    p.key = q->key.is_some ? (q->key.val.len ? q->key.val.ptr : (const uint8_t *)"") : NULL;
    p.key_len = q->key.is_some ? q->key.val.len : 0;
    p.start = q->window.start;
    p.end = q->window.end;
    p.acc = q->accumulator.ptr;
    p.acc_len = q->accumulator.len;
    fg_buf value = {NULL, 0, 0};
    fg_error err = {FG_FATAL, {0}};
    if (fg_agg_finish(&p, &value, &err)) {
      free(value.ptr);
      for (size_t j = 0; j < k; j++) aggregator_list_u8_free(&values[j]);
      free(values);
      aggregator_list_pane_free(panes);
      fg_set_error(e, &err);
      return false;
    }
    values[k] = fg_buf_list(&value);
  }
  aggregator_list_pane_free(panes);
  ret->ptr = values;
  ret->len = n;
  return true;
}

#endif  // FG_FILTER, FG_AGGREGATOR

#if defined(__wasm__) && defined(__clang__)
#pragma clang attribute pop
#endif
#endif  // FG_IMPLEMENTATION
#endif  // FLOWGATE_H
