/* A pair: two ends whose pumps write to each other. It closes when both
 * directions have passed their end of input on, or at once on an error. */
#include "connector_int.h"

#include <stdlib.h>

static void record_peer(sj_peer_log_t *log, const sj_origin_t *origin) {
  if (log->n == log->cap) {
    size_t cap = log->cap == 0 ? 16 : log->cap * 2;
    sj_origin_t *items =
        cap <= SJ_STATS_SOCKETS_MAX ? realloc(log->items, cap * sizeof *items) : NULL;
    if (items == NULL) {
      log->dropped++;
      return;
    }
    log->items = items;
    log->cap = cap;
  }
  log->items[log->n++] = *origin;
}

void sj__pair_info(const sj_pair_t *pair, sj_pair_info_t *info) {
  const sj_end_t *a = pair->end[SJ_A], *b = pair->end[SJ_B];
  info->id = pair->id;
  sj_origin_to_peer(&a->stream->origin, &info->a);
  sj_origin_to_peer(&b->stream->origin, &info->b);
  info->bytes_read_a = a->pump.bytes_read;
  info->bytes_a_to_b = a->pump.bytes_written;
  info->bytes_read_b = b->pump.bytes_read;
  info->bytes_b_to_a = b->pump.bytes_written;
  info->status = pair->status;
}

sj_pair_t *sj__pair_new(sj_connector_t *c, sj_end_t *a, sj_end_t *b) {
  sj_pair_t *pair = calloc(1, sizeof *pair);
  if (pair == NULL)
    return NULL;
  pair->c = c;
  pair->id = ++c->next_pair_id;
  pair->end[SJ_A] = a;
  pair->end[SJ_B] = b;
  pair->open_streams = 2;
  a->pair = b->pair = pair;
  sj_list_push(&c->pairs, &pair->link);
  c->n_pairs++;
  c->pairs_formed++;
  c->refs++;
  record_peer(&c->peers[SJ_A], &a->stream->origin);
  record_peer(&c->peers[SJ_B], &b->stream->origin);
  if (c->opts.verbose) {
    char ta[SJ_PEER_HOST_MAX + 16], tb[SJ_PEER_HOST_MAX + 16];
    sj_origin_text(&a->stream->origin, ta, sizeof ta);
    sj_origin_text(&b->stream->origin, tb, sizeof tb);
    sj__log(c, SJ_LOG_INFO, "pair %llu formed: A %s <-> B %s", (unsigned long long)pair->id, ta,
            tb);
  }
  sj_pair_info_t info;
  sj__pair_info(pair, &info);
  if (c->opts.on_pair != NULL)
    c->opts.on_pair(c, &info, c->opts.data);
  sj_transformer_t xf[2] = {{0}, {0}}; /* A to B, B to A */
  int rc = c->opts.before_joining == NULL || pair->closing
               ? 0
               : c->opts.before_joining(c, &info, &xf[SJ_A], &xf[SJ_B], c->opts.data);
  if (pair->closing || rc < 0) { /* a callback closed the connector, or refused the pair */
    for (int i = 0; i < 2; i++)
      if (xf[i].release != NULL)
        xf[i].release(xf[i].state);
    sj__pair_close(pair, rc < 0 ? rc : pair->status, 0);
    return pair;
  }
  sj_pump_connect(&a->pump, b->stream, &xf[SJ_A]);
  sj_pump_connect(&b->pump, a->stream, &xf[SJ_B]);
  return pair;
}

/* Called by an end's pump when its direction has ended. */
void sj__pair_direction_ended(sj_pair_t *pair) {
  if (++pair->ended == 2) {
    sj__pair_close(pair, 0, 0);
    return;
  }
  for (int i = 0; i < 2; i++)
    if (!pair->end[i]->pump.ended)
      sj_pump_dst_closes_at_end(&pair->end[i]->pump);
}

void sj__pair_drain(sj_pair_t *pair) {
  sj_pump_finish_input(&pair->end[SJ_A]->pump);
  if (!pair->closing)
    sj_pump_finish_input(&pair->end[SJ_B]->pump);
}

static void on_stream_closed(sj_stream_t *s) {
  sj_pump_t *pump = s->data;
  sj_end_t *end = pump->owner;
  sj_pair_t *pair = end->pair;
  if (--pair->open_streams == 0)
    sj__pair_closed(pair->c, pair);
}

void sj__pair_close(sj_pair_t *pair, int status, int reset) {
  if (pair->closing)
    return;
  pair->closing = 1;
  pair->status = status;
  for (int i = 0; i < 2; i++)
    sj_pump_close(&pair->end[i]->pump);
  /* The streams free themselves as they close, so what the report needs is
   * taken now, once the pumps have counted what a cancelled write had
   * already handed on; the counts no longer move. */
  pair->final = malloc(sizeof *pair->final);
  if (pair->final != NULL)
    sj__pair_info(pair, pair->final);
  for (int i = 0; i < 2; i++)
    sj_stream_close(pair->end[i]->stream, reset, on_stream_closed);
}
