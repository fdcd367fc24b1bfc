/* Allocation wrappers: they keep errno, and give tests one seam to inject
 * out-of-memory (link with -Wl,--wrap=pbl__malloc). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void *pbl__malloc(size_t n) {
  int saved = errno;
  void *p = malloc(n != 0 ? n : 1);
  errno = saved;
  return p;
}

void *pbl__calloc(size_t n, size_t size) {
  int saved = errno;
  void *p = calloc(n != 0 ? n : 1, size != 0 ? size : 1);
  errno = saved;
  return p;
}

void *pbl__realloc(void *p, size_t n) {
  int saved = errno;
  void *q = realloc(p, n != 0 ? n : 1);
  errno = saved;
  return q;
}

void pbl__free(void *p) {
  int saved = errno; /* callers may still read errno after cleanup */
  free(p);
  errno = saved;
}

char *pbl__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = pbl__malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

char *pbl__vasprintf(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return NULL;
  char *s = pbl__malloc((size_t)n + 1);
  if (s != NULL)
    vsnprintf(s, (size_t)n + 1, fmt, ap);
  return s;
}

int pbl__grow(void **p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return 0;
  size_t n = *cap != 0 ? *cap : 4;
  while (n < need)
    n *= 2;
  void *q = pbl__realloc(*p, n * size);
  if (q == NULL)
    return UV_ENOMEM;
  *p = q;
  *cap = n;
  return 0;
}
