/*
 * The wire format of encrypt= (seal.c), as a pure incremental parser: no
 * I/O, no crypto, no allocation. What each side sends:
 *
 *   hello    "SJSEAL" 0x00 VERSION(1)  NONCE(32)        40 bytes, at once
 *   header   secretstream header(24)                    once the peer's
 *                                                       hello has come
 *   messages LEN(2, big-endian) CIPHERTEXT(LEN)         LEN = plain + 17
 *
 * The first message is the key confirmation (empty, tag PUSH); data
 * messages carry at most SJ_SEAL_MAX_PLAIN bytes (tag MESSAGE); the last
 * is empty with tag FINAL. The parser only frames: it checks the magic and
 * version as they arrive (so a stranger is refused at its first wrong
 * byte) and the length bounds; seal.c decrypts.
 *
 * One event per call, like the relay codec. A frame whole in the input is
 * reported as a span of it; a frame split across calls is gathered in the
 * parser's own buffer (at most one frame, SJ_SEAL_MAX_FRAME bytes).
 */
#ifndef SJ_SEAL_FRAME_H
#define SJ_SEAL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define SJ_SEAL_MAGIC_LEN 7 /* "SJSEAL" and its NUL */
#define SJ_SEAL_VERSION 1
#define SJ_SEAL_NONCE_BYTES 32
#define SJ_SEAL_HELLO_BYTES (SJ_SEAL_MAGIC_LEN + 1 + SJ_SEAL_NONCE_BYTES)
#define SJ_SEAL_HEADER_BYTES 24 /* crypto_secretstream_xchacha20poly1305_HEADERBYTES */
#define SJ_SEAL_TAG_BYTES 17    /* crypto_secretstream_xchacha20poly1305_ABYTES */
#define SJ_SEAL_LEN_BYTES 2
#define SJ_SEAL_MAX_PLAIN 16384
#define SJ_SEAL_MAX_FRAME (SJ_SEAL_MAX_PLAIN + SJ_SEAL_TAG_BYTES)

typedef enum {
  SJ_SEAL_NEED_MORE = 0, /* all input consumed, no event yet          */
  SJ_SEAL_HELLO,         /* data: the peer's nonce (NONCE_BYTES)       */
  SJ_SEAL_HEADER,        /* data: the secretstream header (HEADER_BYTES) */
  SJ_SEAL_MESSAGE        /* data, len: one ciphertext with its tag      */
} sj_seal_event_type_t;

typedef struct {
  sj_seal_event_type_t type;
  const unsigned char *data; /* valid until the next call */
  size_t len;
} sj_seal_event_t;

#define SJ_SEAL_ERRORS(XX)                                                                         \
  XX(EMAGIC, -1, "peer is not sockjoin encrypt= (bad hello)")                                      \
  XX(EVERSION, -2, "peer speaks another version of encrypt=")                                      \
  XX(ESHORT, -3, "message shorter than its authentication tag")                                    \
  XX(ELONG, -4, "message longer than the limit")

typedef enum {
#define SJ_SEAL_ERR_ENUM(name, code, text) SJ_SEAL_##name = (code),
  SJ_SEAL_ERRORS(SJ_SEAL_ERR_ENUM)
#undef SJ_SEAL_ERR_ENUM
} sj_seal_error_t;

typedef struct {
  int state;
  size_t need; /* bytes of the current frame part */
  size_t have; /* ... gathered in buf so far      */
  unsigned char buf[SJ_SEAL_MAX_FRAME];
} sj_seal_parser_t;

void sj_seal_parser_init(sj_seal_parser_t *p);

/* Consumes input up to and including the next event. Returns the bytes
 * consumed (all of len when ev->type is SJ_SEAL_NEED_MORE), or a negative
 * SJ_SEAL_E* error, after which the stream is unusable. */
int64_t sj_seal_parse(sj_seal_parser_t *p, const unsigned char *in, size_t len,
                      sj_seal_event_t *ev);

const char *sj_seal_strerror(int err);

/* Writes a hello for nonce into out (SJ_SEAL_HELLO_BYTES). */
void sj_seal_hello(unsigned char *out, const unsigned char *nonce);
/* Writes the length prefix of a ciphertext of len bytes (LEN_BYTES). */
void sj_seal_prefix(unsigned char *out, size_t len);

#endif
