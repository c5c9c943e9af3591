#include "test_certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  X509 *cert;
  EVP_PKEY *key;
} ident_t;

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (ext == NULL)
    return -1;
  int ok = X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1 ? 0 : -1;
}

static int add_exts(X509 *x, X509 *issuer, const char *san) {
  if (san == NULL)
    return add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE") |
           add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign") |
           add_ext(x, issuer, NID_subject_key_identifier, "hash");
  return add_ext(x, issuer, NID_basic_constraints, "CA:FALSE") |
         add_ext(x, issuer, NID_key_usage, "critical,digitalSignature") |
         add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth") |
         add_ext(x, issuer, NID_subject_alt_name, san);
}

/* A certificate for a new P-256 key: a self-signed CA when issuer is NULL
 * (san NULL), else a leaf signed by issuer. */
static int make(ident_t *out, const char *cn, const ident_t *issuer, const char *san) {
  static long serial = 1;
  out->key = EVP_EC_gen("P-256");
  out->cert = X509_new();
  if (out->key == NULL || out->cert == NULL)
    return -1;
  X509 *x = out->cert;
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, out->key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             (const unsigned char *)cn, -1, -1, 0);
  X509 *icert = issuer != NULL ? issuer->cert : x;
  X509_set_issuer_name(x, X509_get_subject_name(icert));
  if (add_exts(x, icert, san) != 0)
    return -1;
  return X509_sign(x, issuer != NULL ? issuer->key : out->key, EVP_sha256()) > 0 ? 0 : -1;
}

static int write_pem(const char *path, X509 *cert, EVP_PKEY *key) {
  FILE *fp = fopen(path, "w");
  if (fp == NULL)
    return -1;
  int ok = cert != NULL ? PEM_write_X509(fp, cert)
                        : PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL);
  fclose(fp);
  return ok == 1 ? 0 : -1;
}

static int save(const ident_t *id, const char *cert, const char *key) {
  return write_pem(cert, id->cert, NULL) | (key != NULL ? write_pem(key, NULL, id->key) : 0);
}

static void drop(ident_t *id) {
  X509_free(id->cert);
  EVP_PKEY_free(id->key);
}

static void paths(certs_t *c) {
  snprintf(c->ca, sizeof c->ca, "%s/ca.pem", c->dir);
  snprintf(c->other_ca, sizeof c->other_ca, "%s/other-ca.pem", c->dir);
  snprintf(c->server_cert, sizeof c->server_cert, "%s/server.pem", c->dir);
  snprintf(c->server_key, sizeof c->server_key, "%s/server.key", c->dir);
  snprintf(c->client_cert, sizeof c->client_cert, "%s/client.pem", c->dir);
  snprintf(c->client_key, sizeof c->client_key, "%s/client.key", c->dir);
  snprintf(c->other_client_cert, sizeof c->other_client_cert, "%s/other-client.pem", c->dir);
  snprintf(c->other_client_key, sizeof c->other_client_key, "%s/other-client.key", c->dir);
  snprintf(c->garbage, sizeof c->garbage, "%s/garbage.pem", c->dir);
}

int certs_make(certs_t *c) {
  snprintf(c->dir, sizeof c->dir, "/tmp/sj-certs-XXXXXX");
  if (mkdtemp(c->dir) == NULL)
    return -1;
  paths(c);
  ident_t ca = {0}, other = {0}, server = {0}, client = {0}, oclient = {0};
  int rc = make(&ca, "sockjoin test CA", NULL, NULL) | make(&other, "other CA", NULL, NULL) |
           make(&server, "localhost", &ca, "DNS:localhost,IP:127.0.0.1") |
           make(&client, "client", &ca, "DNS:client") |
           make(&oclient, "other client", &other, "DNS:client");
  if (rc == 0)
    rc = save(&ca, c->ca, NULL) | save(&other, c->other_ca, NULL) |
         save(&server, c->server_cert, c->server_key) |
         save(&client, c->client_cert, c->client_key) |
         save(&oclient, c->other_client_cert, c->other_client_key);
  FILE *fp = fopen(c->garbage, "w");
  if (fp == NULL || fputs("this is not a certificate\n", fp) < 0)
    rc = -1;
  if (fp != NULL)
    fclose(fp);
  drop(&ca);
  drop(&other);
  drop(&server);
  drop(&client);
  drop(&oclient);
  return rc;
}

void certs_remove(const certs_t *c) {
  const char *files[] = {c->ca,          c->other_ca,   c->server_cert,       c->server_key,
                         c->client_cert, c->client_key, c->other_client_cert, c->other_client_key,
                         c->garbage};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    unlink(files[i]);
  rmdir(c->dir);
}
