/* Certificates made at test time (nothing private is checked in): two CAs,
 * a server certificate for localhost and 127.0.0.1, and client
 * certificates from each CA, as PEM files in a temporary directory. */
#ifndef SJ_TEST_CERTS_H
#define SJ_TEST_CERTS_H

#define CERT_PATH_MAX 128

typedef struct {
  char dir[32];                    /* short, so every path below fits */
  char ca[CERT_PATH_MAX];          /* CA 1                                  */
  char other_ca[CERT_PATH_MAX];    /* CA 2, trusted by nobody in particular */
  char server_cert[CERT_PATH_MAX]; /* CN=localhost, DNS:localhost, IP:127.0.0.1, by CA 1 */
  char server_key[CERT_PATH_MAX];
  char client_cert[CERT_PATH_MAX]; /* by CA 1 */
  char client_key[CERT_PATH_MAX];
  char other_client_cert[CERT_PATH_MAX]; /* by CA 2 */
  char other_client_key[CERT_PATH_MAX];
  char garbage[CERT_PATH_MAX]; /* not PEM at all */
} certs_t;

/* Returns 0 with every file written, or -1. */
int certs_make(certs_t *c);
void certs_remove(const certs_t *c);

#endif
