/* End-to-end encryption with a pre-shared key (see seal.h): libsodium's
 * secretstream in each direction, framed by seal_frame.c, on the filter. */
#include "seal.h"
#include "seal_frame.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SS(x) crypto_secretstream_xchacha20poly1305_##x

_Static_assert(SJ_SEAL_HEADER_BYTES == crypto_secretstream_xchacha20poly1305_HEADERBYTES,
               "header size");
_Static_assert(SJ_SEAL_TAG_BYTES == crypto_secretstream_xchacha20poly1305_ABYTES, "tag size");
_Static_assert(sizeof(sj_seal_key_t) == crypto_secretstream_xchacha20poly1305_KEYBYTES, "key size");

/* The fixed Argon2id salt (16 bytes with its NUL); changing it changes
 * every key, so it is part of the protocol. */
static const unsigned char psk_salt[crypto_pwhash_SALTBYTES] = "sockjoin psk v1";
static const char direction_label[] = "sockjoin encrypt v1 direction";

/* How far the peer's side of the handshake has come. */
enum { WAIT_HELLO, WAIT_HEADER, WAIT_CONFIRM, OPEN, ENDED };

typedef struct {
  sj_filter_t f; /* first: the filter lives inside */
  int stage;
  unsigned char master[sizeof(sj_seal_key_t)];
  unsigned char nonce[SJ_SEAL_NONCE_BYTES];      /* ours */
  unsigned char recv_key[sizeof(sj_seal_key_t)]; /* until the peer's header */
  SS(state) push, pull;
  /* A decrypted message the reader's chunk had no room for. */
  unsigned char *spill;
  size_t spill_off, spill_len;
  /* A frame being built, when the queue's chunk cannot hold it whole. */
  unsigned char *scratch;
  sj_seal_parser_t parser;
} seal_t;

/* ---- keys ----------------------------------------------------------------- */

int sj_seal_key_derive(const sj_secret_t *secret, sj_seal_key_t *key) {
  if (sodium_init() < 0)
    return UV_ENOMEM;
  if (crypto_pwhash(key->bytes, sizeof key->bytes, (const char *)secret->data, secret->len,
                    psk_salt, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                    crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13) != 0)
    return UV_ENOMEM;
  return 0;
}

int sj_seal_key_load(const char *path, sj_seal_key_t *key, char *err, size_t errlen) {
  sj_secret_t secret;
  char why[512];
  int rc = sj_secret_load(path, &secret, why, sizeof why);
  if (rc != 0) {
    snprintf(err, errlen, "encrypt: %s", why);
    return rc;
  }
  rc = sj_seal_key_derive(&secret, key);
  sj_secret_free(&secret);
  if (rc != 0)
    snprintf(err, errlen, "encrypt: out of memory deriving the key from %s", path);
  return rc;
}

void sj_seal_key_wipe(sj_seal_key_t *key) { sodium_memzero(key, sizeof *key); }

/* The key of the direction from the side that sent nonce `from`. */
static void direction_key(const seal_t *s, const unsigned char *from, const unsigned char *to,
                          unsigned char *out) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, s->master, sizeof s->master, sizeof s->master);
  crypto_generichash_update(&st, (const unsigned char *)direction_label, sizeof direction_label);
  crypto_generichash_update(&st, from, SJ_SEAL_NONCE_BYTES);
  crypto_generichash_update(&st, to, SJ_SEAL_NONCE_BYTES);
  crypto_generichash_final(&st, out, sizeof s->master);
  sodium_memzero(&st, sizeof st);
}

/* ---- sending -------------------------------------------------------------- */

/* Queues one message: straight into the queue's chunk when it fits. */
static int seal_message(seal_t *s, const unsigned char *m, size_t mlen, unsigned char tag) {
  size_t clen = mlen + SJ_SEAL_TAG_BYTES, total = SJ_SEAL_LEN_BYTES + clen;
  size_t avail;
  unsigned char *dst = (unsigned char *)sj_filter_reserve(&s->f, total, &avail);
  if (dst != NULL && avail < total) {
    if (s->scratch == NULL)
      s->scratch = malloc(SJ_SEAL_LEN_BYTES + SJ_SEAL_MAX_FRAME);
    dst = s->scratch;
  }
  if (dst == NULL)
    return sj_filter_error(&s->f, UV_ENOMEM, "out of memory");
  sj_seal_prefix(dst, clen);
  SS(push)(&s->push, dst + SJ_SEAL_LEN_BYTES, NULL, m, mlen, dst, SJ_SEAL_LEN_BYTES, tag);
  if (dst == s->scratch)
    return sj_filter_send(&s->f, dst, total);
  sj_filter_commit(&s->f, total);
  return 0;
}

static int seal_begin(sj_filter_t *f) {
  seal_t *s = (seal_t *)f;
  unsigned char hello[SJ_SEAL_HELLO_BYTES];
  randombytes_buf(s->nonce, sizeof s->nonce);
  sj_seal_hello(hello, s->nonce);
  return sj_filter_send(f, hello, sizeof hello);
}

static int seal_encode(sj_filter_t *f, const char *buf, size_t len) {
  size_t n = len < SJ_SEAL_MAX_PLAIN ? len : SJ_SEAL_MAX_PLAIN;
  int rc = seal_message((seal_t *)f, (const unsigned char *)buf, n, SS(TAG_MESSAGE));
  return rc < 0 ? rc : (int)n;
}

static int seal_finish(sj_filter_t *f) { return seal_message((seal_t *)f, NULL, 0, SS(TAG_FINAL)); }

/* ---- receiving ------------------------------------------------------------ */

/* The peer's hello: both direction keys are known, so our header and key
 * confirmation go out. */
static int on_hello(seal_t *s, const unsigned char *peer) {
  if (sodium_memcmp(peer, s->nonce, SJ_SEAL_NONCE_BYTES) == 0)
    return sj_filter_error(&s->f, SJ_EAUTH, "peer sent back our own hello (reflected)");
  unsigned char send_key[sizeof s->master], header[SJ_SEAL_HEADER_BYTES];
  direction_key(s, s->nonce, peer, send_key);
  direction_key(s, peer, s->nonce, s->recv_key);
  SS(init_push)(&s->push, header, send_key);
  sodium_memzero(send_key, sizeof send_key);
  s->stage = WAIT_HEADER;
  int rc = sj_filter_send(&s->f, header, sizeof header);
  return rc != 0 ? rc : seal_message(s, NULL, 0, SS(TAG_PUSH));
}

static int on_header(seal_t *s, const unsigned char *header) {
  int rc = SS(init_pull)(&s->pull, header, s->recv_key);
  sodium_memzero(s->recv_key, sizeof s->recv_key);
  s->stage = WAIT_CONFIRM;
  return rc == 0 ? 0 : sj_filter_error(&s->f, UV_EPROTO, "bad stream header");
}

static size_t unspill(seal_t *s, char *out, size_t cap) {
  size_t n = s->spill_len - s->spill_off < cap ? s->spill_len - s->spill_off : cap;
  memcpy(out, s->spill + s->spill_off, n);
  s->spill_off += n;
  return n;
}

/* The first message proves the peer holds the key: empty, tag PUSH. */
static int confirmed(seal_t *s, unsigned char tag, size_t mlen) {
  if (tag != SS(TAG_PUSH) || mlen != 0)
    return sj_filter_error(&s->f, UV_EPROTO, "bad key confirmation");
  s->stage = OPEN;
  sj_filter_handshake_done(&s->f);
  return 0;
}

/* What a message that decrypted means, once the session is open. */
static int opened(seal_t *s, unsigned char tag, size_t mlen, unsigned char *dst, char *out,
                  size_t cap, size_t *produced) {
  if (tag == SS(TAG_FINAL) && mlen == 0) {
    s->stage = ENDED;
    return SJ_FILTER_EOF;
  }
  if (tag != SS(TAG_MESSAGE))
    return sj_filter_error(&s->f, UV_EPROTO, "unexpected message (tag %u)", tag);
  if (dst == (unsigned char *)out) {
    *produced = mlen;
    return 0;
  }
  s->spill_off = 0;
  s->spill_len = mlen;
  *produced = unspill(s, out, cap);
  return 0;
}

static int on_message(seal_t *s, const unsigned char *c, size_t clen, char *out, size_t cap,
                      size_t *produced) {
  size_t mlen = clen - SJ_SEAL_TAG_BYTES;
  if (s->stage == ENDED)
    return sj_filter_error(&s->f, UV_EPROTO, "data after the end of the stream");
  if (cap < mlen && s->spill == NULL && (s->spill = malloc(SJ_SEAL_MAX_PLAIN)) == NULL)
    return sj_filter_error(&s->f, UV_ENOMEM, "out of memory");
  unsigned char *dst = cap >= mlen ? (unsigned char *)out : s->spill;
  unsigned char ad[SJ_SEAL_LEN_BYTES], tag;
  sj_seal_prefix(ad, clen);
  if (SS(pull)(&s->pull, dst, NULL, &tag, c, clen, ad, sizeof ad) != 0) {
    if (s->stage == WAIT_CONFIRM)
      return sj_filter_error(&s->f, SJ_EAUTH, "peer has a different key or is not sockjoin");
    return sj_filter_error(&s->f, UV_EPROTO,
                           "message failed authentication (tampered or corrupted stream)");
  }
  if (s->stage == WAIT_CONFIRM)
    return confirmed(s, tag, mlen);
  return opened(s, tag, mlen, dst, out, cap, produced);
}

static int on_frame(seal_t *s, const sj_seal_event_t *ev, char *out, size_t cap, size_t *produced) {
  switch (ev->type) {
  case SJ_SEAL_HELLO:
    return on_hello(s, ev->data);
  case SJ_SEAL_HEADER:
    return on_header(s, ev->data);
  case SJ_SEAL_MESSAGE:
    return on_message(s, ev->data, ev->len, out, cap, produced);
  default:
    return 0;
  }
}

/* Frames until one message has been decrypted (or the input ends). */
static int seal_decode(sj_filter_t *f, const char *in, size_t inlen, size_t *used, char *out,
                       size_t cap, size_t *produced) {
  seal_t *s = (seal_t *)f;
  if (s->spill_off < s->spill_len) {
    *produced = unspill(s, out, cap);
    return 0;
  }
  while (*used < inlen && *produced == 0) {
    sj_seal_event_t ev;
    int64_t n = sj_seal_parse(&s->parser, (const unsigned char *)in + *used, inlen - *used, &ev);
    if (n < 0)
      return sj_filter_error(f, UV_EPROTO, "%s", sj_seal_strerror((int)n));
    *used += (size_t)n;
    int rc = on_frame(s, &ev, out, cap, produced);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int seal_truncated(sj_filter_t *f) {
  if (!f->handshake_done)
    return sj_filter_error(f, UV_EPROTO, "peer closed the connection during the handshake");
  return sj_filter_error(f, UV_EPROTO, "stream truncated (peer closed without the end marker)");
}

static void seal_destroy(sj_filter_t *f) {
  seal_t *s = (seal_t *)f;
  if (s->spill != NULL) {
    sodium_memzero(s->spill, SJ_SEAL_MAX_PLAIN);
    free(s->spill);
  }
  free(s->scratch);
  sodium_memzero(s, offsetof(seal_t, parser));
  free(s);
}

static const sj_filter_codec_t seal_codec = {
    .name = "encrypt",
    .begin = seal_begin,
    .decode = seal_decode,
    .encode = seal_encode,
    .finish = seal_finish,
    .truncated = seal_truncated,
    .destroy = seal_destroy,
};

int sj_seal_stream_new(sj_stream_t *lower, const sj_seal_key_t *key, sj_layer_cb cb, void *arg,
                       sj_stream_t **out) {
  if (sodium_init() < 0)
    return UV_ENOMEM;
  seal_t *s = calloc(1, sizeof *s);
  if (s == NULL)
    return UV_ENOMEM;
  sj_filter_init(&s->f, lower, &seal_codec, cb, arg);
  memcpy(s->master, key->bytes, sizeof s->master);
  sj_seal_parser_init(&s->parser);
  sj_filter_start(&s->f);
  *out = &s->f.base;
  return 0;
}
