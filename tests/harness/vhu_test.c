/* SPDX-License-Identifier: BSD-3-Clause */
#include "vhu_test.h"

struct vhu_test_case vhu_tests[VHU_TEST_MAX];
int vhu_ntests;
int vhu_test_failed;
int vhu_test_skipped;

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
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (failed)
        return 1;
    return (passed == 0 && skipped > 0) ? 77 : 0;
}
