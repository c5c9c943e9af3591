/*
 * The auth lines of auth=token and auth=hmac, as a pure codec (no I/O, no
 * allocation):
 *   token:  the peer's first line is the token;
 *   hmac:   the checking side sends a challenge line of random hex, the
 *           peer answers with the hex HMAC-SHA256 of that line (without its
 *           newline) under the shared key.
 * A line ends with "\n" or "\r\n".
 */
#ifndef SJ_AUTHLINE_H
#define SJ_AUTHLINE_H

#include <stddef.h>

#define SJ_AUTH_NONCE_BYTES 32
#define SJ_AUTH_HEX_LEN 64 /* of a challenge, and of an answer */

#define SJ_AUTHLINE_TOO_LONG (-1)

/* Every refusal line sockjoin sends starts with this. */
#define SJ_AUTH_REFUSAL "auth failed: "

/* 1 if buf starts with a refusal line (how a token presenter, which hears
 * nothing back on success, tells a refusal from its peer's first data). */
int sj_auth_is_refusal(const char *buf, size_t len);

/* The first line of buf: returns the bytes it takes (its newline included)
 * with its length without the line ending in *line_len; 0 when no line is
 * complete yet; SJ_AUTHLINE_TOO_LONG when max bytes hold no newline. */
long sj_authline_next(const char *buf, size_t len, size_t max, size_t *line_len);

/* Lower-case hex of n bytes into out (2n characters and a NUL). */
void sj_auth_hex(const unsigned char *in, size_t n, char *out);

/* The answer to a challenge: hex HMAC-SHA256 (SJ_AUTH_HEX_LEN characters
 * and a NUL). Returns 0, or -1 if the crypto library fails. */
int sj_auth_answer(const void *key, size_t key_len, const char *challenge, size_t len,
                   char out[SJ_AUTH_HEX_LEN + 1]);

/* 1 if a and b are the same bytes, in time that does not depend on where
 * they differ (lengths may differ; then they are unequal). */
int sj_auth_equal(const char *a, size_t a_len, const char *b, size_t b_len);

#endif
