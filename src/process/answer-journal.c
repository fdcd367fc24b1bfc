/* The answer journal: the shared area, its header, the worker's appends
 * and the parent's replay. See answer-journal.h for the design notes. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, MADV_DONTFORK */
#endif
#include "answer-journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The header, at the area's start; the bytes follow at DATA. Both sides
 * are processes of their own: only lock-free atomics work across them. */
typedef struct {
  atomic_ullong base;
  atomic_ullong committed;
} jhead;
#define DATA 64 /* a cache line of its own for the header */

#if ATOMIC_LLONG_LOCK_FREE == 2
#define SHARED_ATOMICS 1
#else
#define SHARED_ATOMICS 0
#endif

static jhead *head_of(const pbl__journal *j) {
  return (jhead *)(void *)j->map;
}

static size_t capacity(const pbl__journal *j) {
  return j->size - DATA;
}

/* ---- the parent ---- */

int pbl__journal_create(pbl__journal *j, int *fd) {
  j->map = NULL;
  j->size = 0;
  *fd = -1;
#if defined(MFD_CLOEXEC) && defined(MFD_ALLOW_SEALING) && SHARED_ATOMICS
  int f = memfd_create("pebble-answers", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (f < 0)
    return uv_translate_sys_error(errno);
  int err = 0;
  if (ftruncate(f, (off_t)PBL__JOURNAL_SIZE) != 0)
    err = uv_translate_sys_error(errno);
  /* A worker that shrank the file would make our reads fault (SIGBUS). */
  if (err == 0 &&
      fcntl(f, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    err = uv_translate_sys_error(errno);
  void *p = MAP_FAILED;
  if (err == 0) {
    p = mmap(NULL, PBL__JOURNAL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
    if (p == MAP_FAILED)
      err = uv_translate_sys_error(errno);
  }
  if (err != 0) {
    (void)close(f);
    return err;
  }
  j->map = p; /* a fresh memfd reads as zeros: base and committed 0 */
  j->size = PBL__JOURNAL_SIZE;
  *fd = f;
  return 0;
#else
  return UV_ENOSYS;
#endif
}

void pbl__journal_free(pbl__journal *j) {
  if (j->map != NULL)
    (void)munmap(j->map, j->size);
  j->map = NULL;
  j->size = 0;
}

int pbl__journal_replay(const pbl__journal *j, pbl__wire_reader *rd) {
  if (j->map == NULL)
    return 0;
  jhead *h = head_of(j);
  uint64_t committed =
      atomic_load_explicit(&h->committed, memory_order_acquire);
  uint64_t base = atomic_load_explicit(&h->base, memory_order_relaxed);
  /* Nothing held; more than fits (garbage); or bytes before the journal
   * never came (see the design notes): nothing to add. */
  if (committed == 0 || committed > capacity(j) || rd->fed < base ||
      rd->fed - base >= committed)
    return 0;
  const uint8_t *from = j->map + DATA + (rd->fed - base);
  const uint8_t *end = j->map + DATA + committed;
  while (from < end) {
    char *buf;
    size_t len;
    pbl__wire_reader_buf(rd, &buf, &len);
    size_t n = (size_t)(end - from) < len ? (size_t)(end - from) : len;
    memcpy(buf, from, n);
    from += n;
    int err = pbl__wire_reader_feed(rd, n);
    if (err != 0)
      return err;
  }
  return 0;
}

/* ---- the worker ---- */

int pbl__journal_open(pbl__journal *j, int fd) {
  j->map = NULL;
  j->size = 0;
  struct stat st;
  int err = 0;
  if (!SHARED_ATOMICS)
    err = UV_ENOSYS;
  else if (fstat(fd, &st) != 0)
    err = uv_translate_sys_error(errno);
  else if (st.st_size < (off_t)(DATA + 2 * PBL__JOURNAL_HOLD))
    err = UV_EINVAL; /* not the area we expect */
  void *p = MAP_FAILED;
  if (err == 0) {
    p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
             0);
    if (p == MAP_FAILED)
      err = uv_translate_sys_error(errno);
  }
  (void)close(fd); /* the mapping stays; no task inherits the fd */
  if (err != 0)
    return err;
  /* A child forked by a function must not write into it (nor keep a
   * dead worker's answers alive in a process of its own). */
  (void)madvise(p, (size_t)st.st_size, MADV_DONTFORK);
  j->map = p;
  j->size = (size_t)st.st_size;
  atomic_store_explicit(&head_of(j)->committed, 0, memory_order_release);
  return 0;
}

size_t pbl__journal_held(const pbl__journal *j) {
  return (size_t)atomic_load_explicit(&head_of(j)->committed,
                                      memory_order_relaxed);
}

size_t pbl__journal_room(const pbl__journal *j) {
  return capacity(j) - pbl__journal_held(j);
}

void pbl__journal_append(pbl__journal *j, uint64_t pos, const uv_buf_t *bufs,
                         size_t n, size_t len) {
  jhead *h = head_of(j);
  size_t held = pbl__journal_held(j);
  if (held == 0) /* before any byte that counts: see the design notes */
    atomic_store_explicit(&h->base, pos, memory_order_release);
  uint8_t *to = j->map + DATA + held;
  for (size_t i = 0; i < n; i++) {
    if (bufs[i].len == 0)
      continue; /* memcpy takes no NULL, even for 0 bytes */
    memcpy(to, bufs[i].base, bufs[i].len);
    to += bufs[i].len;
  }
  atomic_store_explicit(&h->committed, held + len, memory_order_release);
}

const void *pbl__journal_bytes(const pbl__journal *j) {
  return j->map + DATA;
}

void pbl__journal_written(pbl__journal *j) {
  atomic_store_explicit(&head_of(j)->committed, 0, memory_order_release);
}

void pbl__journal_close(pbl__journal *j) {
  pbl__journal_free(j);
}
