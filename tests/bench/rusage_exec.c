/*
 * rusage_exec REPORT_FILE COMMAND [ARGS...]
 *
 * Runs COMMAND, waits for it with wait4() and writes
 * "user_s sys_s maxrss_kib status nvcsw nivcsw" to REPORT_FILE (the last two: voluntary and
 * involuntary context switches of all its threads). Exits with COMMAND's exit code.
 *
 * Why not os.wait4() in the Python harness directly: Linux keeps the highest RSS a process
 * had before exec() in its ru_maxrss, and a child forked from the harness starts as a copy
 * of a 40 MB Python process, so every contender would report at least that much. Forked
 * from this small program instead, ru_maxrss is the contender's own peak.
 *
 * SIGTERM and SIGINT are forwarded to COMMAND, so the harness can stop a daemon through us.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child = 0;

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s REPORT_FILE COMMAND [ARGS...]\n", argv[0]);
    return 2;
  }
  struct sigaction sa = {0};
  sa.sa_handler = forward;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  child = fork();
  if (child < 0) {
    perror("fork");
    return 127;
  }
  if (child == 0) {
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    _exit(127);
  }
  int status = 0;
  struct rusage ru;
  while (wait4(child, &status, 0, &ru) < 0) {
    /* EINTR from a forwarded signal: keep waiting for the child itself. */
    if (errno != EINTR) {
      perror("wait4");
      return 127;
    }
  }
  FILE* out = fopen(argv[1], "w");
  if (out != NULL) {
    fprintf(out, "%ld.%06ld %ld.%06ld %ld %d %ld %ld\n", (long)ru.ru_utime.tv_sec,
            (long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec,
            ru.ru_maxrss, status, ru.ru_nvcsw, ru.ru_nivcsw);
    fclose(out);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
