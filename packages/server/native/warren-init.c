/*
 * warren-init: PID 1 of a Warren sandbox.
 *
 *   warren-init PROGRAM [ARG...]
 *
 * Starts PROGRAM (the agent) as a child and then:
 *   - reaps every child that exits, including orphans re-parented to it
 *     (it is PID 1 of the sandbox, and a child subreaper when it is not);
 *   - forwards SIGTERM, SIGINT and SIGHUP to the agent;
 *   - restarts the agent when it exits or is killed (for example by the OOM
 *     killer), after a backoff that starts at 100 ms, doubles up to 5 s, and
 *     goes back to 100 ms once the agent has stayed up for 10 s;
 *   - after a SIGTERM or SIGINT, exits as soon as the agent has exited, with
 *     the agent's exit code (128 + signal number if it was killed).
 *
 * No signal handlers: the signals it cares about are blocked and taken
 * synchronously with sigtimedwait(), so nothing runs in signal context.
 * Blocked signals are also the only way PID 1 of a pid namespace receives
 * signals sent from inside the namespace.
 *
 * Built with `gcc -static -O2` so it runs in any root filesystem.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100L
#define BACKOFF_MAX_MS 5000L
#define STABLE_AFTER_MS 10000L

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

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
  ssize_t ignored = write(STDERR_FILENO, "warren-init: ", 13);
  ignored = write(STDERR_FILENO, buf, (size_t)n);
  (void)ignored;
}

/* Forks and execs argv[0]; returns the child's pid, or -1 if fork failed. */
static pid_t spawn_agent(char **argv, const sigset_t *child_mask) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  /* Child: back to the signal mask init started with. Dispositions need no
     reset: init installs no handlers. */
  sigprocmask(SIG_SETMASK, child_mask, NULL);
  execvp(argv[0], argv);
  log_msg("cannot execute %s: %s", argv[0], strerror(errno));
  _exit(127);
}

static int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    log_msg("usage: warren-init PROGRAM [ARG...]");
    return 2;
  }

  sigset_t watched, original;
  sigemptyset(&watched);
  sigaddset(&watched, SIGCHLD);
  sigaddset(&watched, SIGTERM);
  sigaddset(&watched, SIGINT);
  sigaddset(&watched, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &watched, &original) != 0) {
    log_msg("sigprocmask: %s", strerror(errno));
    return 1;
  }
  /* Orphans of the agent are re-parented to us even when we are not PID 1. */
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

  char **agent_argv = argv + 1;
  pid_t agent = 0;        /* running agent's pid, 0 when none */
  long started_at = 0;    /* when the running agent was started */
  long restart_at = 0;    /* when to start the agent again (if agent == 0) */
  long backoff = BACKOFF_MIN_MS;
  int terminating = 0;    /* SIGTERM or SIGINT received */

  for (;;) {
    long now = now_ms();
    if (agent == 0 && !terminating && now >= restart_at) {
      agent = spawn_agent(agent_argv, &original);
      if (agent < 0) {
        log_msg("fork: %s; retrying in %ld ms", strerror(errno), backoff);
        agent = 0;
        restart_at = now + backoff;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
      } else {
        started_at = now;
      }
    }

    siginfo_t info;
    int sig;
    if (agent == 0 && !terminating) {
      long wait_ms = restart_at - now_ms();
      if (wait_ms < 0) wait_ms = 0;
      struct timespec timeout = {.tv_sec = wait_ms / 1000, .tv_nsec = (wait_ms % 1000) * 1000000L};
      sig = sigtimedwait(&watched, &info, &timeout);
    } else {
      sig = sigwaitinfo(&watched, &info);
    }
    if (sig < 0) continue; /* EAGAIN (restart time reached) or EINTR */

    if (sig == SIGCHLD) {
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid != agent) continue;
        agent = 0;
        if (terminating) return exit_code_of(status);
        now = now_ms();
        if (now - started_at >= STABLE_AFTER_MS) backoff = BACKOFF_MIN_MS;
        if (WIFSIGNALED(status)) {
          log_msg("agent killed by signal %d; restarting in %ld ms", WTERMSIG(status), backoff);
        } else {
          log_msg("agent exited with code %d; restarting in %ld ms", exit_code_of(status), backoff);
        }
        restart_at = now + backoff;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
      }
      continue;
    }

    /* SIGTERM, SIGINT or SIGHUP */
    if (agent > 0) kill(agent, sig);
    if (sig == SIGTERM || sig == SIGINT) {
      terminating = 1;
      if (agent == 0) return 128 + sig;
    }
  }
}
