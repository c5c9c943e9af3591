/* Numbers on the command line, checked the same way by every subcommand:
 * seconds ("5", "0.25": a millisecond to a year) and counts (decimal, with
 * an optional k/m/g suffix where sizes are meant). Pure. */
#ifndef SJ_CLI_NUMBERS_H
#define SJ_CLI_NUMBERS_H

/* Returns 0 and *out, or -1. */
int cli_parse_seconds(const char *s, double *out);
/* A decimal integer from min to max; with allow_suffix, k, m or g
 * multiplies by 1024, 1024^2 or 1024^3. Returns 0 and *out, or -1. */
int cli_parse_count(const char *s, unsigned long long min, unsigned long long max, int allow_suffix,
                    unsigned long long *out);

#endif
