/* test_blas.c: the BLAS kernel decision (kernels/blas.h) and this CPU's features. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../kernels/blas.h"

static void test_rank(void **state) {
    (void)state;
    assert_int_equal(cv_blas_core_rank("Cooperlake"), 3);
    assert_int_equal(cv_blas_core_rank("cooperlake"), 3);
    assert_int_equal(cv_blas_core_rank("SkylakeX"), 2);
    assert_int_equal(cv_blas_core_rank("Haswell"), 1);
    assert_int_equal(cv_blas_core_rank("Zen"), 1);
    assert_int_equal(cv_blas_core_rank("Prescott"), 0);
    assert_int_equal(cv_blas_core_rank("Sandybridge"), 0);
    assert_int_equal(cv_blas_core_rank(NULL), 0);
}

static void test_best(void **state) {
    (void)state;
    cv_cpu_features f = {0};
    assert_null(cv_blas_best_core(&f));
    f.avx2_fma = 1;
    assert_string_equal(cv_blas_best_core(&f), "Haswell");
    f.amd = 1;
    assert_string_equal(cv_blas_best_core(&f), "Zen");
    f.avx512 = 1;
    assert_string_equal(cv_blas_best_core(&f), "SkylakeX");
    f.avx512_bf16 = 1;
    assert_string_equal(cv_blas_best_core(&f), "Cooperlake");
}

static void test_upgrade(void **state) {
    (void)state;
    /* the unknown-CPU case of the issue: generic kernel on an AVX-512 BF16 CPU */
    assert_string_equal(cv_blas_upgrade("Prescott", 0, "Cooperlake"), "Cooperlake");
    assert_string_equal(cv_blas_upgrade("SkylakeX", 0, "Cooperlake"), "Cooperlake");
    assert_string_equal(cv_blas_upgrade("Core2", 0, "Haswell"), "Haswell");
    /* already the best, or better than CPUID says: keep */
    assert_null(cv_blas_upgrade("Cooperlake", 0, "Cooperlake"));
    assert_null(cv_blas_upgrade("Zen", 0, "Haswell"));
    /* the user's choice wins, even a slow one */
    assert_null(cv_blas_upgrade("Prescott", 1, "Cooperlake"));
    /* no vector kernel for this CPU */
    assert_null(cv_blas_upgrade("Prescott", 0, NULL));
}

/* CPUID as this process sees it agrees with the kernel's view in /proc/cpuinfo. */
static void test_features_match_cpuinfo(void **state) {
    (void)state;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) skip();
    char line[8192];
    int avx2 = 0, fma = 0, f512 = 0, bw = 0, dq = 0, vl = 0, cd = 0, bf16 = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0) {
            for (char *t = strtok(strchr(line, ':') + 1, " \n"); t; t = strtok(NULL, " \n")) {
                avx2 |= !strcmp(t, "avx2"), fma |= !strcmp(t, "fma"), f512 |= !strcmp(t, "avx512f");
                bw |= !strcmp(t, "avx512bw"), dq |= !strcmp(t, "avx512dq"), vl |= !strcmp(t, "avx512vl");
                cd |= !strcmp(t, "avx512cd"), bf16 |= !strcmp(t, "avx512_bf16");
            }
            break;
        }
    fclose(f);
    cv_cpu_features c;
    cv_cpu_features_get(&c);
    print_message("cpu: avx2_fma=%d avx512=%d avx512_bf16=%d amd=%d -> best %s\n", c.avx2_fma, c.avx512,
                  c.avx512_bf16, c.amd, cv_blas_best_core(&c) ? cv_blas_best_core(&c) : "none");
    assert_int_equal(c.avx2_fma, avx2 && fma);
    assert_int_equal(c.avx512, f512 && bw && dq && vl && cd);
    assert_int_equal(c.avx512_bf16, c.avx512 && bf16);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank),
        cmocka_unit_test(test_best),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_features_match_cpuinfo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
