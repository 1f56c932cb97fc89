/* stamp.h: the model stamp of a store (issue 24): the model's id, its revision (the SHA-256 of
 * its weights) and the text source (the column or template embedded), recorded in the store's
 * meta and carried by every row or point (sink.h). A session that finds another stamp recorded
 * refuses to start, naming cdcvec migrate; a store with none recorded (an earlier version's)
 * is adopted: stamped with the running one, with a warning. */
#ifndef CV_STAMP_H
#define CV_STAMP_H

#include "../common/cv_err.h"
#include "../sink/sink.h"

struct cv_sync;

/* Before the store is opened: the model (id, and revision when both are known) and the text
 * source recorded in m must be the session's; else logs event=model_changed or
 * event=text_source_changed with both values and the fix, sets the session's fault (config,
 * permanent) and returns CV_ERR_UNSUPPORTED. A text column renamed since (the same column
 * number) is the same source. Stages without a model (capture) check nothing. */
cv_err cv_stamp_check(struct cv_sync *s, const cv_sink_meta *m);

/* After the store is opened, on a replication session: a store whose meta records no model (or
 * no revision where the running model has one) or no text source gets the running stamp
 * (event=stamp_adopted, a warning). m is updated to what was recorded. */
cv_err cv_stamp_adopt(struct cv_sync *s, cv_sink_meta *m);

#endif
