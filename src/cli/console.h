/* Lines for humans on stderr, the same for every subcommand (console.c). */
#ifndef SJ_CLI_CONSOLE_H
#define SJ_CLI_CONSOLE_H

/* Writes "TIME PREFIXmsg\n" (TIME as ISO-8601 UTC with milliseconds, when
 * timestamped; prefix may be NULL) in one go under the stdio lock, so lines
 * from several threads never interleave. */
void cli_log_line(int timestamped, const char *prefix, const char *msg);

#endif
