/* Reading a client: its bytes go through the protocol codec, and each
 * message is forwarded to its receiver as it arrives, a span at a time. */
#include "server_int.h"

#include <stdio.h>
#include <string.h>

static int is_self(const relay_client_t *c, const sj_relay_event_t *ev) {
  return ev->name_len == c->name.len && memcmp(ev->name, c->name.text, ev->name_len) == 0;
}

static void on_register(relay_client_t *c, const sj_relay_event_t *ev) {
  sj_relay_server_t *srv = c->srv;
  sj_relay_name_set(&c->name, ev->name, ev->name_len);
  int rc = sj_relay_names_add(&srv->names, &c->name);
  if (rc == UV_EEXIST) {
    srv->stats.clashes++;
    sj__relay_client_close(c, SJ_LOG_INFO, "name already registered; closing");
    return;
  }
  if (rc != 0) {
    sj__relay_client_close(c, SJ_LOG_ERROR, "cannot register: %s", sj_strerror(rc));
    return;
  }
  c->registered = 1;
  srv->stats.registered++;
  if (sj__relay_logs(srv, SJ_LOG_INFO)) {
    char label[SJ_RELAY_NAME_MAX + SJ_PEER_HOST_MAX + 32];
    sj__relay_client_label(c, label, sizeof label);
    sj__relay_log(srv, SJ_LOG_INFO, "%s: registered", label);
  }
  sj__relay_client_arm(c); /* the idle deadline replaces the registration one */
}

static void log_unknown(relay_client_t *c, const sj_relay_event_t *ev) {
  if (!sj__relay_logs(c->srv, SJ_LOG_INFO))
    return;
  char name[SJ_RELAY_NAME_MAX + 1];
  for (size_t i = 0; i < ev->name_len; i++)
    name[i] = ev->name[i] >= 0x20 && ev->name[i] < 0x7f ? ev->name[i] : '.';
  name[ev->name_len] = '\0';
  char label[SJ_RELAY_NAME_MAX + SJ_PEER_HOST_MAX + 32];
  sj__relay_client_label(c, label, sizeof label);
  sj__relay_log(c->srv, SJ_LOG_INFO, "%s: dropped a %llu-byte message to unknown name '%s'", label,
                (unsigned long long)ev->length, name);
}

/* A message header: its receiver is looked up now, once; the header to
 * deliver is queued in the next step, when the receiver has room. */
static void on_message(relay_client_t *c, const sj_relay_event_t *ev) {
  if (ev->length == 0 && is_self(c, ev)) {
    c->srv->stats.keepalives++; /* resets the idle clock, as any byte does */
    return;
  }
  sj_relay_name_t *n = sj_relay_names_find(&c->srv->names, ev->name, ev->name_len);
  if (n == NULL) {
    c->srv->stats.dropped++;
    log_unknown(c, ev);
    return; /* its payload is read and discarded */
  }
  c->dest = sj_container_of(n, relay_client_t, name);
  sj_list_push(&c->dest->senders, &c->dest_link);
  c->msg_len = ev->length;
  c->header_pending = 1;
}

static void end_message(relay_client_t *c) {
  c->srv->stats.messages++;
  sj__relay_end_turn(c);
}

static void out_of_memory(relay_client_t *d) {
  sj__relay_client_close(d, SJ_LOG_ERROR, "out of memory for its output; closing");
}

static void deliver_header(relay_client_t *c) {
  relay_client_t *d = c->dest;
  c->header_pending = 0;
  if (!c->srv->opts.deliver_raw) {
    char h[SJ_RELAY_NAME_MAX + 24];
    size_t n = sj_relay_header(h, sizeof h, c->name.text, c->name.len, c->msg_len);
    if (sj__relay_out_append(d, h, n) != 0) {
      out_of_memory(d); /* which ends c's message too */
      return;
    }
  }
  if (c->msg_len == 0)
    end_message(c);
}

/* A span of payload. A span that fills the rest of a read is handed over
 * with its chunk instead of copied, when that chunk is at least half used
 * by it (so that a queue's memory stays within twice its bytes). */
static void deliver_data(relay_client_t *c, const sj_relay_event_t *ev, sj_chunk_t **chunk) {
  relay_client_t *d = c->dest;
  sj_chunk_t *ch = *chunk;
  c->srv->stats.bytes += ev->data_len;
  if (ev->data + ev->data_len == ch->data + ch->len && ev->data_len >= c->srv->pool.size / 2) {
    ch->off = (size_t)(ev->data - ch->data);
    sj__relay_out_push(d, ch);
    *chunk = NULL;
  } else if (sj__relay_out_append(d, ev->data, ev->data_len) != 0) {
    out_of_memory(d);
    return;
  }
  if (ev->last)
    end_message(c);
}

static void on_event(relay_client_t *c, const sj_relay_event_t *ev, sj_chunk_t **chunk) {
  switch (ev->type) {
  case SJ_RELAY_REGISTER:
    on_register(c, ev);
    break;
  case SJ_RELAY_MESSAGE:
    on_message(c, ev);
    break;
  case SJ_RELAY_DATA:
    if (c->dest != NULL)
      deliver_data(c, ev, chunk);
    break;
  case SJ_RELAY_NEED_MORE:
    break;
  }
}

/* c may not queue bytes for its receiver now: c is not read until it may,
 * and the rest of this read waits with c. */
static void block(relay_client_t *c, sj_chunk_t *chunk) {
  if (chunk != NULL && sj_chunk_remaining(chunk) == 0) {
    sj_pool_put(&c->srv->pool, chunk);
    chunk = NULL;
  }
  c->parked = chunk;
  c->blocked = 1;
  if (c->reading)
    sj_stream_read_stop(c->stream);
  c->reading = 0;
}

/* c's turn at its receiver: first in line, and room in the queue. */
static int may_queue(const relay_client_t *c) {
  return c->dest->senders.next == &c->dest_link && !sj__relay_out_full(c->dest);
}

static void malformed(relay_client_t *c, int err) {
  c->srv->stats.malformed++;
  sj__relay_client_close(c, SJ_LOG_ERROR, "malformed frame: %s; closing", sj_relay_strerror(err));
}

/* One step: returns 0 to go on, 1 when c waits, stopped, or its input is
 * used up. */
static int step(relay_client_t *c, sj_chunk_t **chunk) {
  if (c->closing || c->draining)
    return 1;
  if (c->dest != NULL && !may_queue(c)) {
    block(c, *chunk);
    *chunk = NULL;
    return 1;
  }
  if (c->header_pending) {
    deliver_header(c);
    return 0;
  }
  sj_chunk_t *ch = *chunk;
  if (ch == NULL || ch->off == ch->len)
    return 1;
  sj_relay_event_t ev;
  int64_t n = sj_relay_parse(&c->parser, ch->data + ch->off, ch->len - ch->off, &ev);
  if (n < 0) {
    malformed(c, (int)n);
    return 1;
  }
  ch->off += (size_t)n;
  on_event(c, &ev, chunk);
  return 0;
}

void sj__relay_input(relay_client_t *c, sj_chunk_t *chunk) {
  while (step(c, &chunk) == 0)
    ;
  if (chunk != NULL)
    sj_pool_put(&c->srv->pool, chunk);
  if (c->closing || c->draining || c->blocked || c->reading)
    return;
  int rc = sj_stream_read_start(c->stream);
  if (rc != 0)
    sj__relay_client_close(c, SJ_LOG_INFO, "cannot read: %s", sj_strerror(rc));
  else
    c->reading = 1;
}

void sj__relay_on_read(sj_stream_t *s, int status, sj_chunk_t *chunk) {
  relay_client_t *c = s->data;
  sj_relay_server_t *srv = c->srv;
  if (status == UV_EOF) {
    c->reading = 0;
    sj__relay_client_finish(c, SJ_LOG_INFO, "closed by peer");
  } else if (status < 0) {
    c->reading = 0;
    sj__relay_client_close(c, SJ_LOG_INFO, "read failed: %s", sj_strerror(status));
  } else if (chunk != NULL) {
    c->last_in_ms = uv_now(srv->loop);
    sj__relay_input(c, chunk);
  }
  sj__relay_run(srv);
}
