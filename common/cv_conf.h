/* cv_conf.h: one table of configuration properties per command. Each property is an
 * option (--name VALUE or --name=VALUE), an environment variable, a type with a range, a
 * default and a line of documentation; usage text and the docs table come from it.
 * Precedence: option > environment > default. Secrets never go in this table: they are
 * read from the environment by the command itself. */
#ifndef CV_CONF_H
#define CV_CONF_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CV_CONF_STR, CV_CONF_INT, CV_CONF_DOUBLE } cv_conf_type;

typedef struct cv_conf_prop {
    const char *name; /* option name without "--" */
    const char *env;  /* environment variable, or NULL */
    cv_conf_type type;
    const char *def; /* default, as text */
    double min, max; /* numbers: inclusive range */
    size_t offset;   /* where the value goes in the target struct: const char *, long or double */
    const char *doc;
} cv_conf_prop;

/* Fills target from defaults, environment and argv[1..]. Positional arguments are not
 * accepted. Returns 0 on success, 1 when --help was printed, 2 after printing an error
 * that names the option or variable and the accepted values. */
int cv_conf_parse(const cv_conf_prop *props, int n, void *target, int argc, char **argv,
                  const char *usage_line);
/* One property from text (source names where it came from in the error: "--name", a file's
 * "path:line:col: key"). 0, or -1 after printing the accepted values. */
int cv_conf_set(const cv_conf_prop *p, void *target, const char *value, const char *source);
void cv_conf_usage(FILE *f, const cv_conf_prop *props, int n, const char *usage_line);
/* The properties as a Markdown table (for docs/). */
void cv_conf_markdown(FILE *f, const cv_conf_prop *props, int n);
/* A secret or setting from the environment: NAME, else the contents of the file NAME_FILE
 * (trailing white space dropped). NULL when neither is set (an empty value counts as unset);
 * NULL with *err set (strerror of the open) when NAME_FILE cannot be read. Caller frees. */
char *cv_conf_secret(const char *name, const char **err);

#ifdef __cplusplus
}
#endif

#endif
