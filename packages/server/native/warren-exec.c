/*
 * warren-exec: starts the agent's child processes with posix_spawn (vfork
 * semantics) and relays their output, so the agent (a Node process of 50+ MiB)
 * never fork()s itself for a command: a fork copies the page tables of the
 * whole agent (milliseconds), a vfork of this small process does not.
 *
 *   warren-exec            (no arguments; started once by the agent)
 *
 * Channels (all integers little-endian):
 *   fd 0    from the agent; nothing is read from it but its end: when it
 *           closes (the agent died), the helper exits at once.
 *   fd 1    events to the agent, as frames (below), written non-blocking
 *           from a queue.
 *   fd 2    diagnostics of the helper itself.
 *   requests  a pipe the helper creates; the agent opens its write end as
 *           /proc/<helper>/fd/<n> and writes request frames to it.
 *   replies   a pipe the helper creates; the agent opens its read end as
 *           /proc/<helper>/fd/<n> and reads one 12-byte reply per spawn
 *           request: u32 id, u32 kind (0 started, 1 failed), u32 pid|errno.
 *           The agent waits for it synchronously, like a spawn.
 *
 * A frame is: u32 length of what follows, u8 type, u32 id, payload.
 *   helper -> agent (fd 1)
 *     'H' id 0   hello: u32 requests fd, u32 replies fd (to open via /proc)
 *     'D' id     output: u8 stream (1 stdout, 2 stderr), bytes
 *     'E' id     end of file: u8 stream
 *     'X' id     exited: u8 kind (0 exit code, 1 killed by signal), u32 value
 *   agent -> helper (requests)
 *     'O' id 0   the agent has opened both pipes (the helper drops its spare ends)
 *     'S' id     spawn: u32 argc, u32 envc, then NUL-terminated strings:
 *                cwd, argv[0..argc), env[0..envc). argv[0] is looked up in
 *                the PATH of env when it has no '/'; a file without a #!
 *                line runs through /bin/sh, as with execvp.
 *     'P' id     stop reading the child's output (the agent's consumer is slow)
 *     'R' id     read it again
 *     'C' id     close the child's pipes: the agent stopped waiting for output
 *                (a background grandchild holds them after the leader exited)
 *
 * Every child leads its own session (POSIX_SPAWN_SETSID), starts in cwd with
 * exactly env, stdin from /dev/null, stdout and stderr to pipes the helper
 * reads with poll(), every signal at its default disposition and none blocked.
 * Its exit is reported after waitpid(); a child is forgotten once it exited and
 * both pipes reached end of file or were closed.
 *
 * Back-pressure: the helper never blocks on fd 1. While more than
 * QUEUE_HIGH_WATER bytes wait to be written to the agent it stops reading the
 * children's pipes (their writers then block), so memory stays bounded; a
 * paused child is not read at all.
 *
 * When fd 0 or the request pipe reaches end of file the helper exits; the
 * children keep their own sessions and process groups.
 *
 * Built with `gcc -static -O2` so it runs in any root filesystem.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <paths.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "warren-exec frames are little-endian and copied as host integers"
#endif

#define HEADER_SIZE 9                   /* u32 length, u8 type, u32 id */
#define READ_CHUNK 65536                /* bytes read from a child's pipe at a time */
#define QUEUE_HIGH_WATER (256 * 1024)   /* stop reading children above this */
#define QUEUE_KEEP (128 * 1024)         /* an empty queue larger than this is freed */
#define MAX_REQUEST (64u * 1024 * 1024) /* largest request frame accepted */

static void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_msg(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t ignored = write(STDERR_FILENO, "warren-exec: ", 13);
  ignored = write(STDERR_FILENO, buf, (size_t)n);
  (void)ignored;
}

static void *xrealloc(void *p, size_t size) {
  void *q = realloc(p, size);
  if (q == NULL) {
    log_msg("out of memory (%zu bytes)", size);
    _exit(3);
  }
  return q;
}

static uint32_t get_u32(const char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static void put_u32(char *p, uint32_t v) { memcpy(p, &v, 4); }

/* ---- events to the agent: a byte queue flushed to fd 1 without blocking ---- */

static char *queue;
static size_t queue_len, queue_off, queue_cap;

static size_t queued(void) { return queue_len - queue_off; }

/* Makes room for `extra` more bytes at the end of the queue; returns where they go. */
static char *queue_reserve(size_t extra) {
  if (queue_off > 0 && queue_off == queue_len) queue_off = queue_len = 0;
  if (queue_len + extra > queue_cap) {
    if (queue_off > 0) {
      memmove(queue, queue + queue_off, queued());
      queue_len -= queue_off;
      queue_off = 0;
    }
    if (queue_len + extra > queue_cap) {
      size_t cap = queue_cap == 0 ? 4096 : queue_cap;
      while (cap < queue_len + extra) cap *= 2;
      queue = xrealloc(queue, cap);
      queue_cap = cap;
    }
  }
  return queue + queue_len;
}

static void put_header(char *p, uint32_t payload_len, char type, uint32_t id) {
  put_u32(p, 5 + payload_len);
  p[4] = type;
  put_u32(p + 5, id);
}

static void queue_frame(char type, uint32_t id, const char *payload, uint32_t len) {
  char *p = queue_reserve(HEADER_SIZE + len);
  put_header(p, len, type, id);
  if (len > 0) memcpy(p + HEADER_SIZE, payload, len);
  queue_len += HEADER_SIZE + len;
}

/* Writes what fd 1 takes now. Exits when the agent is gone. */
static void queue_flush(void) {
  while (queued() > 0) {
    ssize_t n = write(STDOUT_FILENO, queue + queue_off, queued());
    if (n > 0) {
      queue_off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    _exit(0); /* EPIPE or worse: nobody reads the events any more */
  }
  queue_off = queue_len = 0;
  if (queue_cap > QUEUE_KEEP) {
    free(queue);
    queue = NULL;
    queue_cap = 0;
  }
}

/* ---- children ---- */

struct child {
  uint32_t id;
  pid_t pid;
  int fd[2]; /* read ends of stdout, stderr; -1 once closed */
  bool paused;
  bool exited;
};

static struct child *children;
static size_t n_children, cap_children;

static struct child *find_child(uint32_t id) {
  for (size_t i = 0; i < n_children; i++)
    if (children[i].id == id) return &children[i];
  return NULL;
}

static void close_stream(struct child *c, int stream, bool report) {
  if (c->fd[stream] < 0) return;
  close(c->fd[stream]);
  c->fd[stream] = -1;
  if (report) {
    char s = (char)(stream + 1);
    queue_frame('E', c->id, &s, 1);
  }
}

/* Forgets children that exited and whose pipes are closed (swap with the last). */
static void forget_finished(void) {
  for (size_t i = 0; i < n_children;) {
    struct child *c = &children[i];
    if (c->exited && c->fd[0] < 0 && c->fd[1] < 0) {
      children[i] = children[--n_children];
      continue;
    }
    i++;
  }
  if (n_children == 0 && cap_children > 64) {
    free(children);
    children = NULL;
    cap_children = 0;
  }
}

/* A stream ended this round: its process has probably exited too, so look before the next poll. */
static bool saw_eof;

/* Reads one chunk of a child's stream into the queue as a 'D' frame, or reports its end. */
static void read_stream(struct child *c, int stream) {
  char *p = queue_reserve(HEADER_SIZE + 1 + READ_CHUNK);
  ssize_t n;
  do n = read(c->fd[stream], p + HEADER_SIZE + 1, READ_CHUNK);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    put_header(p, 1 + (uint32_t)n, 'D', c->id);
    p[HEADER_SIZE] = (char)(stream + 1);
    queue_len += HEADER_SIZE + 1 + (size_t)n;
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  close_stream(c, stream, true); /* EOF, or an error that ends the stream all the same */
  saw_eof = true;
}

static void reap(int sigfd) {
  struct signalfd_siginfo info;
  while (read(sigfd, &info, sizeof info) > 0) {
  }
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (size_t i = 0; i < n_children; i++) {
      struct child *c = &children[i];
      if (c->pid != pid) continue;
      char payload[5];
      if (WIFSIGNALED(status)) {
        payload[0] = 1;
        put_u32(payload + 1, (uint32_t)WTERMSIG(status));
      } else {
        payload[0] = 0;
        put_u32(payload + 1, (uint32_t)WEXITSTATUS(status));
      }
      c->exited = true;
      queue_frame('X', c->id, payload, sizeof payload);
      break;
    }
  }
}

/* ---- spawning ---- */

static int reply_fd = -1;

static void reply(uint32_t id, uint32_t kind, uint32_t value) {
  char buf[12];
  put_u32(buf, id);
  put_u32(buf + 4, kind);
  put_u32(buf + 8, value);
  size_t off = 0;
  while (off < sizeof buf) {
    ssize_t n = write(reply_fd, buf + off, sizeof buf - off);
    if (n > 0) off += (size_t)n;
    else if (n < 0 && errno == EINTR) continue;
    else _exit(0); /* the agent closed the reply pipe: it is gone */
  }
}

/* Is `path` something exec could run? 0, or the errno exec would report. */
static int runnable(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return errno == ENOTDIR ? ENOENT : errno;
  if (!S_ISREG(st.st_mode) || access(path, X_OK) != 0) return EACCES;
  return 0;
}

/*
 * Finds `file` in `search` (a PATH value) like execvp: the first runnable
 * match wins; EACCES when only unrunnable matches exist, else ENOENT.
 * Relative entries are taken from `cwd`, where the child runs. Writes the
 * path into `out` (PATH_MAX bytes).
 */
static int find_in_path(const char *file, const char *search, const char *cwd, char *out) {
  int err = ENOENT;
  size_t flen = strlen(file);
  for (const char *p = search;; p++) {
    const char *end = strchrnul(p, ':');
    size_t dlen = (size_t)(end - p);
    int w;
    if (dlen == 0) w = snprintf(out, PATH_MAX, "%s/%s", cwd, file);
    else if (*p == '/') w = snprintf(out, PATH_MAX, "%.*s/%s", (int)dlen, p, file);
    else w = snprintf(out, PATH_MAX, "%s/%.*s/%s", cwd, (int)dlen, p, file);
    if (w > 0 && (size_t)w < PATH_MAX && flen > 0) {
      int e = runnable(out);
      if (e == 0) return 0;
      if (e == EACCES) err = EACCES;
    }
    if (*end == '\0') return err;
    p = end;
  }
}

/* Splits `n` NUL-terminated strings off [*p, end) into `out`; -1 when they do not fit. */
static int take_strings(char **p, const char *end, char **out, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    char *nul = memchr(*p, '\0', (size_t)(end - *p));
    if (nul == NULL) return -1;
    out[i] = *p;
    *p = nul + 1;
  }
  return 0;
}

static int spawn_child(uint32_t id, char *payload, size_t len, pid_t *pid_out) {
  if (len < 8) return EINVAL;
  uint32_t argc = get_u32(payload), envc = get_u32(payload + 4);
  char *end = payload + len, *p = payload + 8;
  /* Each string takes at least its NUL byte. */
  if (argc == 0 || argc > len || envc > len) return EINVAL;
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  char **envp = calloc((size_t)envc + 1, sizeof *envp);
  char *cwd = NULL;
  int err = 0;
  int out[2] = {-1, -1}, errp[2] = {-1, -1};
  if (argv == NULL || envp == NULL) {
    err = ENOMEM;
    goto done;
  }
  if (take_strings(&p, end, &cwd, 1) != 0 || take_strings(&p, end, argv, argc) != 0 ||
      take_strings(&p, end, envp, envc) != 0) {
    err = EINVAL;
    goto done;
  }

  char resolved[PATH_MAX];
  const char *path = argv[0];
  if (strchr(argv[0], '/') == NULL) {
    const char *search = _PATH_DEFPATH;
    for (uint32_t i = 0; i < envc; i++)
      if (strncmp(envp[i], "PATH=", 5) == 0) {
        search = envp[i] + 5;
        break;
      }
    err = find_in_path(argv[0], search, cwd, resolved);
    if (err != 0) goto done;
    path = resolved;
  }

  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
    err = errno;
    goto done;
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  sigset_t none, all;
  sigemptyset(&none);
  /* Every bit, not sigfillset(): that leaves out glibc's internal signals (32, 33), which posix_spawn would
   * then set to SIG_IGN in the child, and an ignored signal stays ignored across exec. */
  memset(&all, 0xff, sizeof all);
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addchdir_np(&actions, cwd);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, errp[1], STDERR_FILENO);
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  pid_t pid;
  err = posix_spawn(&pid, path, &actions, &attr, argv, envp);
  if (err == ENOEXEC) {
    /* Like execvp (and node's spawn): a file without a #! line runs as a shell script. */
    char **shell_argv = calloc((size_t)argc + 2, sizeof *shell_argv);
    if (shell_argv != NULL) {
      shell_argv[0] = (char *)_PATH_BSHELL;
      shell_argv[1] = (char *)path;
      memcpy(shell_argv + 2, argv + 1, ((size_t)argc - 1) * sizeof *argv);
      err = posix_spawn(&pid, _PATH_BSHELL, &actions, &attr, shell_argv, envp);
      free(shell_argv);
    }
  }
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) goto done;

  if (n_children == cap_children) {
    cap_children = cap_children == 0 ? 16 : cap_children * 2;
    children = xrealloc(children, cap_children * sizeof *children);
  }
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  fcntl(errp[0], F_SETFL, O_NONBLOCK);
  children[n_children++] = (struct child){.id = id, .pid = pid, .fd = {out[0], errp[0]}};
  out[0] = errp[0] = -1;
  *pid_out = pid;

done:
  for (int i = 0; i < 2; i++) {
    if (out[i] >= 0) close(out[i]);
    if (errp[i] >= 0) close(errp[i]);
  }
  free(argv);
  free(envp);
  return err;
}

/* ---- requests ---- */

static char *req_buf;
static size_t req_len, req_cap;
static int spare_fds[2] = {-1, -1}; /* our own write end of requests, read end of replies */

static void handle_request(char type, uint32_t id, char *payload, size_t len) {
  struct child *c;
  switch (type) {
  case 'O':
    for (int i = 0; i < 2; i++) {
      if (spare_fds[i] >= 0) close(spare_fds[i]);
      spare_fds[i] = -1;
    }
    return;
  case 'S': {
    pid_t pid = 0;
    int err = spawn_child(id, payload, len, &pid);
    if (err == 0) reply(id, 0, (uint32_t)pid);
    else reply(id, 1, (uint32_t)err);
    return;
  }
  case 'P':
  case 'R':
    if ((c = find_child(id)) != NULL) c->paused = type == 'P';
    return;
  case 'C':
    if ((c = find_child(id)) != NULL) {
      close_stream(c, 0, false);
      close_stream(c, 1, false);
    }
    return;
  default:
    log_msg("unknown request type 0x%02x", (unsigned char)type);
    _exit(2);
  }
}

/* Reads what the request pipe holds and handles every complete frame. Exits at end of file. */
static void read_requests(int fd) {
  for (;;) {
    if (req_cap - req_len < 65536) {
      req_cap = req_cap == 0 ? 65536 : req_cap * 2;
      req_buf = xrealloc(req_buf, req_cap);
    }
    ssize_t n = read(fd, req_buf + req_len, req_cap - req_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) _exit(0); /* the agent is gone */
    req_len += (size_t)n;
  }
  size_t off = 0;
  while (req_len - off >= HEADER_SIZE) {
    uint32_t flen = get_u32(req_buf + off);
    if (flen < 5 || flen > MAX_REQUEST) {
      log_msg("bad request frame length %u", flen);
      _exit(2);
    }
    if (req_len - off < 4 + (size_t)flen) break;
    char *frame = req_buf + off;
    handle_request(frame[4], get_u32(frame + 5), frame + HEADER_SIZE, flen - 5);
    off += 4 + (size_t)flen;
  }
  if (off > 0) {
    memmove(req_buf, req_buf + off, req_len - off);
    req_len -= off;
  }
  if (req_len == 0 && req_cap > QUEUE_KEEP) {
    free(req_buf);
    req_buf = NULL;
    req_cap = 0;
  }
}

int main(void) {
  /* Buffers past 64 KiB (a busy queue) are mapped on their own, so freeing them gives the memory back. */
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  int requests[2], replies[2];
  if (sigfd < 0 || pipe2(requests, O_CLOEXEC) != 0 || pipe2(replies, O_CLOEXEC) != 0) {
    log_msg("setup: %s", strerror(errno));
    return 1;
  }
  fcntl(requests[0], F_SETFL, O_NONBLOCK);
  fcntl(STDOUT_FILENO, F_SETFL, fcntl(STDOUT_FILENO, F_GETFL) | O_NONBLOCK);
  fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
  reply_fd = replies[1];
  spare_fds[0] = requests[1];
  spare_fds[1] = replies[0];
  char hello[8];
  put_u32(hello, (uint32_t)requests[0]);
  put_u32(hello + 4, (uint32_t)replies[1]);
  queue_frame('H', 0, hello, sizeof hello);

  struct pollfd *fds = NULL;
  struct {
    size_t child;
    int stream;
  } *owners = NULL;
  size_t fds_cap = 0, round = 0;
  for (;;) {
    queue_flush();
    size_t need = 4 + 2 * n_children;
    if (need > fds_cap) {
      fds_cap = need * 2;
      fds = xrealloc(fds, fds_cap * sizeof *fds);
      owners = xrealloc(owners, fds_cap * sizeof *owners);
    }
    size_t nfds = 0;
    fds[nfds++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
    fds[nfds++] = (struct pollfd){.fd = requests[0], .events = POLLIN};
    fds[nfds++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    fds[nfds++] = (struct pollfd){.fd = queued() > 0 ? STDOUT_FILENO : -1, .events = POLLOUT};
    size_t first_child = nfds;
    if (queued() < QUEUE_HIGH_WATER) {
      for (size_t i = 0; i < n_children; i++) {
        if (children[i].paused) continue;
        for (int s = 0; s < 2; s++) {
          if (children[i].fd[s] < 0) continue;
          owners[nfds].child = i;
          owners[nfds].stream = s;
          fds[nfds++] = (struct pollfd){.fd = children[i].fd[s], .events = POLLIN};
        }
      }
    }
    if (poll(fds, nfds, -1) < 0) {
      if (errno == EINTR) continue;
      log_msg("poll: %s", strerror(errno));
      return 1;
    }
    /*
     * Output first, then exits (so an exit follows the output read in the same round), then requests.
     * Each round starts at another pipe, and none is read past the high-water mark.
     */
    size_t n_pipes = nfds - first_child;
    for (size_t k = 0; k < n_pipes && queued() < QUEUE_HIGH_WATER; k++) {
      size_t i = first_child + (k + round) % n_pipes;
      if (fds[i].revents != 0) read_stream(&children[owners[i].child], owners[i].stream);
    }
    round++;
    if (fds[2].revents != 0 || saw_eof) reap(sigfd);
    saw_eof = false;
    if (fds[1].revents != 0) read_requests(requests[0]);
    if (fds[0].revents != 0) {
      char scratch[256];
      ssize_t n = read(STDIN_FILENO, scratch, sizeof scratch);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return 0; /* the agent is gone */
    }
    forget_finished();
  }
}
