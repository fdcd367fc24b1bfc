/* A worker's channel once its child is done with it: stop reading it, and
 * read what the child wrote before it died without waiting for an end
 * that a process it started may keep from coming. */
#include <errno.h>
#include <sys/socket.h>

#include "process.h"

void pbl__channel_stop(pbl__child *c, bool *reading) {
  if (!*reading)
    return;
  *reading = false;
  uv_stream_t *ch = pbl__child_stream(c, PBL__WORKER_FD);
  if (ch != NULL)
    uv_read_stop(ch);
}

int pbl__channel_drain(uv_stream_t *ch, pbl__wire_reader *rd, bool *unread) {
  uv_os_fd_t fd;
  if (ch == NULL || uv_fileno((uv_handle_t *)ch, &fd) != 0)
    return 0;
  for (;;) {
    char *base;
    size_t len;
    pbl__wire_reader_buf(rd, &base, &len);
    ssize_t n = recv(fd, base, len, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    /* A socketpair's end closed with data in its receive queue reports
     * ECONNRESET to the other end, once, after the data it sent. */
    if (n < 0 && errno == ECONNRESET && unread != NULL)
      *unread = true;
    if (n <= 0)
      return 0; /* EOF, or EAGAIN: a process the child started holds it */
    int err = pbl__wire_reader_feed(rd, (size_t)n);
    if (err != 0)
      return err;
  }
}
