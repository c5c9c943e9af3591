#include "console.h"

#include <stdio.h>
#include <sys/time.h>
#include <time.h>

static void print_time(FILE *f) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  fprintf(f, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
          tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

void cli_log_line(int timestamped, const char *prefix, const char *msg) {
  flockfile(stderr);
  if (timestamped)
    print_time(stderr);
  fprintf(stderr, "%s%s\n", prefix != NULL ? prefix : "", msg);
  funlockfile(stderr);
}
