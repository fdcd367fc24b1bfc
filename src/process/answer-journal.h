/* The answer journal: where a local pool worker keeps the answers it holds
 * back, in memory its parent shares, so that a worker that dies holding
 * answers loses none of them (worker-out.c holds them; the pool replays
 * them, process-pool/ppool-worker.c).
 *
 * Design notes.
 *
 * Why. A worker that writes each answer at once pays a system call per
 * call, which for trivial map items is most of their cost. Holding a
 * chunk's answers and writing them in one go removes that, but a worker
 * that dies (exits in a function, crashes, is killed from outside) with
 * answers held would take them along: the parent would expire the first
 * unanswered item, which may have finished, and run finished ones again.
 * With the journal the held answers survive the worker: the parent reads
 * them from shared memory after the death and ends their items as if they
 * had come over the channel; only the item really running expires.
 *
 * The area. The parent creates it per local worker (a memfd, sealed
 * against resizing so that a worker cannot make the parent's mapping
 * fault, mapped shared) and hands it over as the worker's fd 4; the
 * worker maps it, closes the fd, and keeps the mapping from the processes
 * its functions fork (MADV_DONTFORK). A header, then the bytes:
 *
 *   base       the offset in the worker's channel stream (its bytes
 *              written, from its HELLO on) where the journal's byte 0
 *              goes
 *   committed  the journal's bytes that are whole frames
 *
 * The worker appends whole frames -- exactly the bytes it would have
 * written -- and release-stores committed after them; when it appends to
 * an empty journal it first stores base (all it wrote before is written,
 * so the first held byte goes next). A flush writes [0, committed) to the
 * channel and then stores committed 0. Bytes past committed are a frame
 * being built and count for nothing.
 *
 * The replay. Once the worker is dead the parent has read what its channel
 * held: `fed` bytes in all (the reader counts them). Journal bytes
 * [fed - base, committed) are the rest of the worker's stream: never
 * written, or cut off by the death in the middle of a flush. Fed to the
 * same reader they continue the stream where the channel stopped, a frame
 * cut in two included. Every state a death leaves is consistent: a process
 * dies between two instructions and the stores above are ordered; fed <
 * base (bytes lost, which a socketpair does not do) replays nothing, as
 * without a journal. The journal is no more trusted than the channel: the
 * header is checked against the area, and the bytes go through the
 * reader's checks.
 *
 * Remote (launched) workers have no journal and write each answer. So do
 * local ones where the journal cannot be made (no memfd): slower, never
 * wrong.
 */
#ifndef PBL_ANSWER_JOURNAL_H
#define PBL_ANSWER_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "wire.h"

/* The worker's fd for it, and its size: the worker holds at most
 * PBL__JOURNAL_HOLD bytes plus one answer no larger, so this is room to
 * spare (memfd pages are only allocated once touched). */
#define PBL__JOURNAL_FD 4
#define PBL__JOURNAL_SIZE ((size_t)256 << 10)
#define PBL__JOURNAL_HOLD ((size_t)64 << 10)

typedef struct pbl__journal {
  uint8_t *map; /* the area, or NULL: no journal */
  size_t size;  /* bytes mapped */
} pbl__journal;

/* ---- the parent ---- */

/* Creates an area of PBL__JOURNAL_SIZE bytes and maps it. Returns 0 and
 * sets *fd, to be handed to the worker and then closed by the caller; or
 * a negative error (UV_ENOSYS where there is no memfd or no lock-free
 * 64-bit atomics), and j is left without a journal. Thread: any. */
int pbl__journal_create(pbl__journal *j, int *fd);
/* Unmaps it. Idempotent. */
void pbl__journal_free(pbl__journal *j);
/* The worker is dead and rd has read all its channel held: feeds rd the
 * journal's bytes the channel did not carry (see the design notes).
 * Returns 0, or the reader's error (as pbl__wire_reader_feed). */
int pbl__journal_replay(const pbl__journal *j, pbl__wire_reader *rd);

/* ---- the worker ---- */

/* Maps the area on fd and closes fd. Returns 0 or a negative error (j
 * then has no journal: the worker writes each answer). */
int pbl__journal_open(pbl__journal *j, int fd);
/* Bytes held (committed). */
size_t pbl__journal_held(const pbl__journal *j);
/* Bytes that may still be appended. */
size_t pbl__journal_room(const pbl__journal *j);
/* Appends bufs[0..n) (whole frames, len bytes in all, at most the room)
 * and commits them; pos is the channel's stream offset now (bytes
 * written), the base when the journal was empty. */
void pbl__journal_append(pbl__journal *j, uint64_t pos, const uv_buf_t *bufs,
                         size_t n, size_t len);
/* The held bytes, [0, held). */
const void *pbl__journal_bytes(const pbl__journal *j);
/* They are written: the journal is empty. */
void pbl__journal_written(pbl__journal *j);
/* Unmaps it (the worker's exit, so that nothing stays behind). */
void pbl__journal_close(pbl__journal *j);

#endif /* PBL_ANSWER_JOURNAL_H */
