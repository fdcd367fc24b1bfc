/* Frames between a parent and a worker process, over the worker's own
 * channel (a socketpair on the worker's fd 3).
 *
 * Design notes.
 *
 * A frame is a 24-byte head and a payload:
 *
 *   0  magic "pblw"   4  version   5  type   6  flags   7  0
 *      (flags: CALL only, LAST 1 and BATCH 2)
 *   8  tag (u64 LE: the parent's call id, echoed in the answer)
 *   16 payload length (u64 LE)
 *
 * Nothing a peer sends is trusted: every head is checked (magic, version,
 * type, flags, reserved byte, length against the reader's maximum and the
 * type's minimum) and every length inside a payload is checked against
 * the payload. A check that fails is PBL_EPROTO.
 *
 * Payloads:
 *   CALL   u16 name length, the name, zero padding up to a multiple of 16
 *          (at least one zero: the name is a C string in place), then the
 *          input. The input thus starts 16-aligned in a malloc'd payload.
 *   RESULT the output bytes.
 *   FAIL   i32 end code (PBL_EFAILED, PBL_ENOFUNC or UV_ENOMEM), i32 the
 *          code given to pbl_fail (or the function's return value), then
 *          the message (no NUL).
 *   CANCEL (parent to worker) none: drop the call `tag` if it has not
 *          started.
 *   SKIPPED (worker to parent) none: the call `tag` was dropped on a
 *          CANCEL before it started; its function never ran.
 *   HELLO  (worker to parent, its first frame, tag 0) u32 the worker's
 *          pid, then its host name (1..255 bytes, no NUL). The parent
 *          counts a worker started, and sends it calls, only once this
 *          came: anything else first (a remote shell's startup files
 *          printing to stdout) fails the start.
 *   PING   (both ways, launched workers, tag 0) none: a heartbeat. Any
 *          bytes count as one; a side that hears nothing for long enough
 *          takes the other for lost.
 *   BYE    (parent to worker, tag 0) none: no more calls: answer those
 *          read, then exit, the channel kept open (a launched worker
 *          takes the channel's end for its parent's loss).
 *
 * One channel carries any number of calls (a pool's worker serves many;
 * a one-shot worker gets one call flagged LAST and exits after its
 * answer); the tag matches answers to calls. A worker answers its calls
 * in order, every call once (RESULT, FAIL or SKIPPED), except that a
 * SKIPPED comes as soon as the CANCEL is read: always before the answer
 * of the call just before the skipped one. A CANCEL for a call that has
 * started or was answered is ignored.
 *
 * A CALL flagged BATCH (a map chunk's item other than its last) may have
 * its answer held by the worker and written with later ones; the worker
 * does so only where the answer survives its death (answer-journal.h).
 * The order of the answers is the same either way.
 *
 * Version 2 added CANCEL and SKIPPED; version 3 HELLO, PING and BYE;
 * version 4 the BATCH flag. A version is whole: both sides speak exactly
 * one (the worker's command line names it), so a frame of another version
 * is PBL_EPROTO.
 *
 * The reader is plain C over a byte stream, so libuv's read callbacks,
 * the worker's blocking read() and the fuzzer all drive the same code. It
 * hands out the buffer the next read should fill: a staging buffer while
 * it looks for a head (many small frames per read), then the frame's own
 * payload, so a large payload is read straight into the memory it ends in
 * (one copy, no reassembly).
 *
 * The batch encodes frames for one write: heads (and payloads up to
 * PBL__WIRE_INLINE bytes) are copied into one buffer, larger payloads are
 * referenced, not copied; the caller keeps them alive until the write
 * finishes.
 */
#ifndef PBL_WIRE_H
#define PBL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define PBL__WIRE_VERSION 4
#define PBL__WIRE_HEAD 24
#define PBL__WIRE_NAME_MAX 255  /* bytes of a function name */
#define PBL__WIRE_MSG_MAX 65536 /* bytes of a failure message */
#define PBL__WIRE_INLINE 512    /* payloads copied into the batch */
#define PBL__WIRE_STAGE 65536   /* the reader's staging buffer */
#define PBL__WIRE_CALL_PRE(name_len)                                           \
  ((((size_t)(name_len) + 3) + 15) & ~(size_t)15)

enum pbl__wire_type {
  PBL__WIRE_CALL = 1,
  PBL__WIRE_RESULT = 2,
  PBL__WIRE_FAIL = 3,
  PBL__WIRE_CANCEL = 4,
  PBL__WIRE_SKIPPED = 5,
  PBL__WIRE_HELLO = 6,
  PBL__WIRE_PING = 7,
  PBL__WIRE_BYE = 8
};
#define PBL__WIRE_HOST_MAX 255 /* bytes of a HELLO's host name */
#define PBL__WIRE_HELLO_MAX (PBL__WIRE_HEAD + 4 + PBL__WIRE_HOST_MAX)

/* An answer that ends a call by running it: RESULT or FAIL. */
static inline bool pbl__wire_ran(uint8_t type) {
  return type == PBL__WIRE_RESULT || type == PBL__WIRE_FAIL;
}

enum {
  PBL__WIRE_F_LAST = 1, /* CALL: the worker exits after answering */
  PBL__WIRE_F_BATCH = 2 /* CALL: its answer may be held (see above) */
};
#define PBL__WIRE_CALL_FLAGS (PBL__WIRE_F_LAST | PBL__WIRE_F_BATCH)

typedef struct pbl__wire_head {
  uint8_t type;
  uint8_t flags;
  uint64_t tag;
  uint64_t len;
} pbl__wire_head;

/* Encodes h into out. */
void pbl__wire_head_encode(uint8_t out[PBL__WIRE_HEAD],
                           const pbl__wire_head *h);
/* Decodes and checks a head; len must not pass max_len. Returns 0 or
 * PBL_EPROTO. */
int pbl__wire_head_decode(const uint8_t in[PBL__WIRE_HEAD], uint64_t max_len,
                          pbl__wire_head *h);

typedef struct pbl__wire_call {
  const char *name; /* NUL-terminated, inside the payload */
  size_t name_len;
  const void *in; /* 16-aligned when the payload is malloc'd */
  size_t in_len;
} pbl__wire_call;
/* Parses a CALL payload. Returns 0 or PBL_EPROTO. */
int pbl__wire_call_parse(const void *p, size_t len, pbl__wire_call *c);

typedef struct pbl__wire_fail {
  int err;         /* PBL_EFAILED, PBL_ENOFUNC or UV_ENOMEM */
  int code;        /* pbl_fail's code */
  const char *msg; /* not NUL-terminated */
  size_t msg_len;
} pbl__wire_fail;
/* Parses a FAIL payload. Returns 0 or PBL_EPROTO. */
int pbl__wire_fail_parse(const void *p, size_t len, pbl__wire_fail *f);

/* ---- reading ---- */

/* A whole frame arrived. payload is malloc'd (h->len bytes, at least one
 * byte allocated) and owned by the callee from now on. Returns 0 to go
 * on, or a negative code that stops the reader (feed returns it). */
typedef int (*pbl__wire_frame_cb)(void *ctx, const pbl__wire_head *h,
                                  void *payload);

typedef struct pbl__wire_reader {
  uint64_t max_len;
  pbl__wire_frame_cb on_frame;
  void *ctx;
  uint8_t *stage;      /* PBL__WIRE_STAGE bytes */
  size_t start, end;   /* unparsed bytes: stage[start, end) */
  pbl__wire_head head; /* of the frame being filled */
  uint8_t *payload;    /* the frame being filled, or NULL */
  uint64_t have;       /* payload bytes in so far */
  bool direct;         /* the last buffer handed out was the payload */
  int err;             /* sticky: the reader stopped */
  uint64_t fed;        /* bytes fed in all (answer-journal.h's replay) */
} pbl__wire_reader;

/* Returns 0 or UV_ENOMEM. */
int pbl__wire_reader_init(pbl__wire_reader *r, uint64_t max_len,
                          pbl__wire_frame_cb on_frame, void *ctx);
/* Frees the staging buffer and a partial payload. Idempotent. */
void pbl__wire_reader_free(pbl__wire_reader *r);
/* Where the next read should put its bytes (never empty). */
void pbl__wire_reader_buf(pbl__wire_reader *r, char **base, size_t *len);
/* n bytes were read into the buffer last handed out. Calls on_frame for
 * every whole frame. Returns 0, or the sticky error: PBL_EPROTO,
 * UV_ENOMEM, or what on_frame returned. */
int pbl__wire_reader_feed(pbl__wire_reader *r, size_t n);
/* true at a frame boundary with nothing buffered: EOF here is clean. */
bool pbl__wire_reader_idle(const pbl__wire_reader *r);

/* ---- writing ---- */

typedef struct pbl__wire_part {
  const void *data; /* NULL: heads[off, off + len) */
  size_t off, len;
} pbl__wire_part;

typedef struct pbl__wire_batch {
  uv_write_t req; /* free for the caller's uv_write */
  size_t size;    /* bytes in the batch */
  uint8_t *heads;
  size_t heads_len, heads_cap;
  pbl__wire_part *parts;
  size_t nparts, parts_cap;
  uv_buf_t *bufs;
  size_t bufs_cap;
} pbl__wire_batch;

void pbl__wire_batch_init(pbl__wire_batch *b);
/* Frees what the batch allocated (not the referenced payloads). */
void pbl__wire_batch_free(pbl__wire_batch *b);
/* Empties the batch for reuse, keeping its memory. */
void pbl__wire_batch_reset(pbl__wire_batch *b);
/* Appends a CALL of `name` on in[0, len). Returns 0, UV_EINVAL (a name
 * empty or too long) or UV_ENOMEM. */
int pbl__wire_batch_call(pbl__wire_batch *b, uint64_t tag, uint8_t flags,
                         const char *name, const void *in, size_t len);
int pbl__wire_batch_result(pbl__wire_batch *b, uint64_t tag, const void *out,
                           size_t len);
/* msg may be NULL; it is cut at PBL__WIRE_MSG_MAX bytes. */
int pbl__wire_batch_fail(pbl__wire_batch *b, uint64_t tag, int err, int code,
                         const char *msg);
/* A frame without payload: CANCEL, SKIPPED, PING or BYE. Returns 0, UV_EINVAL
 * or UV_ENOMEM. */
int pbl__wire_batch_bare(pbl__wire_batch *b, uint8_t type, uint64_t tag);
/* The batch as buffers for one uv_write() or writev() (uv_buf_t is
 * struct iovec's layout on Unix). Valid until the batch changes. Returns
 * 0 or UV_ENOMEM. */
int pbl__wire_batch_bufs(pbl__wire_batch *b, uv_buf_t **bufs, size_t *n);
/* Total bytes in the batch. */
static inline size_t pbl__wire_batch_size(const pbl__wire_batch *b) {
  return b->size;
}
/* bytes [from, to) of the buffers bufs[0..n) as buffers in out (room for
 * n). Returns how many. */
size_t pbl__wire_bufs_slice(const uv_buf_t *bufs, size_t n, size_t from,
                            size_t to, uv_buf_t *out);

/* wire-hello.c. A whole HELLO frame of pid and host (cut at
 * PBL__WIRE_HOST_MAX bytes; "?" if empty) into out. Returns its length. */
size_t pbl__wire_hello_encode(uint8_t out[PBL__WIRE_HELLO_MAX], int pid,
                              const char *host);
/* Parses a HELLO payload: pid, and the host as a C string in host.
 * Returns 0 or PBL_EPROTO. */
int pbl__wire_hello_parse(const void *p, size_t len, int *pid,
                          char host[PBL__WIRE_HOST_MAX + 1]);

/* A FAIL frame's code and message as a failure record (NULL: no
 * memory). */
struct pbl__failure *pbl__wire_failure(const pbl__wire_fail *f);

#endif /* PBL_WIRE_H */
