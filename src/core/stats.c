/* Stats as socket_connector's JSON shape. */
#include "sockjoin.h"
#include "strbuf.h"

#include <stdlib.h>
#include <uv.h>
#include <string.h>

typedef struct {
  const sj_peer_t *peer;
  size_t index;
} peer_ref_t;

static int by_host_then_order(const void *x, const void *y) {
  const peer_ref_t *a = x, *b = y;
  int c = strcmp(a->peer->host, b->peer->host);
  if (c != 0)
    return c;
  return a->index < b->index ? -1 : a->index > b->index;
}

/* Writes {"HOST":[{"port":P,"timestamp":"..."},...],...}, grouping sockets by
 * host; sorting keeps this O(n log n) for the many-pairs case. */
static int sockets_json(sj_strbuf_t *sb, const sj_peer_t *peers, size_t n) {
  peer_ref_t *refs = n > 0 ? malloc(n * sizeof *refs) : NULL;
  if (n > 0 && refs == NULL)
    return -1;
  for (size_t i = 0; i < n; i++)
    refs[i] = (peer_ref_t){&peers[i], i};
  if (n > 0)
    qsort(refs, n, sizeof *refs, by_host_then_order);
  sj_strbuf_putc(sb, '{');
  for (size_t i = 0; i < n; i++) {
    int first_of_host = i == 0 || strcmp(refs[i - 1].peer->host, refs[i].peer->host) != 0;
    if (first_of_host) {
      if (i > 0)
        sj_strbuf_printf(sb, "],");
      sj_strbuf_putc(sb, '"');
      sj_strbuf_json_escape(sb, refs[i].peer->host);
      sj_strbuf_printf(sb, "\":[");
    } else {
      sj_strbuf_putc(sb, ',');
    }
    sj_strbuf_printf(sb, "{\"port\":%d,\"timestamp\":\"", refs[i].peer->port);
    sj_strbuf_iso8601(sb, refs[i].peer->timestamp_ms);
    sj_strbuf_printf(sb, "\"}");
  }
  sj_strbuf_printf(sb, n > 0 ? "]}" : "}");
  free(refs);
  return 0;
}

int sj_stats_json(const sj_stats_t *st, char *buf, size_t len) {
  sj_strbuf_t sb;
  sj_strbuf_init(&sb, buf, len);
  sj_strbuf_printf(&sb,
                   "{\"pairs\":%llu,\"bytes_a_to_b\":%llu,\"bytes_b_to_a\":%llu,"
                   "\"sockets_a\":",
                   (unsigned long long)st->pairs, (unsigned long long)st->bytes_a_to_b,
                   (unsigned long long)st->bytes_b_to_a);
  if (sockets_json(&sb, st->sockets_a, st->n_sockets_a) != 0)
    return UV_ENOMEM;
  sj_strbuf_printf(&sb, ",\"sockets_b\":");
  if (sockets_json(&sb, st->sockets_b, st->n_sockets_b) != 0)
    return UV_ENOMEM;
  sj_strbuf_putc(&sb, '}');
  return (int)sb.len;
}
