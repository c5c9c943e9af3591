/*
 * The tunnel's link over relay messages, as a pure codec (no I/O, no
 * allocation). Two tunnel ends talk through a relay that forwards whole
 * messages between names but drops those sent to a name not registered at
 * the time. So each end's connection to the relay is one session, named by
 * a random 64-bit id, and every message carries both ends' ids:
 *
 *   kind u8 | sender's session u64 | receiver's session u64 | [bytes]
 *
 *   'H' HELLO  one byte: the sender's role ('L' it listens for local
 *              connections, 'C' it connects to a service), so that two
 *              ends of the same role can tell their users. The receiver id
 *              is the sender's view of the peer (0 while it knows none).
 *              Sent until the peer answers; a HELLO whose receiver id is the
 *              reader's own completes the handshake on the reader's side.
 *   'D' DATA   the carrier's bytes, in order, for exactly this pair of
 *              sessions: bytes of an older session (sent before a peer
 *              reconnected, delivered after) are dropped, never mistaken
 *              for the new session's.
 *
 * A peer whose session id changes (it reconnected, or restarted) has lost
 * whatever was in flight, so the session over this link is over; the link
 * says so rather than carrying on with a gap in the bytes.
 *
 * The parser reads one relay message's payload at a time (given in parts,
 * as the relay codec reports them): sj_link_begin() at the message's
 * header, then sj_link_parse() on each part.
 */
#ifndef SJ_RELAY_LINK_H
#define SJ_RELAY_LINK_H

#include <stddef.h>
#include <stdint.h>

#define SJ_LINK_HEADER 17
#define SJ_LINK_HELLO_LEN (SJ_LINK_HEADER + 1)
#define SJ_LINK_HELLO 'H'
#define SJ_LINK_DATA 'D'

typedef enum {
  SJ_LINK_NEED_MORE = 0, /* all input consumed, no event yet                 */
  SJ_LINK_HELLO_EV,      /* a whole HELLO: from, to, role                    */
  SJ_LINK_DATA_EV,       /* data, len (> 0): the next bytes of a DATA message
                            from, to                                         */
  SJ_LINK_BAD            /* the message is not a link message (too short, an
                            unknown kind, a HELLO of the wrong size); the
                            rest of it is skipped                            */
} sj_link_event_type_t;

typedef struct {
  sj_link_event_type_t type;
  uint64_t from, to;
  uint8_t role;     /* HELLO */
  const char *data; /* points into the input */
  size_t len;
} sj_link_event_t;

typedef struct {
  uint8_t hdr[SJ_LINK_HEADER];
  size_t have;
  uint64_t left; /* payload bytes of the message not yet consumed */
  int skip;      /* the rest of the message is skipped            */
} sj_link_parser_t;

/* A message of length payload bytes begins. Returns SJ_LINK_BAD at once
 * for one too short to be a link message (it is then skipped), else
 * SJ_LINK_NEED_MORE. */
sj_link_event_type_t sj_link_begin(sj_link_parser_t *p, uint64_t length);

/*
 * Consumes the message's next payload bytes up to and including the next
 * event. Returns the bytes consumed (all of len when ev->type is
 * SJ_LINK_NEED_MORE); len must not exceed what the message has left.
 */
size_t sj_link_parse(sj_link_parser_t *p, const char *buf, size_t len, sj_link_event_t *ev);

/* Writes a message header; returns SJ_LINK_HEADER. */
size_t sj_link_put(uint8_t *out, uint8_t kind, uint64_t from, uint64_t to);
/* Writes a whole HELLO; returns SJ_LINK_HELLO_LEN. */
size_t sj_link_put_hello(uint8_t *out, uint64_t from, uint64_t to, uint8_t role);

#endif
