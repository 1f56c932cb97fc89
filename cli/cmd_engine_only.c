/* cmd_engine_only.c: the commands an engine-only build (-DCDCVEC_ENGINE_ONLY=ON, for a bare GPU
 * machine: bench/gpu/README.md) leaves out answer with what to rebuild instead of failing to link. */
#include <stdio.h>

#include "cli.h"

static int left_out(const char *cmd, const char *needs) {
    fprintf(stderr,
            "cdcvec %s: not in this build: it was configured with -DCDCVEC_ENGINE_ONLY=ON (the engine "
            "alone: embed, bench embed%s); %s needs %s: configure without that option (README.md, "
            "Build)\n",
            cmd,
#ifdef CV_NO_BENCH_SERVER
            "",
#else
            ", bench server",
#endif
            cmd, needs);
    return 2;
}

int cv_cmd_serve(int argc, char **argv) {
    (void)argc, (void)argv;
    return left_out("serve", "libmicrohttpd");
}
int cv_cmd_wait(int argc, char **argv) {
    (void)argc, (void)argv;
    return left_out("wait", "libcurl");
}
int cv_cmd_sync(int argc, char **argv, const char *which) {
    (void)argc, (void)argv;
    return left_out(which, "libpq, libcurl and libmicrohttpd");
}
int cv_cmd_kafka(int argc, char **argv, const char *which) {
    (void)argc, (void)argv;
    return left_out(which, "librdkafka and libpq");
}
int cv_bench_sink(int argc, char **argv) {
    (void)argc, (void)argv;
    return left_out("bench sink", "libpq and libcurl");
}
#ifdef CV_NO_BENCH_SERVER
int cv_bench_server(int argc, char **argv) {
    (void)argc, (void)argv;
    return left_out("bench server", "nng (bench/gpu/prepare.sh builds it from Debian's source package)");
}
#endif
