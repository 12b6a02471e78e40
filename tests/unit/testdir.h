/*
 * A scratch directory for unit tests that need real files (the RocksDB
 * event log): made under $TMPDIR (or /tmp) by the test, removed with
 * everything in it when the test ends, whether it passed or not (cmocka
 * teardown functions run after a failed assertion too). And the test
 * binary run again as a child process (a second opener of the log, a
 * process to kill -9), its standard output a pipe to the test.
 */
#ifndef AO_TESTDIR_H
#define AO_TESTDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int ao_test__rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes path and everything under it; a missing path is not an error. */
static inline void ao_test_rm_rf(const char *path)
{
    if (access(path, F_OK) == 0) nftw(path, ao_test__rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes a new empty directory named after `what`; the caller frees the
 * returned path after ao_test_rm_rf. Aborts the test run if it cannot. */
static inline char *ao_test_mkdtemp(const char *what)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    size_t n = strlen(tmp) + strlen(what) + 32;
    char *dir = malloc(n);
    if (!dir) abort();
    snprintf(dir, n, "%s/ao-%s.XXXXXX", tmp, what);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    return dir;
}

/* Runs this binary again as `argv0 flag arg` (a fresh process: nothing
 * of the parent's threads or RocksDB state), its standard output the pipe
 * whose read end goes to *out_fd. Returns its pid, or -1. */
static inline pid_t ao_test_spawn_self(const char *argv0, const char *flag, const char *arg,
                                       int *out_fd)
{
    int fds[2];
    if (pipe(fds)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/proc/self/exe", argv0, flag, arg, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return -1;
    }
    *out_fd = fds[0];
    return pid;
}

/* The same, to its end: what it wrote (at most cap - 1 bytes, terminated)
 * and its exit status (-1 if it did not exit normally or could not run). */
static inline int ao_test_run_self(const char *argv0, const char *flag, const char *arg, char *out,
                                   size_t cap)
{
    int fd;
    pid_t pid = ao_test_spawn_self(argv0, flag, arg, &fd);
    if (pid < 0) return -1;
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, out + n, cap - 1 - n)) > 0) n += (size_t)r;
    out[n] = '\0';
    close(fd);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

#endif
