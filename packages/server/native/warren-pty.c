/*
 * warren-pty: runs a program on a fresh pseudo-terminal and relays it over
 * plain pipes, for the agent's /terminal WebSocket (Node has no PTY API).
 *
 *   warren-pty [-r ROWS] [-c COLS] [--] PROGRAM [ARG...]
 *
 * File descriptors:
 *   0  bytes typed into the terminal (written to the PTY master)
 *   1  bytes the terminal prints (read from the PTY master)
 *   2  diagnostics of the helper itself
 *   3  optional control channel: each line "ROWS COLS\n" resizes the
 *      terminal (TIOCSWINSZ, so the foreground job gets SIGWINCH)
 *
 * PROGRAM runs as the leader of a new session with the PTY as its
 * controlling terminal, in the helper's working directory and environment.
 *
 * The helper exits when PROGRAM exits, after relaying everything PROGRAM
 * printed, with PROGRAM's exit code (128 + signal number if it was killed).
 * End of file on fd 0, or fd 1 closing, hangs up: SIGHUP to PROGRAM's
 * process group, SIGKILL after HANGUP_GRACE_MS if it is still there.
 *
 * Built with `gcc -static -O2` so it runs in any root filesystem.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define CTL_LINE_MAX 64
#define HANGUP_GRACE_MS 2000L

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
  ssize_t ignored = write(STDERR_FILENO, "warren-pty: ", 12);
  ignored = write(STDERR_FILENO, buf, (size_t)n);
  (void)ignored;
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Writes all of buf to a blocking fd; -1 on error (e.g. EPIPE). */
static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static int parse_dim(const char *s, unsigned short *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 1 || v > 10000) return -1;
  *out = (unsigned short)v;
  return 0;
}

/* Applies one "ROWS COLS" control line; malformed lines are ignored. */
static void apply_control_line(int master, char *line) {
  char *space = strchr(line, ' ');
  if (space == NULL) return;
  *space = '\0';
  struct winsize ws = {0};
  if (parse_dim(line, &ws.ws_row) != 0 || parse_dim(space + 1, &ws.ws_col) != 0) return;
  if (ioctl(master, TIOCSWINSZ, &ws) != 0) log_msg("TIOCSWINSZ: %s", strerror(errno));
}

/* Copies what the master has to stdout until it would block. Returns -1 when stdout is gone. */
static int drain_master(int master, char *buf) {
  for (;;) {
    ssize_t n = read(master, buf, BUF_SIZE);
    if (n > 0) {
      if (write_all(STDOUT_FILENO, buf, (size_t)n) != 0) return -1;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return 0; /* EAGAIN, EIO (no slave left) or EOF */
  }
}

static int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

int main(int argc, char **argv) {
  struct winsize ws = {.ws_row = 24, .ws_col = 80};
  int opt;
  while ((opt = getopt(argc, argv, "+r:c:")) != -1) {
    if (opt == 'r' && parse_dim(optarg, &ws.ws_row) == 0) continue;
    if (opt == 'c' && parse_dim(optarg, &ws.ws_col) == 0) continue;
    log_msg("usage: warren-pty [-r ROWS] [-c COLS] [--] PROGRAM [ARG...]");
    return 2;
  }
  if (optind >= argc) {
    log_msg("usage: warren-pty [-r ROWS] [-c COLS] [--] PROGRAM [ARG...]");
    return 2;
  }
  char **program = argv + optind;
  /* Decided before anything else is opened, which could land on fd 3. */
  int ctl = fcntl(3, F_GETFD) >= 0 ? 3 : -1;
  if (ctl >= 0) fcntl(ctl, F_SETFD, FD_CLOEXEC);

  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
    log_msg("cannot allocate a pseudo-terminal: %s", strerror(errno));
    return 1;
  }
  char *slave_name = ptsname(master);
  /* The helper keeps the slave open too: reads on the master then never fail
     with EIO before PROGRAM has opened it, and end of session is SIGCHLD. */
  int slave = slave_name ? open(slave_name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
  if (slave < 0) {
    log_msg("cannot open %s: %s", slave_name ? slave_name : "the pty slave", strerror(errno));
    return 1;
  }
  if (ioctl(slave, TIOCSWINSZ, &ws) != 0) log_msg("TIOCSWINSZ: %s", strerror(errno));

  sigset_t chld, original;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &original);
  signal(SIGPIPE, SIG_IGN);
  int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) {
    log_msg("signalfd: %s", strerror(errno));
    return 1;
  }

  pid_t child = fork();
  if (child < 0) {
    log_msg("fork: %s", strerror(errno));
    return 1;
  }
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &original, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) != 0) {
      log_msg("cannot make the pty the controlling terminal: %s", strerror(errno));
      _exit(126);
    }
    if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0) _exit(126);
    /* Close everything else, the control channel included. */
    for (int fd = 3; fd < 1024; fd++) close(fd);
    execvp(program[0], program);
    int err = errno;
    dprintf(2, "warren-pty: cannot execute %s: %s\r\n", program[0], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
  }

  fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  char *out = malloc(BUF_SIZE);
  char *in = malloc(BUF_SIZE);
  char ctl_line[CTL_LINE_MAX];
  size_t in_len = 0, ctl_len = 0;
  int stdin_open = 1;
  long hangup_at = 0; /* when SIGHUP was sent, 0 if not yet */
  int status = 0;
  if (out == NULL || in == NULL) {
    log_msg("out of memory");
    kill(-child, SIGKILL);
    return 1;
  }

  for (;;) {
    struct pollfd fds[4];
    int nfds = 0;
    int i_sig = nfds++, i_master = -1, i_stdin = -1, i_ctl = -1;
    fds[i_sig] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    i_master = nfds++;
    fds[i_master] = (struct pollfd){.fd = master, .events = POLLIN | (in_len > 0 ? POLLOUT : 0)};
    if (stdin_open && in_len < BUF_SIZE) {
      i_stdin = nfds++;
      fds[i_stdin] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
    }
    if (ctl >= 0) {
      i_ctl = nfds++;
      fds[i_ctl] = (struct pollfd){.fd = ctl, .events = POLLIN};
    }
    int timeout = -1;
    if (hangup_at > 0) {
      long left = hangup_at + HANGUP_GRACE_MS - now_ms();
      if (left <= 0) {
        kill(-child, SIGKILL);
        hangup_at = now_ms() + 3600L * 1000L; /* once */
        left = 100;
      }
      timeout = (int)left;
    }
    if (poll(fds, (nfds_t)nfds, timeout) < 0) {
      if (errno == EINTR) continue;
      log_msg("poll: %s", strerror(errno));
      break;
    }

    if (fds[i_sig].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sigfd, &si, sizeof si) > 0) {
      }
      pid_t pid = waitpid(child, &status, WNOHANG);
      if (pid == child) {
        drain_master(master, out);
        return exit_code_of(status);
      }
    }

    if (fds[i_master].revents & POLLIN) {
      if (drain_master(master, out) != 0 && hangup_at == 0) {
        /* Nobody reads the terminal any more: hang up. */
        kill(-child, SIGHUP);
        hangup_at = now_ms();
        stdin_open = 0;
      }
    }
    if (in_len > 0 && (fds[i_master].revents & POLLOUT)) {
      ssize_t n = write(master, in, in_len);
      if (n > 0) {
        memmove(in, in + n, in_len - (size_t)n);
        in_len -= (size_t)n;
      }
    }

    /* Resizes first: a client's resize is applied before input it sent afterwards. */
    if (i_ctl >= 0 && (fds[i_ctl].revents & (POLLIN | POLLHUP | POLLERR))) {
      char buf[256];
      ssize_t n = read(ctl, buf, sizeof buf);
      if (n <= 0 && !(n < 0 && errno == EINTR)) {
        close(ctl);
        ctl = -1;
      }
      for (ssize_t k = 0; k < n; k++) {
        if (buf[k] == '\n') {
          ctl_line[ctl_len] = '\0';
          apply_control_line(master, ctl_line);
          ctl_len = 0;
        } else if (ctl_len < CTL_LINE_MAX - 1) {
          ctl_line[ctl_len++] = buf[k];
        }
      }
    }
    if (i_stdin >= 0 && (fds[i_stdin].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = read(STDIN_FILENO, in + in_len, BUF_SIZE - in_len);
      if (n > 0) {
        in_len += (size_t)n;
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        stdin_open = 0;
        if (hangup_at == 0) {
          kill(-child, SIGHUP);
          hangup_at = now_ms();
        }
      }
    }

  }
  kill(-child, SIGKILL);
  waitpid(child, &status, 0);
  return exit_code_of(status);
}
