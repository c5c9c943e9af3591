/* The auth line codec (see authline.h). */
#include "authline.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

long sj_authline_next(const char *buf, size_t len, size_t max, size_t *line_len) {
  size_t scan = len < max ? len : max;
  const char *nl = memchr(buf, '\n', scan);
  if (nl == NULL)
    return len >= max ? SJ_AUTHLINE_TOO_LONG : 0;
  size_t n = (size_t)(nl - buf);
  *line_len = n > 0 && buf[n - 1] == '\r' ? n - 1 : n;
  return (long)n + 1;
}

void sj_auth_hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

int sj_auth_answer(const void *key, size_t key_len, const char *challenge, size_t len,
                   char out[SJ_AUTH_HEX_LEN + 1]) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)challenge, len, mac,
           &mac_len) == NULL ||
      mac_len * 2 != SJ_AUTH_HEX_LEN)
    return -1;
  sj_auth_hex(mac, mac_len, out);
  return 0;
}

/* Digests first, so that the comparison's time says nothing about the
 * lengths or the position of the first difference. */
int sj_auth_equal(const char *a, size_t a_len, const char *b, size_t b_len) {
  unsigned char da[32], db[32];
  if (EVP_Digest(a, a_len, da, NULL, EVP_sha256(), NULL) != 1 ||
      EVP_Digest(b, b_len, db, NULL, EVP_sha256(), NULL) != 1)
    return 0;
  return CRYPTO_memcmp(da, db, sizeof da) == 0 && a_len == b_len;
}

int sj_auth_is_refusal(const char *buf, size_t len) {
  size_t n = sizeof SJ_AUTH_REFUSAL - 1;
  return len >= n && memcmp(buf, SJ_AUTH_REFUSAL, n) == 0;
}
