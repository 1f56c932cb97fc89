/* client.c: kafka:// URLs, user properties, an acknowledged producer, a caller-committed
 * consumer (client.h). */
#define _POSIX_C_SOURCE 200809L
#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_conf.h"
#include "../common/cv_log.h"
#include "../common/cv_signal.h"
#include "../common/cv_time.h"

/* ---- URLs -------------------------------------------------------------------------------- */

cv_err cv_kafka_url_parse(const char *url, cv_kafka_url *u, char *err, size_t errlen) {
    memset(u, 0, sizeof *u);
    const char *pre = "kafka://";
    if (!url || strncmp(url, pre, strlen(pre)) != 0) {
        snprintf(err, errlen, "'%s' is not a kafka:// URL (expected kafka://host:port/topic)",
                 url ? url : "");
        return CV_ERR_FORMAT;
    }
    const char *h = url + strlen(pre), *slash = strchr(h, '/');
    if (!slash || slash == h) {
        snprintf(err, errlen, "'%s': expected kafka://host:port[,host:port]/topic", url);
        return CV_ERR_FORMAT;
    }
    if (memchr(h, '@', (size_t)(slash - h))) {
        snprintf(err, errlen,
                 "'%s': credentials do not belong in a URL on the command line; set "
                 "CDCVEC_KAFKA_SASL_USERNAME and CDCVEC_KAFKA_SASL_PASSWORD (or *_FILE)",
                 url);
        return CV_ERR_FORMAT;
    }
    const char *topic = slash + 1;
    size_t tl = strlen(topic);
    if (tl == 0 || tl > 249) {
        snprintf(err, errlen, "'%s': the topic name must have 1 to 249 characters", url);
        return CV_ERR_FORMAT;
    }
    for (size_t i = 0; i < tl; i++)
        if (!(isalnum((unsigned char)topic[i]) || topic[i] == '.' || topic[i] == '_' || topic[i] == '-')) {
            snprintf(err, errlen, "'%s': topic names hold only [a-zA-Z0-9._-] (found '%c')", url, topic[i]);
            return CV_ERR_FORMAT;
        }
    for (const char *p = h; p < slash; p++)
        if (isspace((unsigned char)*p)) {
            snprintf(err, errlen, "'%s': spaces in the broker list", url);
            return CV_ERR_FORMAT;
        }
    u->bootstrap = strndup(h, (size_t)(slash - h));
    u->topic = strdup(topic);
    if (!u->bootstrap || !u->topic) {
        cv_kafka_url_free(u);
        return CV_ERR_NOMEM;
    }
    return CV_OK;
}

void cv_kafka_url_free(cv_kafka_url *u) {
    free(u->bootstrap), free(u->topic);
    memset(u, 0, sizeof *u);
}

/* ---- properties -------------------------------------------------------------------------- */

static const char *const SECRET[] = {"sasl.password",
                                     "ssl.key.password",
                                     "ssl.keystore.password",
                                     "sasl.oauthbearer.client.secret",
                                     "ssl.key.pem",
                                     "sasl.oauthbearer.config",
                                     NULL};

static int is_secret(const char *k) {
    for (int i = 0; SECRET[i]; i++)
        if (strcmp(k, SECRET[i]) == 0) return 1;
    return 0;
}

static void props_add(cv_kafka_props *p, const char *k, size_t kl, const char *v) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 8;
        p->key = realloc(p->key, sizeof(char *) * (size_t)p->cap);
        p->val = realloc(p->val, sizeof(char *) * (size_t)p->cap);
        CV_ASSERT(p->key && p->val);
    }
    p->key[p->n] = strndup(k, kl);
    p->val[p->n] = strdup(v);
    CV_ASSERT(p->key[p->n] && p->val[p->n]);
    p->n++;
}

/* "key=value" into p; -1 after printing what is wrong (where: the option or file:line). */
static int props_add_kv(cv_kafka_props *p, const char *kv, const char *where, int from_argv) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        fprintf(stderr, "cdcvec: %s: expected a librdkafka property as key=value, got '%s'\n", where, kv);
        return -1;
    }
    size_t kl = (size_t)(eq - kv);
    char *k = strndup(kv, kl);
    CV_ASSERT(k);
    int bad = from_argv && is_secret(k);
    if (bad)
        fprintf(stderr,
                "cdcvec: %s: '%s' is a secret and is not taken from the command line (it would show in ps "
                "and shell history); set it in the environment (CDCVEC_KAFKA_* or *_FILE, see docs/KAFKA.md) "
                "or in a --kafka-config file\n",
                where, k);
    free(k);
    if (bad) return -1;
    props_add(p, kv, kl, eq + 1);
    return 0;
}

int cv_kafka_props_from_argv(cv_kafka_props *p, int *argc, char **argv) {
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *kv = NULL;
        if (strcmp(argv[i], "-X") == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "cdcvec: -X needs key=value (a librdkafka property)\n");
                return -1;
            }
            kv = argv[++i];
        } else if (strncmp(argv[i], "-X", 2) == 0) {
            kv = argv[i] + 2;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        if (props_add_kv(p, kv, "-X", 1)) return -1;
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

int cv_kafka_props_from_file(cv_kafka_props *p, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cdcvec: --kafka-config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    ssize_t len;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s || *s == '#' || *s == '!') continue;
        char where[64 + 32];
        snprintf(where, sizeof where, "--kafka-config line %d", lineno);
        rc = props_add_kv(p, s, where, 0);
    }
    free(line);
    fclose(f);
    return rc;
}

int cv_kafka_props_from_env(cv_kafka_props *p) {
    static const char *const map[][2] = {
        {"CDCVEC_KAFKA_SASL_USERNAME", "sasl.username"},
        {"CDCVEC_KAFKA_SASL_PASSWORD", "sasl.password"},
        {"CDCVEC_KAFKA_SSL_KEY_PASSWORD", "ssl.key.password"},
        {"CDCVEC_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET", "sasl.oauthbearer.client.secret"}};
    int bad = 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        const char *err;
        char *v = cv_conf_secret(map[i][0], &err);
        if (err) {
            char fname[96];
            snprintf(fname, sizeof fname, "%s_FILE", map[i][0]);
            fprintf(stderr, "cdcvec: %s=%s: %s\n", fname, getenv(fname), err);
            bad = 1;
        }
        if (v) props_add(p, map[i][1], strlen(map[i][1]), v);
        free(v);
    }
    return bad ? -1 : 0;
}

void cv_kafka_props_free(cv_kafka_props *p) {
    for (int i = 0; i < p->n; i++)
        free(p->key[i]), free(p->val[i]);
    free(p->key), free(p->val);
    memset(p, 0, sizeof *p);
}

/* A conf: bootstrap, defaults (k, v, ..., NULL), the user's props, then the locked settings,
 * which the user may not change (an attempt is refused with why). NULL after logging. */
static rd_kafka_conf_t *make_conf(const char *bootstrap, const char *const *defaults,
                                  const cv_kafka_props *props, const char *const *locked,
                                  const char *why_locked) {
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char err[512];
    for (int i = 0; defaults[i]; i += 2)
        if (rd_kafka_conf_set(c, defaults[i], defaults[i + 1], err, sizeof err) != RD_KAFKA_CONF_OK) {
            cv_error("event=kafka_config property=%s error=\"%s\"", defaults[i], err);
            rd_kafka_conf_destroy(c);
            return NULL;
        }
    for (int i = 0; props && i < props->n; i++) {
        for (int j = 0; locked[j]; j += 2)
            if (strcmp(props->key[i], locked[j]) == 0 && strcmp(props->val[i], locked[j + 1]) != 0) {
                cv_error(
                    "event=kafka_config property=%s error=\"cdcvec sets %s=%s: %s\" fix=\"remove -X %s\"",
                    props->key[i], locked[j], locked[j + 1], why_locked, props->key[i]);
                rd_kafka_conf_destroy(c);
                return NULL;
            }
        if (rd_kafka_conf_set(c, props->key[i], props->val[i], err, sizeof err) != RD_KAFKA_CONF_OK) {
            cv_error("event=kafka_config property=%s error=\"%s\" fix=\"see librdkafka's CONFIGURATION.md\"",
                     props->key[i], err);
            rd_kafka_conf_destroy(c);
            return NULL;
        }
    }
    for (int j = 0; locked[j]; j += 2)
        if (rd_kafka_conf_set(c, locked[j], locked[j + 1], err, sizeof err) != RD_KAFKA_CONF_OK) {
            cv_error("event=kafka_config property=%s error=\"%s\"", locked[j], err);
            rd_kafka_conf_destroy(c);
            return NULL;
        }
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof err) != RD_KAFKA_CONF_OK) {
        cv_error("event=kafka_config property=bootstrap.servers error=\"%s\"", err);
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    return c;
}

/* librdkafka's own errors (brokers down, authentication): one log line each, counted. */
static void log_error(rd_kafka_t *rk, int err, const char *reason, cv_kafka_metrics *m) {
    rd_kafka_resp_err_t e = (rd_kafka_resp_err_t)err;
    const char *kind = e == RD_KAFKA_RESP_ERR__AUTHENTICATION ? "authentication"
                       : e == RD_KAFKA_RESP_ERR__FATAL        ? "fatal"
                       : cv_kafka_retriable(e)                ? "broker"
                                                              : "other";
    if (m) cv_kafka_metrics_error(m, kind);
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_fatal_error(rk, buf, sizeof buf);
        cv_error("event=kafka_error kind=fatal client=%s error=\"%s\"", rd_kafka_name(rk), buf);
    } else {
        cv_warn("event=kafka_error kind=%s client=%s code=%s error=\"%s\"", kind, rd_kafka_name(rk),
                rd_kafka_err2name(e), reason);
    }
}

/* librdkafka's own log lines, in ours (its errors also reach the error callback: debug here) */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)level;
    cv_debug("event=librdkafka client=%s facility=%s message=\"%s\"", rd_kafka_name(rk), fac, buf);
}

/* Statistics of a client: is any broker (a real one: nodeid >= 0, not a bootstrap address)
 * UP? Sets the stage's broker state. */
static void broker_state(const char *json, size_t len, cv_kafka_metrics *m) {
    if (!m) return;
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *brokers = json_object_get(root, "brokers");
    if (!json_is_object(brokers)) {
        json_decref(root);
        return;
    }
    int up = 0;
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b) {
        json_t *id = json_object_get(b, "nodeid");
        const char *st = json_string_value(json_object_get(b, "state"));
        if (json_is_integer(id) && json_integer_value(id) >= 0 && st && !strcmp(st, "UP")) up = 1;
    }
    json_decref(root);
    if (up)
        m->down_since = 0;
    else if (m->down_since == 0)
        m->down_since = cv_now();
    cv_metric_set(m->broker_up, up);
}

static int on_consumer_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    (void)rk;
    broker_state(json, len, opaque);
    return 0; /* librdkafka frees json */
}

double cv_kafka_broker_down_s(void *arg) {
    cv_kafka_metrics *m = arg;
    double since = m ? m->down_since : 0;
    return since > 0 ? cv_now() - since : 0;
}

void cv_kafka_broker_watch(void *arg, double bound_s) {
    cv_kafka_metrics *m = arg;
    double down = cv_kafka_broker_down_s(m);
    if (bound_s > 0 && down > bound_s && !m->down_logged) {
        cv_error(
            "event=kafka_brokers_unreachable stage=%s down_seconds=%.0f bound_seconds=%g error=\"no Kafka "
            "broker has been reachable for %.0f s: nothing moves through this stage\" fix=\"start the "
            "brokers or fix the kafka:// address (the kafka_error lines above name it); this stage "
            "reconnects by itself\"",
            m->stage, down, bound_s, down);
        m->down_logged = 1;
    } else if (down == 0 && m->down_logged) {
        cv_info("event=kafka_brokers_back stage=%s", m->stage);
        m->down_logged = 0;
    }
}

/* error_cb of a consumer: opaque is its metrics (or NULL) */
static void on_consumer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    log_error(rk, err, reason, opaque);
}

int cv_kafka_retriable(rd_kafka_resp_err_t e) {
    switch (e) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR__WAIT_COORD: /* a commit while the group coordinator is away (broker restart) */
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST: return 1;
    default: return 0;
    }
}

/* ---- metrics ----------------------------------------------------------------------------- */

void cv_kafka_metrics_init(cv_kafka_metrics *m, cv_metrics *reg, const char *stage) {
    char l[96];
    memset(m, 0, sizeof *m);
    m->reg = reg, m->stage = stage;
    snprintf(l, sizeof l, "stage=\"%s\",direction=\"in\"", stage);
    m->in = cv_metrics_counter(reg, "cdcvec_kafka_messages_total",
                               "Kafka messages consumed (in) or produced (out).", l);
    snprintf(l, sizeof l, "stage=\"%s\",direction=\"out\"", stage);
    m->out = cv_metrics_counter(reg, "cdcvec_kafka_messages_total",
                                "Kafka messages consumed (in) or produced (out).", l);
    snprintf(l, sizeof l, "stage=\"%s\"", stage);
    m->lag = cv_metrics_gauge(
        reg, "cdcvec_kafka_consumer_lag_messages",
        "Messages in the assigned partitions not yet consumed (high watermark - position).", l);
    static const double b[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30};
    m->produce_latency = cv_metrics_histogram(reg, "cdcvec_kafka_produce_latency_seconds",
                                              "From produce() to the broker's acknowledgement.", l, b, 13);
    m->broker_up =
        cv_metrics_gauge(reg, "cdcvec_kafka_broker_up",
                         "1 while this stage's Kafka clients see a broker up (librdkafka statistics).", l);
    cv_metric_set(m->broker_up, 1);
}

void cv_kafka_metrics_error(cv_kafka_metrics *m, const char *kind) {
    if (!m || !m->reg) return;
    char l[128];
    snprintf(l, sizeof l, "stage=\"%s\",kind=\"%s\"", m->stage, kind);
    /* the registry returns the existing series for a name and labels seen before */
    cv_metric_add(
        cv_metrics_counter(m->reg, "cdcvec_kafka_errors_total", "Kafka errors by stage and kind.", l), 1);
}

/* ---- producer ---------------------------------------------------------------------------- */

struct cv_kafka_producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    char *topic;
    cv_kafka_metrics *m;
    long failed; /* delivery failures since the last wait */
    rd_kafka_resp_err_t last_err;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    cv_kafka_producer *p = opaque;
    if (msg->err) {
        if (p->failed++ == 0)
            cv_warn("event=kafka_delivery_failed topic=%s partition=%d error=\"%s\"", p->topic,
                    msg->partition, rd_kafka_err2str(msg->err));
        p->last_err = msg->err;
        cv_kafka_metrics_error(p->m, "delivery");
        return;
    }
    if (p->m) {
        cv_metric_add(p->m->out, 1);
        int64_t us = rd_kafka_message_latency(msg);
        if (us >= 0) cv_metric_observe(p->m->produce_latency, (double)us / 1e6);
    }
}

static int on_producer_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    (void)rk;
    broker_state(json, len, ((cv_kafka_producer *)opaque)->m);
    return 0;
}

/* error_cb of a producer: opaque is the cv_kafka_producer */
static void on_producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    log_error(rk, err, reason, ((cv_kafka_producer *)opaque)->m);
}

cv_err cv_kafka_producer_new(const char *bootstrap, const char *topic, const cv_kafka_props *props,
                             cv_kafka_metrics *m, cv_kafka_producer **out) {
    static const char *const defaults[] = {"linger.ms",
                                           "5",
                                           "client.id",
                                           "cdcvec",
                                           "compression.codec",
                                           "lz4",
                                           "message.timeout.ms",
                                           "300000",
                                           "statistics.interval.ms",
                                           "1000",
                                           NULL};
    static const char *const locked[] = {"enable.idempotence", "true", "acks", "all", NULL};
    rd_kafka_conf_t *c = make_conf(
        bootstrap, defaults, props, locked,
        "each source position is confirmed only once every message up to it is in the log, in order");
    if (!c) return CV_ERR_ARG;
    cv_kafka_producer *p = calloc(1, sizeof *p);
    CV_ASSERT(p);
    p->m = m;
    p->topic = strdup(topic);
    rd_kafka_conf_set_opaque(c, p);
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_conf_set_error_cb(c, on_producer_error);
    rd_kafka_conf_set_stats_cb(c, on_producer_stats);
    rd_kafka_conf_set_log_cb(c, on_log);
    char err[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!p->rk) {
        cv_error("event=kafka_producer error=\"%s\"", err);
        rd_kafka_conf_destroy(c);
        free(p->topic), free(p);
        return CV_ERR_ARG;
    }
    p->rkt = rd_kafka_topic_new(p->rk, topic, NULL);
    CV_ASSERT(p->rkt);
    *out = p;
    return CV_OK;
}

void cv_kafka_producer_free(cv_kafka_producer *p) {
    if (!p) return;
    rd_kafka_flush(p->rk, cv_stopping() ? 500 : 5000); /* what is in flight gets its chance */
    rd_kafka_topic_destroy(p->rkt);
    rd_kafka_destroy(p->rk);
    free(p->topic);
    free(p);
}

void cv_kafka_producer_poll(cv_kafka_producer *p) {
    if (p) rd_kafka_poll(p->rk, 0);
}

/* The partition count of topic on rk (0 while the topic is being created). */
static cv_err partitions_of(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int *n) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 1000); /* short: a stop is noticed */
    if (e) {
        cv_warn("event=kafka_metadata topic=%s error=\"%s\"", rd_kafka_topic_name(rkt), rd_kafka_err2str(e));
        return cv_kafka_retriable(e) ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    }
    *n = 0;
    cv_err r = CV_OK;
    if (md->topic_cnt == 1) {
        if (md->topics[0].err && md->topics[0].err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE &&
            md->topics[0].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            cv_error("event=kafka_metadata topic=%s error=\"%s\"", rd_kafka_topic_name(rkt),
                     rd_kafka_err2str(md->topics[0].err));
            r = CV_ERR_UNSUPPORTED;
        } else {
            *n = md->topics[0].partition_cnt;
        }
    }
    rd_kafka_metadata_destroy(md);
    return r;
}

cv_err cv_kafka_producer_partitions(cv_kafka_producer *p, int *n) {
    for (int attempt = 0; attempt < 250 && !cv_stopping(); attempt++) {
        cv_err e = partitions_of(p->rk, p->rkt, n);
        if (e == CV_ERR_UNSUPPORTED) return e;
        if (!e && *n > 0) return CV_OK;
        rd_kafka_poll(p->rk, 200);
    }
    cv_error(
        "event=kafka_metadata topic=%s error=\"the topic has no partitions (not created?)\" fix=\"create "
        "the topic, or let the brokers auto-create topics\"",
        p->topic);
    return CV_ERR_TIMEOUT;
}

cv_err cv_kafka_produce(cv_kafka_producer *p, int partition, const void *key, size_t klen, const void *val,
                        size_t vlen) {
    for (;;) {
        if (rd_kafka_produce(p->rkt, partition < 0 ? RD_KAFKA_PARTITION_UA : partition, RD_KAFKA_MSG_F_COPY,
                             (void *)val, vlen, key, klen, NULL) == 0)
            break;
        rd_kafka_resp_err_t e = rd_kafka_last_error();
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            cv_error("event=kafka_produce topic=%s error=\"%s\"", p->topic, rd_kafka_err2str(e));
            cv_kafka_metrics_error(p->m, "produce");
            return e == RD_KAFKA_RESP_ERR__FATAL || !cv_kafka_retriable(e) ? CV_ERR_UNSUPPORTED
                                                                           : CV_ERR_TIMEOUT;
        }
        rd_kafka_poll(p->rk, 50); /* the local queue is full: let deliveries drain it */
    }
    rd_kafka_poll(p->rk, 0);
    return CV_OK;
}

cv_err cv_kafka_producer_wait(cv_kafka_producer *p, volatile sig_atomic_t *stop) {
    while (rd_kafka_outq_len(p->rk) > 0) {
        rd_kafka_flush(p->rk, 100);
        char buf[512];
        if (rd_kafka_fatal_error(p->rk, buf, sizeof buf)) {
            cv_error("event=kafka_producer_fatal topic=%s error=\"%s\"", p->topic, buf);
            return CV_ERR_TIMEOUT; /* the caller starts over with a new producer */
        }
        if (stop && *stop && rd_kafka_outq_len(p->rk) > 0) return CV_ERR_SHUTDOWN;
    }
    rd_kafka_poll(p->rk, 0);
    if (p->failed) {
        cv_warn("event=kafka_batch_not_acknowledged topic=%s failed=%ld error=\"%s\" note=\"sent again\"",
                p->topic, p->failed, rd_kafka_err2str(p->last_err));
        p->failed = 0;
        return CV_ERR_TIMEOUT;
    }
    return CV_OK;
}

/* ---- consumer ---------------------------------------------------------------------------- */

cv_err cv_kafka_consumer_new(const char *bootstrap, const char *group, const cv_kafka_props *props,
                             cv_kafka_metrics *m, rd_kafka_t **out) {
    /* a member that died (kill -9) is noticed in seconds, not minutes: librdkafka's defaults
     * (45 s session, 300 s poll interval, which is also how long a rebalance waits for it) */
    static const char *const defaults[] = {"auto.offset.reset",
                                           "earliest",
                                           "client.id",
                                           "cdcvec",
                                           "enable.partition.eof",
                                           "false",
                                           "session.timeout.ms",
                                           "10000",
                                           "heartbeat.interval.ms",
                                           "1000",
                                           "max.poll.interval.ms",
                                           "60000",
                                           "statistics.interval.ms",
                                           "1000",
                                           NULL};
    const char *locked[] = {
        "enable.auto.commit", "false", "enable.auto.offset.store", "false", "group.id", group, NULL};
    rd_kafka_conf_t *c = make_conf(bootstrap, defaults, props, locked,
                                   "offsets are committed only after the output of a message is safe");
    if (!c) return CV_ERR_ARG;
    rd_kafka_conf_set_opaque(c, m);
    rd_kafka_conf_set_error_cb(c, on_consumer_error);
    rd_kafka_conf_set_stats_cb(c, on_consumer_stats);
    rd_kafka_conf_set_log_cb(c, on_log);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk) {
        cv_error("event=kafka_consumer error=\"%s\"", err);
        rd_kafka_conf_destroy(c);
        return CV_ERR_ARG;
    }
    rd_kafka_poll_set_consumer(rk);
    *out = rk;
    return CV_OK;
}

double cv_kafka_consumer_lag(rd_kafka_t *rk) {
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(rk, &a) || !a) return -1;
    rd_kafka_position(rk, a);
    double lag = 0;
    int known = 0;
    for (int i = 0; i < a->cnt; i++) {
        int64_t lo, hi;
        if (rd_kafka_get_watermark_offsets(rk, a->elems[i].topic, a->elems[i].partition, &lo, &hi)) continue;
        int64_t pos = a->elems[i].offset >= 0 ? a->elems[i].offset : lo;
        if (hi >= 0 && pos >= 0) lag += (double)(hi > pos ? hi - pos : 0), known++;
    }
    rd_kafka_topic_partition_list_destroy(a);
    return known ? lag : -1;
}
