/* Process functions by name: PBL_PROCESS_FN registers a function in a
 * constructor, before main(); the parent sends a function's name, the
 * worker (the same program, or one that registers the same names) finds
 * the function by it. */
#include <stdio.h>
#include <string.h>

#include "process.h"
#include "wire.h"

/* Registrations come from constructors (one thread), but a library
 * loaded later may register while other threads look names up. */
static uv_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pbl_process_reg *head;

int pbl_process_register(pbl_process_reg *reg) {
  if (reg == NULL || reg->name == NULL || reg->fn == NULL)
    return UV_EINVAL;
  size_t n = strlen(reg->name);
  if (n == 0 || n > PBL__WIRE_NAME_MAX)
    return UV_EINVAL;
  uv_mutex_lock(&lock);
  for (pbl_process_reg *r = head; r != NULL; r = r->next) {
    if (strcmp(r->name, reg->name) == 0) {
      uv_mutex_unlock(&lock);
      /* Usually two static functions of one name in different files: the
       * worker could not tell them apart. Refused, not fatal. */
      fprintf(stderr,
              "pebble: a process function named \"%s\" is already "
              "registered; this one is refused (tasks on it fail with "
              "PBL_ENOFUNC)\n",
              reg->name);
      return UV_EEXIST;
    }
  }
  reg->next = head;
  head = reg;
  uv_mutex_unlock(&lock);
  return 0;
}

const char *pbl__registry_name(pbl_process_fn fn) {
  const char *name = NULL;
  uv_mutex_lock(&lock);
  for (pbl_process_reg *r = head; r != NULL && name == NULL; r = r->next)
    if (r->fn == fn)
      name = r->name;
  uv_mutex_unlock(&lock);
  return name;
}

pbl_process_fn pbl__registry_find(const char *name) {
  pbl_process_fn fn = NULL;
  uv_mutex_lock(&lock);
  for (pbl_process_reg *r = head; r != NULL && fn == NULL; r = r->next)
    if (strcmp(r->name, name) == 0)
      fn = r->fn;
  uv_mutex_unlock(&lock);
  return fn;
}
