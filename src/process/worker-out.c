/* The worker's answers on their way out: held or written. See
 * worker-out.h for the design notes. */
#include "worker-out.h"

/* The oldest held answer's call started at most this long ago. */
#define HOLD_NS 1000000u

void pbl__worker_out_init(pbl__worker_out *o, pbl__worker_chan *ch) {
  o->ch = ch;
  pbl__wire_batch_init(&o->b);
  o->j.map = NULL;
  o->j.size = 0;
  o->held_since = 0;
}

void pbl__worker_out_free(pbl__worker_out *o) {
  pbl__wire_batch_free(&o->b);
  pbl__journal_close(&o->j);
}

static int write_batch(pbl__worker_out *o) {
  uv_buf_t *bufs;
  size_t n;
  int err = pbl__wire_batch_bufs(&o->b, &bufs, &n);
  if (err == 0 && n > 0) /* same layout as struct iovec on Unix */
    err = pbl__worker_chan_write(o->ch, (struct iovec *)bufs, n);
  if (err == 0)
    pbl__wire_batch_reset(&o->b);
  return err;
}

static int write_journal(pbl__worker_out *o) {
  size_t held = pbl__journal_held(&o->j);
  if (held == 0)
    return 0;
  struct iovec iov = {(void *)pbl__journal_bytes(&o->j), held};
  int err = pbl__worker_chan_write(o->ch, &iov, 1);
  if (err == 0)
    pbl__journal_written(&o->j);
  return err;
}

int pbl__worker_out_flush(pbl__worker_out *o) {
  int err = o->j.map != NULL ? write_journal(o) : 0;
  return err != 0 ? err : write_batch(o);
}

int pbl__worker_out_done(pbl__worker_out *o, bool hold, uint64_t started) {
  size_t len = pbl__wire_batch_size(&o->b);
  if (o->j.map == NULL || len > PBL__JOURNAL_HOLD)
    return pbl__worker_out_flush(o);
  size_t held = pbl__journal_held(&o->j);
  if (!hold && held == 0)
    return write_batch(o); /* nothing to join it to: no copy */
  int err = 0;
  if (len > pbl__journal_room(&o->j)) {
    err = write_journal(o);
    held = 0;
  }
  uv_buf_t *bufs;
  size_t n;
  if (err == 0)
    err = pbl__wire_batch_bufs(&o->b, &bufs, &n);
  if (err != 0)
    return err;
  if (held == 0)
    o->held_since = started;
  /* Only this thread writes to a local worker's channel (launched ones,
   * whose watcher sends PINGs, have no journal): written is ours. */
  pbl__journal_append(&o->j, o->ch->written, bufs, n, len);
  pbl__wire_batch_reset(&o->b);
  if (hold && held + len < PBL__JOURNAL_HOLD &&
      uv_hrtime() - o->held_since < HOLD_NS)
    return 0;
  return write_journal(o);
}
