/* stage_open.c: what the two consuming stages (worker, sink) start on the runtime before their
 * first poll: the runtime with what their outlet asks for, their Kafka metrics, the brokers as
 * a readiness peer, the health monitor, and their dead-letter counter. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>

#include "../common/cv_log.h"
#include "../ingest/sync_impl.h"
#include "client.h"
#include "kafka.h"

int cv_kafka_stage_open(cv_sync *s, const cv_sync_opts *o, const cv_outlet *out, const char *stage,
                        cv_kafka_metrics *km, cv_metric **m_dead) {
    cv_sync_opts so = *o;
    so.outlet = out;
    if (cv_sync_runtime_open(s, &so)) {
        cv_error("event=%s_stopped kind=config error=\"cannot start the runtime (%s, HTTP, metrics): the "
                 "lines above say why\"",
                 stage, out->no_model ? "no model" : "the model or the embedding client");
        return 1;
    }
    cv_kafka_metrics_init(km, s->rt.reg, stage);
    cv_health_peer_add(
        s, &(cv_health_peer){"Kafka broker", stage, cv_kafka_broker_down_s, cv_kafka_broker_watch, km});
    if (cv_health_monitor(s, 0)) return 1;
    cv_buf labels = {0};
    cv_buf_printf(&labels, "stage=\"%s\"", stage);
    *m_dead = cv_metrics_counter(s->rt.reg, "cdcvec_kafka_dead_letters_total",
                                 "Messages sent to the dead-letter topic, with their reason.", labels.p);
    free(labels.p);
    return 0;
}
