/* Words on how a child ended ("worker 12 killed by signal 11 (SIGSEGV)"),
 * and the message hook of every process kind. */
#include <signal.h>
#include <stdio.h>

#include "process.h"

const char *pbl__signal_name(int sig, char *buf, size_t len) {
  static const struct {
    int sig;
    const char *name;
  } names[] = {
#define SIG(name) {name, #name}
      SIG(SIGHUP),  SIG(SIGINT),  SIG(SIGQUIT), SIG(SIGILL),  SIG(SIGTRAP),
      SIG(SIGABRT), SIG(SIGBUS),  SIG(SIGFPE),  SIG(SIGKILL), SIG(SIGUSR1),
      SIG(SIGSEGV), SIG(SIGUSR2), SIG(SIGPIPE), SIG(SIGALRM), SIG(SIGTERM),
      SIG(SIGXCPU), SIG(SIGXFSZ), SIG(SIGSYS),
#undef SIG
  };
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (names[i].sig == sig)
      return names[i].name;
  snprintf(buf, len, "SIG%d", sig);
  return buf;
}

char *pbl__exit_words(const char *who, int64_t status, int sig) {
  char buf[512], name[16];
  if (sig != 0)
    snprintf(buf, sizeof(buf), "%s killed by signal %d (%s)", who, sig,
             pbl__signal_name(sig, name, sizeof(name)));
  else
    snprintf(buf, sizeof(buf), "%s exited with status %lld", who,
             (long long)status);
  return pbl__strdup(buf);
}

const char *pbl__proc_message(const pbl_task_t *t) {
  if (pbl_task_state_of(t) != PBL_EXPIRED)
    return NULL;
  return t->ops->proc(t)->words; /* published by the end */
}

char *pbl__worker_exit_words(int pid, int64_t status, int sig) {
  char who[96];
  if (status == 0 && sig == 0) { /* a clean exit is no reason of its own */
    snprintf(who, sizeof(who),
             "worker %d exited with status 0 without sending a result", pid);
    return pbl__strdup(who);
  }
  snprintf(who, sizeof(who), "worker %d", pid);
  return pbl__exit_words(who, status, sig);
}
