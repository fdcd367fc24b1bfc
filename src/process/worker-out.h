/* The worker's answers on their way out (worker.c runs the calls): built
 * in a batch, held in the answer journal (answer-journal.h) or written.
 *
 * Design notes.
 *
 * A worker that writes each answer at once pays a write per call; for
 * trivial map items that is most of their cost. So the answers of calls
 * the parent flagged BATCH (every item of a map chunk but its last, wire.h)
 * may be held and written together -- only in a journal, where they
 * survive the worker's death, and only while holding costs little:
 *
 *  - the next call is already read (else the worker would wait with
 *    answers held: it writes them before it waits);
 *  - the journal holds less than PBL__JOURNAL_HOLD bytes;
 *  - the call of the oldest held answer started less than HOLD_NS ago. A
 *    call that itself ran that long is written at once: holding pays only
 *    where the write costs as much as the call.
 *
 * So an answer waits at most HOLD_NS plus the one call after it. Anything
 * else is written at once: an unflagged call's answer (with what is held,
 * in one write), a frame larger than PBL__JOURNAL_HOLD (written straight
 * from the batch, after what is held: no copy of large results), every
 * answer of a worker without a journal.
 */
#ifndef PBL_WORKER_OUT_H
#define PBL_WORKER_OUT_H

#include "answer-journal.h"
#include "wire.h"
#include "worker-chan.h"

typedef struct pbl__worker_out {
  pbl__worker_chan *ch;
  pbl__wire_batch b;   /* frames being built: SKIPPEDs, an answer */
  pbl__journal j;      /* held answers; j.map NULL: none, each written */
  uint64_t held_since; /* uv_hrtime(): the oldest held answer's call start */
} pbl__worker_out;

void pbl__worker_out_init(pbl__worker_out *o, pbl__worker_chan *ch);
/* Frees the batch and unmaps the journal (what it holds stays for the
 * parent). */
void pbl__worker_out_free(pbl__worker_out *o);
/* The frames in the batch are whole (an answer, the SKIPPEDs before it):
 * held if `hold` (a BATCH call's answer with the next call read) and the
 * rules above allow, else written with what is held. started: when the
 * answered call started (uv_hrtime()). Returns 0, UV_ENOMEM or a write
 * error (UV_EPIPE: the parent is gone). */
int pbl__worker_out_done(pbl__worker_out *o, bool hold, uint64_t started);
/* Writes what is held, then what is built. Returns as above. */
int pbl__worker_out_flush(pbl__worker_out *o);

#endif /* PBL_WORKER_OUT_H */
