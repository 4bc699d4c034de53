/* SPDX-License-Identifier: BSD-3-Clause */
#include "vhu_test.h"

#include <ftw.h>
#include <stdbool.h>
#include <unistd.h>

struct vhu_test_case vhu_tests[VHU_TEST_MAX];
int vhu_ntests;
int vhu_test_failed;
int vhu_test_skipped;

/* the directories vhu_test_mkdtemp made */
static char **tmp_dirs;
static size_t ntmp_dirs;

char *vhu_test_mkdtemp(char *tmpl)
{
    char **grown, *copy;

    if (!mkdtemp(tmpl))
        return NULL;
    grown = realloc(tmp_dirs, (ntmp_dirs + 1) * sizeof(*tmp_dirs));
    copy = strdup(tmpl);
    if (grown)
        tmp_dirs = grown;
    if (!grown || !copy) {
        fprintf(stderr, "vhu_test: out of memory: %s will stay\n", tmpl);
        free(copy);
        return tmpl;
    }
    tmp_dirs[ntmp_dirs++] = copy;
    return tmpl;
}

const char *vhu_test_tmpdir(void)
{
    static char dir[256];
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "%s/vhu-%s-XXXXXX", base, program_invocation_short_name);
        if (!vhu_test_mkdtemp(dir)) {
            fprintf(stderr, "vhu_test: mkdtemp %s: %s; using %s\n", dir, strerror(errno), base);
            snprintf(dir, sizeof(dir), "%s", base);
        }
    }
    return dir;
}

static int print_log(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    size_t n = strlen(path);
    char buf[4096];
    size_t got;
    FILE *f;

    (void)ftw;
    if (type != FTW_F || n < 4 || strcmp(path + n - 4, ".log") != 0 || st->st_size == 0)
        return 0;
    f = fopen(path, "r");
    if (!f)
        return 0;
    /* the end of it: a failing test's last messages */
    if (st->st_size > (off_t)sizeof(buf) * 4)
        fseeko(f, st->st_size - (off_t)sizeof(buf) * 4, SEEK_SET);
    fprintf(stderr, "----- %s -----\n", path);
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, got, stderr);
    fclose(f);
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void tmp_dirs_done(bool failed)
{
    bool keep = getenv("VHU_KEEP_TMP") && strcmp(getenv("VHU_KEEP_TMP"), "1") == 0;

    for (size_t i = 0; i < ntmp_dirs; i++) {
        if (access(tmp_dirs[i], F_OK) == 0) {
            if (failed)
                nftw(tmp_dirs[i], print_log, 8, FTW_PHYS);
            if (keep)
                fprintf(stderr, "work dir kept: %s (VHU_KEEP_TMP=1)\n", tmp_dirs[i]);
            else
                nftw(tmp_dirs[i], remove_one, 8, FTW_DEPTH | FTW_PHYS);
        }
        free(tmp_dirs[i]);
    }
    free(tmp_dirs);
    tmp_dirs = NULL;
    ntmp_dirs = 0;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0, skipped = 0;

    for (int i = 0; i < vhu_ntests; i++) {
        if (argc > 1) {
            int want = 0;
            for (int a = 1; a < argc; a++)
                want |= strcmp(argv[a], vhu_tests[i].name) == 0;
            if (!want)
                continue;
        }
        vhu_test_failed = 0;
        vhu_test_skipped = 0;
        vhu_tests[i].fn();
        if (vhu_test_failed) {
            failed++;
            printf("FAIL %s\n", vhu_tests[i].name);
        } else if (vhu_test_skipped) {
            skipped++;
            printf("SKIP %s\n", vhu_tests[i].name);
        } else {
            passed++;
            printf("ok   %s\n", vhu_tests[i].name);
        }
        fflush(stdout);
    }
    fflush(stdout);
    tmp_dirs_done(failed > 0);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (failed)
        return 1;
    return (passed == 0 && skipped > 0) ? 77 : 0;
}
