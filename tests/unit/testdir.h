/*
 * A scratch directory for unit tests that need real files (the RocksDB
 * event log): made under $TMPDIR (or /tmp) by the test, removed with
 * everything in it when the test ends, whether it passed or not (cmocka
 * teardown functions run after a failed assertion too).
 */
#ifndef AO_TESTDIR_H
#define AO_TESTDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#endif
