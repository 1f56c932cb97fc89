/* kafka_mock_broker.c: a standalone Kafka broker for tests, over librdkafka's mock cluster.
 *
 *   kafka_mock_broker [--brokers N] [--topic NAME:PARTITIONS ...]
 *
 * Prints one line `BOOTSTRAP host:port,...` on stdout, then reads commands on stdin, one per
 * line, and answers each with one line, `ok` or `error <why>`:
 *   topic NAME PARTITIONS          create a topic (replication 1)
 *   down ID | up ID                broker ID (1..N, or -1 for all) refuses / accepts connections
 *   errors APIKEY COUNT ERR...     the next COUNT requests of APIKEY fail with ERR... in order
 *                                  (APIKEY a number or a name: Produce, Fetch, OffsetCommit...;
 *                                  ERR a librdkafka name: REQUEST_TIMED_OUT, _TRANSPORT, ...
 *                                  or a number; fewer ERRs than COUNT repeat the last)
 *   rtt ID MS                      broker ID (or -1) answers MS milliseconds later
 *   leader TOPIC PARTITION ID      moves the partition's leader (-1: leader-less)
 *   coordinator group|txn KEY ID   moves a group's / transaction's coordinator
 *   quit                           exit 0
 * Exits 0 on stdin EOF, `quit`, SIGTERM or SIGINT. The cluster runs on librdkafka's own
 * threads; this program only hosts it (a producer handle with no bootstrap servers). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/cv_buf.h"

static volatile sig_atomic_t g_stop;

/* Signal handler: only sets the flag the main loop checks. */
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

/* Kafka protocol ApiKeys by name (rdkafka_protocol.h is not shipped by Debian's package). */
static const struct {
    const char *name;
    int key;
} api_keys[] = {
    {"Produce", 0},          {"Fetch", 1},           {"ListOffsets", 2},
    {"Metadata", 3},         {"OffsetCommit", 8},    {"OffsetFetch", 9},
    {"FindCoordinator", 10}, {"JoinGroup", 11},      {"Heartbeat", 12},
    {"LeaveGroup", 13},      {"SyncGroup", 14},      {"DescribeGroups", 15},
    {"ListGroups", 16},      {"ApiVersion", 18},     {"ApiVersions", 18},
    {"CreateTopics", 19},    {"InitProducerId", 22}, {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25}, {"EndTxn", 26},         {"TxnOffsetCommit", 28},
};

/* Parses a whole decimal integer; returns 0 on success. */
static int parse_long(const char *s, long *out) {
    char *end;
    if (!s || !*s) return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* ApiKey from a number or a name (case-insensitive); -1 when unknown. */
static int api_key_of(const char *s) {
    long v;
    if (parse_long(s, &v) == 0) return v >= 0 && v < 100 ? (int)v : -1;
    for (size_t i = 0; i < sizeof api_keys / sizeof api_keys[0]; i++)
        if (strcasecmp(s, api_keys[i].name) == 0) return api_keys[i].key;
    return -1;
}

/* librdkafka error code from its name (as rd_kafka_err2name prints it, with or without the
 * RD_KAFKA_RESP_ERR_ prefix) or a number; returns 0 on success. */
static int err_of(const char *s, rd_kafka_resp_err_t *out) {
    long v;
    if (parse_long(s, &v) == 0) {
        *out = (rd_kafka_resp_err_t)v;
        return 0;
    }
    if (strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0) s += 18;
    const struct rd_kafka_err_desc *descs;
    size_t n;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++)
        if (descs[i].name && strcasecmp(descs[i].name, s) == 0) {
            *out = descs[i].code;
            return 0;
        }
    return -1;
}

/* Splits line in place on blanks into at most max words; returns the count. */
static int split_words(char *line, char **w, int max) {
    int n = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
        if (n == max) return max + 1;
        w[n++] = t;
    }
    return n;
}

/* Applies fn to broker id, or to every broker 1..nbrokers when id is -1. */
static rd_kafka_resp_err_t each_broker(rd_kafka_mock_cluster_t *mc, int nbrokers, long id,
                                       rd_kafka_resp_err_t (*fn)(rd_kafka_mock_cluster_t *, int32_t)) {
    if (id != -1) return fn(mc, (int32_t)id);
    for (int b = 1; b <= nbrokers; b++) {
        rd_kafka_resp_err_t e = fn(mc, b);
        if (e) return e;
    }
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Sets the rtt of broker id, or of all when id is -1. */
static rd_kafka_resp_err_t set_rtt(rd_kafka_mock_cluster_t *mc, int nbrokers, long id, int ms) {
    if (id != -1) return rd_kafka_mock_broker_set_rtt(mc, (int32_t)id, ms);
    for (int b = 1; b <= nbrokers; b++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_broker_set_rtt(mc, b, ms);
        if (e) return e;
    }
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Checks that id names a broker (1..n) or all (-1). */
static int broker_ok(long id, int n) { return id == -1 || (id >= 1 && id <= n); }

/* Runs one command line; writes the answer (without newline) to ans. Returns 1 on quit. */
static int run_command(rd_kafka_mock_cluster_t *mc, int nbrokers, char *line, cv_buf *ans) {
    char *w[260];
    int n = split_words(line, w, 259);
    long a, b, c;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (n == 0) {
        cv_buf_puts(ans, "error empty command");
        return 0;
    }
    if (n > 259) {
        cv_buf_puts(ans, "error too many words");
        return 0;
    }
    const char *cmd = w[0];
    if (strcmp(cmd, "quit") == 0) {
        cv_buf_puts(ans, "ok");
        return 1;
    } else if (strcmp(cmd, "topic") == 0) {
        if (n != 3 || parse_long(w[2], &a) || a < 1) {
            cv_buf_puts(ans, "error usage: topic NAME PARTITIONS (PARTITIONS >= 1)");
            return 0;
        }
        e = rd_kafka_mock_topic_create(mc, w[1], (int)a, 1);
    } else if (strcmp(cmd, "down") == 0 || strcmp(cmd, "up") == 0) {
        if (n != 2 || parse_long(w[1], &a) || !broker_ok(a, nbrokers)) {
            cv_buf_printf(ans, "error usage: %s ID (1..%d or -1 for all)", cmd, nbrokers);
            return 0;
        }
        e = each_broker(mc, nbrokers, a,
                        cmd[0] == 'd' ? rd_kafka_mock_broker_set_down : rd_kafka_mock_broker_set_up);
    } else if (strcmp(cmd, "rtt") == 0) {
        if (n != 3 || parse_long(w[1], &a) || !broker_ok(a, nbrokers) || parse_long(w[2], &b) || b < 0 ||
            b > 3600000) {
            cv_buf_printf(ans, "error usage: rtt ID MS (ID 1..%d or -1, MS >= 0)", nbrokers);
            return 0;
        }
        e = set_rtt(mc, nbrokers, a, (int)b);
    } else if (strcmp(cmd, "leader") == 0) {
        if (n != 4 || parse_long(w[2], &a) || a < 0 || parse_long(w[3], &b) || !broker_ok(b, nbrokers)) {
            cv_buf_printf(ans, "error usage: leader TOPIC PARTITION ID (ID 1..%d or -1)", nbrokers);
            return 0;
        }
        e = rd_kafka_mock_partition_set_leader(mc, w[1], (int32_t)a, (int32_t)b);
    } else if (strcmp(cmd, "coordinator") == 0) {
        if (n != 4 || (strcmp(w[1], "group") && strcmp(w[1], "txn")) || parse_long(w[3], &c) || c < 1 ||
            c > nbrokers) {
            cv_buf_printf(ans, "error usage: coordinator group|txn KEY ID (ID 1..%d)", nbrokers);
            return 0;
        }
        e = rd_kafka_mock_coordinator_set(mc, w[1], w[2], (int32_t)c);
    } else if (strcmp(cmd, "errors") == 0) {
        int key = n >= 2 ? api_key_of(w[1]) : -1;
        if (n < 4 || key < 0 || parse_long(w[2], &a) || a < 1 || a > 100000) {
            cv_buf_puts(ans, "error usage: errors APIKEY COUNT ERRNAME... (APIKEY a number or a name "
                             "such as Produce, Fetch, OffsetCommit)");
            return 0;
        }
        rd_kafka_resp_err_t *errs = calloc((size_t)a, sizeof *errs);
        if (!errs) {
            cv_buf_puts(ans, "error out of memory");
            return 0;
        }
        for (long i = 0; i < a; i++) {
            const char *name = w[3 + (i < n - 3 ? i : n - 4)];
            if (err_of(name, &errs[i])) {
                cv_buf_printf(ans,
                              "error unknown error name '%s' (use rd_kafka_err2name's names, "
                              "e.g. REQUEST_TIMED_OUT, _TRANSPORT)",
                              name);
                free(errs);
                return 0;
            }
        }
        rd_kafka_mock_push_request_errors_array(mc, (int16_t)key, (size_t)a, errs);
        free(errs);
    } else {
        cv_buf_printf(ans,
                      "error unknown command '%s' (topic, down, up, errors, rtt, leader, "
                      "coordinator, quit)",
                      cmd);
        return 0;
    }
    if (e)
        cv_buf_printf(ans, "error %s: %s", rd_kafka_err2name(e), rd_kafka_err2str(e));
    else
        cv_buf_puts(ans, "ok");
    return 0;
}

/* Prints the usage line to stderr and returns 2. */
static int usage(void) {
    fprintf(stderr, "usage: kafka_mock_broker [--brokers N] [--topic NAME:PARTITIONS ...]\n");
    return 2;
}

int main(int argc, char **argv) {
    long nbrokers = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            if (parse_long(argv[++i], &nbrokers) || nbrokers < 1 || nbrokers > 100) return usage();
        } else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc) {
            i++; /* created below, once the cluster exists */
        } else {
            return usage();
        }
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "kafka_mock_broker: rd_kafka_new: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)nbrokers);
    if (!mc) {
        fprintf(stderr, "kafka_mock_broker: rd_kafka_mock_cluster_new failed\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--topic") != 0) continue;
        const char *spec = argv[++i], *colon = strrchr(spec, ':');
        long parts;
        if (!colon || colon == spec || parse_long(colon + 1, &parts) || parts < 1) {
            fprintf(stderr, "kafka_mock_broker: --topic wants NAME:PARTITIONS, got '%s'\n", spec);
            return 2;
        }
        char *name = strndup(spec, (size_t)(colon - spec));
        rd_kafka_resp_err_t e =
            name ? rd_kafka_mock_topic_create(mc, name, (int)parts, 1) : RD_KAFKA_RESP_ERR__FAIL;
        free(name);
        if (e) {
            fprintf(stderr, "kafka_mock_broker: topic '%s': %s\n", spec, rd_kafka_err2str(e));
            return 1;
        }
    }
    printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    cv_buf in = {0};
    size_t start = 0;
    int quit = 0;
    while (!g_stop && !quit) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int r = poll(&p, 1, 200);
        if (r < 0 && errno != EINTR) break;
        if (r <= 0) continue;
        char chunk[4096]; /* a read chunk; lines are gathered in the growable buffer */
        ssize_t got = read(0, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break; /* EOF or error */
        cv_buf_put(&in, chunk, (size_t)got);
        if (in.oom) break;
        char *nl;
        while (!quit && (nl = memchr(in.p + start, '\n', in.len - start))) {
            *nl = '\0';
            cv_buf ans = {0};
            quit = run_command(mc, (int)nbrokers, in.p + start, &ans);
            printf("%s\n", ans.oom ? "error out of memory" : ans.p);
            fflush(stdout);
            cv_buf_free(&ans);
            start = (size_t)(nl - in.p) + 1;
        }
        if (start == in.len) in.len = start = 0;
    }
    cv_buf_free(&in);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
