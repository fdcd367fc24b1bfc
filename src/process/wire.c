/* Frames between a parent and a worker: encoding, checked decoding, a
 * stream reader and a write batch. See wire.h for the format. */
#include "wire.h"

#include <string.h>

#include "core/internal.h"

static const uint8_t magic[4] = {'p', 'b', 'l', 'w'};

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void put_i32(uint8_t *p, int32_t v) {
  uint32_t u = (uint32_t)v;
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(u >> (8 * i));
}

static int32_t get_i32(const uint8_t *p) {
  uint32_t u = 0;
  for (int i = 0; i < 4; i++)
    u |= (uint32_t)p[i] << (8 * i);
  return (int32_t)u;
}

void pbl__wire_head_encode(uint8_t out[PBL__WIRE_HEAD],
                           const pbl__wire_head *h) {
  memcpy(out, magic, 4);
  out[4] = PBL__WIRE_VERSION;
  out[5] = h->type;
  out[6] = h->flags;
  out[7] = 0;
  put_u64(out + 8, h->tag);
  put_u64(out + 16, h->len);
}

/* The smallest and largest payload a type may have. */
static bool len_fits(uint8_t type, uint64_t len) {
  switch (type) {
  case PBL__WIRE_CALL:
    return len >= PBL__WIRE_CALL_PRE(1);
  case PBL__WIRE_FAIL:
    return len >= 8 && len <= 8 + PBL__WIRE_MSG_MAX;
  case PBL__WIRE_CANCEL:
  case PBL__WIRE_SKIPPED:
  case PBL__WIRE_PING:
  case PBL__WIRE_BYE:
    return len == 0;
  case PBL__WIRE_HELLO:
    return len >= 5 && len <= 4 + PBL__WIRE_HOST_MAX;
  default:
    return true;
  }
}

int pbl__wire_head_decode(const uint8_t in[PBL__WIRE_HEAD], uint64_t max_len,
                          pbl__wire_head *h) {
  if (memcmp(in, magic, 4) != 0 || in[4] != PBL__WIRE_VERSION || in[7] != 0)
    return PBL_EPROTO;
  h->type = in[5];
  h->flags = in[6];
  h->tag = get_u64(in + 8);
  h->len = get_u64(in + 16);
  if (h->type < PBL__WIRE_CALL || h->type > PBL__WIRE_BYE)
    return PBL_EPROTO;
  uint8_t allowed = h->type == PBL__WIRE_CALL ? PBL__WIRE_CALL_FLAGS : 0;
  if ((h->flags & ~allowed) != 0 || h->len > max_len ||
      !len_fits(h->type, h->len))
    return PBL_EPROTO;
  return 0;
}

int pbl__wire_call_parse(const void *p, size_t len, pbl__wire_call *c) {
  const uint8_t *b = p;
  if (len < 2)
    return PBL_EPROTO;
  size_t n = (size_t)b[0] | (size_t)b[1] << 8;
  size_t pre = PBL__WIRE_CALL_PRE(n);
  if (n == 0 || n > PBL__WIRE_NAME_MAX || pre > len)
    return PBL_EPROTO;
  if (memchr(b + 2, '\0', n) != NULL) /* a NUL would cut the name */
    return PBL_EPROTO;
  for (size_t i = 2 + n; i < pre; i++)
    if (b[i] != 0)
      return PBL_EPROTO;
  c->name = (const char *)b + 2;
  c->name_len = n;
  c->in = b + pre;
  c->in_len = len - pre;
  return 0;
}

static bool fail_err_known(int err) {
  return err == PBL_EFAILED || err == PBL_ENOFUNC || err == UV_ENOMEM;
}

int pbl__wire_fail_parse(const void *p, size_t len, pbl__wire_fail *f) {
  const uint8_t *b = p;
  if (len < 8 || len - 8 > PBL__WIRE_MSG_MAX)
    return PBL_EPROTO;
  f->err = get_i32(b);
  f->code = get_i32(b + 4);
  if (!fail_err_known(f->err))
    return PBL_EPROTO;
  f->msg = (const char *)b + 8;
  f->msg_len = len - 8;
  return 0;
}

/* ---- reader ---- */

int pbl__wire_reader_init(pbl__wire_reader *r, uint64_t max_len,
                          pbl__wire_frame_cb on_frame, void *ctx) {
  memset(r, 0, sizeof(*r));
  r->stage = pbl__malloc(PBL__WIRE_STAGE);
  if (r->stage == NULL)
    return UV_ENOMEM;
  r->max_len = max_len;
  r->on_frame = on_frame;
  r->ctx = ctx;
  return 0;
}

void pbl__wire_reader_free(pbl__wire_reader *r) {
  pbl__free(r->stage);
  pbl__free(r->payload);
  r->stage = NULL;
  r->payload = NULL;
}

bool pbl__wire_reader_idle(const pbl__wire_reader *r) {
  return r->payload == NULL && r->start == r->end;
}

void pbl__wire_reader_buf(pbl__wire_reader *r, char **base, size_t *len) {
  if (r->payload != NULL && r->start == r->end) {
    uint64_t left = r->head.len - r->have;
    r->direct = true;
    *base = (char *)r->payload + r->have;
    *len = left > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)left;
    return;
  }
  /* Less than a head is left unparsed after every feed: move it to the
   * front so the rest of the stage is free. */
  if (r->start > 0) {
    memmove(r->stage, r->stage + r->start, r->end - r->start);
    r->end -= r->start;
    r->start = 0;
  }
  r->direct = false;
  *base = (char *)r->stage + r->end;
  *len = PBL__WIRE_STAGE - r->end;
}

/* Hands the finished payload over. */
static int deliver(pbl__wire_reader *r) {
  uint8_t *p = r->payload;
  pbl__wire_head h = r->head;
  r->payload = NULL;
  r->have = 0;
  int err = r->on_frame(r->ctx, &h, p);
  if (err != 0)
    r->err = err;
  return err;
}

/* Parses what the stage holds. */
static int parse(pbl__wire_reader *r) {
  for (;;) {
    size_t avail = r->end - r->start;
    if (r->payload != NULL) {
      uint64_t left = r->head.len - r->have;
      size_t n = avail < left ? avail : (size_t)left;
      memcpy(r->payload + r->have, r->stage + r->start, n);
      r->have += n;
      r->start += n;
      if (r->have < r->head.len)
        return 0; /* the stage is used up */
      if (deliver(r) != 0)
        return r->err;
      continue;
    }
    if (avail < PBL__WIRE_HEAD)
      return 0;
    int err = pbl__wire_head_decode(r->stage + r->start, r->max_len, &r->head);
    if (err != 0)
      return r->err = err;
    r->start += PBL__WIRE_HEAD;
    if ((uint64_t)(size_t)r->head.len != r->head.len)
      return r->err = UV_ENOMEM; /* 32-bit hosts */
    r->payload = pbl__malloc((size_t)r->head.len);
    if (r->payload == NULL)
      return r->err = UV_ENOMEM;
    r->have = 0;
  }
}

int pbl__wire_reader_feed(pbl__wire_reader *r, size_t n) {
  if (r->err != 0)
    return r->err;
  r->fed += n;
  if (r->direct) {
    r->have += n;
    if (r->have == r->head.len && deliver(r) != 0)
      return r->err;
    return 0;
  }
  r->end += n;
  return parse(r);
}

/* ---- batch ---- */

void pbl__wire_batch_init(pbl__wire_batch *b) {
  memset(b, 0, sizeof(*b));
}

void pbl__wire_batch_free(pbl__wire_batch *b) {
  pbl__free(b->heads);
  pbl__free(b->parts);
  pbl__free(b->bufs);
  pbl__wire_batch_init(b);
}

void pbl__wire_batch_reset(pbl__wire_batch *b) {
  b->heads_len = 0;
  b->nparts = 0;
  b->size = 0;
}

/* Appends bytes to the heads buffer, as part of the last inline part. */
static int put_inline(pbl__wire_batch *b, const void *p, size_t n) {
  if (n == 0)
    return 0;
  int err = pbl__grow((void **)&b->heads, &b->heads_cap, b->heads_len + n, 1);
  if (err != 0)
    return err;
  pbl__wire_part *last = b->nparts > 0 ? &b->parts[b->nparts - 1] : NULL;
  if (last == NULL || last->data != NULL) {
    err = pbl__grow((void **)&b->parts, &b->parts_cap, b->nparts + 1,
                    sizeof(*b->parts));
    if (err != 0)
      return err;
    last = &b->parts[b->nparts++];
    *last = (pbl__wire_part){NULL, b->heads_len, 0};
  }
  memcpy(b->heads + b->heads_len, p, n);
  b->heads_len += n;
  last->len += n;
  b->size += n;
  return 0;
}

static int put_ref(pbl__wire_batch *b, const void *p, size_t n) {
  if (n <= PBL__WIRE_INLINE)
    return put_inline(b, p, n);
  int err = pbl__grow((void **)&b->parts, &b->parts_cap, b->nparts + 1,
                      sizeof(*b->parts));
  if (err != 0)
    return err;
  b->parts[b->nparts++] = (pbl__wire_part){p, 0, n};
  b->size += n;
  return 0;
}

/* Where a frame starts, to take it back. */
typedef struct {
  size_t heads_len, nparts, size;
} mark_t;

/* Appends a head; on failure the batch is as it was. */
static int put_head(pbl__wire_batch *b, uint8_t type, uint8_t flags,
                    uint64_t tag, uint64_t len, mark_t *m) {
  uint8_t h[PBL__WIRE_HEAD];
  pbl__wire_head_encode(h, &(pbl__wire_head){type, flags, tag, len});
  *m = (mark_t){b->heads_len, b->nparts, b->size};
  return put_inline(b, h, sizeof(h));
}

static int undo(pbl__wire_batch *b, const mark_t *m, int err) {
  b->heads_len = m->heads_len;
  b->nparts = m->nparts;
  b->size = m->size;
  if (m->nparts > 0 && b->parts[m->nparts - 1].data == NULL)
    b->parts[m->nparts - 1].len = m->heads_len - b->parts[m->nparts - 1].off;
  return err;
}

int pbl__wire_batch_call(pbl__wire_batch *b, uint64_t tag, uint8_t flags,
                         const char *name, const void *in, size_t len) {
  size_t n = name != NULL ? strlen(name) : 0;
  if (n == 0 || n > PBL__WIRE_NAME_MAX || (in == NULL && len > 0))
    return UV_EINVAL;
  uint8_t pre[PBL__WIRE_CALL_PRE(PBL__WIRE_NAME_MAX)] = {0};
  size_t pre_len = PBL__WIRE_CALL_PRE(n);
  pre[0] = (uint8_t)n;
  pre[1] = (uint8_t)(n >> 8);
  memcpy(pre + 2, name, n);
  mark_t m;
  int err = put_head(b, PBL__WIRE_CALL, flags & PBL__WIRE_CALL_FLAGS, tag,
                     (uint64_t)pre_len + len, &m);
  if (err == 0)
    err = put_inline(b, pre, pre_len);
  if (err == 0)
    err = put_ref(b, in, len);
  return err != 0 ? undo(b, &m, err) : 0;
}

int pbl__wire_batch_result(pbl__wire_batch *b, uint64_t tag, const void *out,
                           size_t len) {
  if (out == NULL && len > 0)
    return UV_EINVAL;
  mark_t m;
  int err = put_head(b, PBL__WIRE_RESULT, 0, tag, len, &m);
  if (err == 0)
    err = put_ref(b, out, len);
  return err != 0 ? undo(b, &m, err) : 0;
}

int pbl__wire_batch_fail(pbl__wire_batch *b, uint64_t tag, int err, int code,
                         const char *msg) {
  if (!fail_err_known(err))
    return UV_EINVAL;
  size_t n = msg != NULL ? strlen(msg) : 0;
  if (n > PBL__WIRE_MSG_MAX)
    n = PBL__WIRE_MSG_MAX;
  uint8_t pre[8];
  put_i32(pre, err);
  put_i32(pre + 4, code);
  mark_t m;
  int e = put_head(b, PBL__WIRE_FAIL, 0, tag, 8 + n, &m);
  if (e == 0)
    e = put_inline(b, pre, sizeof(pre));
  if (e == 0)
    e = put_inline(b, msg, n); /* copied: msg may not outlive the call */
  return e != 0 ? undo(b, &m, e) : 0;
}

int pbl__wire_batch_bare(pbl__wire_batch *b, uint8_t type, uint64_t tag) {
  if (type != PBL__WIRE_CANCEL && type != PBL__WIRE_SKIPPED &&
      type != PBL__WIRE_PING && type != PBL__WIRE_BYE)
    return UV_EINVAL;
  mark_t m;
  return put_head(b, type, 0, tag, 0, &m);
}

int pbl__wire_batch_bufs(pbl__wire_batch *b, uv_buf_t **bufs, size_t *n) {
  int err =
      pbl__grow((void **)&b->bufs, &b->bufs_cap, b->nparts, sizeof(*b->bufs));
  if (err != 0)
    return err;
  for (size_t i = 0; i < b->nparts; i++) {
    const pbl__wire_part *p = &b->parts[i];
    /* Set by hand: uv_buf_init() takes an unsigned length. */
    b->bufs[i].base =
        p->data != NULL ? (char *)p->data : (char *)b->heads + p->off;
    b->bufs[i].len = p->len;
  }
  *bufs = b->bufs;
  *n = b->nparts;
  return 0;
}

size_t pbl__wire_bufs_slice(const uv_buf_t *bufs, size_t n, size_t from,
                            size_t to, uv_buf_t *out) {
  size_t k = 0, off = 0;
  for (size_t i = 0; i < n && off < to; off += bufs[i].len, i++) {
    size_t end = off + bufs[i].len;
    if (end <= from || bufs[i].len == 0)
      continue;
    size_t a = from > off ? from - off : 0;
    size_t z = to < end ? to - off : bufs[i].len;
    out[k].base = bufs[i].base + a;
    out[k].len = z - a;
    k++;
  }
  return k;
}

struct pbl__failure *pbl__wire_failure(const pbl__wire_fail *f) {
  pbl__failure *fl = pbl__malloc(sizeof(*fl) + f->msg_len + 1);
  if (fl == NULL)
    return NULL;
  fl->code = f->code;
  memcpy(fl->msg, f->msg, f->msg_len);
  fl->msg[f->msg_len] = '\0';
  return fl;
}
