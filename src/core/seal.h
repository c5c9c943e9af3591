/*
 * End-to-end encryption between two sockjoin instances that share a key
 * file (encrypt=psk:FILE), as a stream over any stream, on the filter
 * machinery of filter.h. Everything written is sent authenticated and
 * encrypted; everything read has been checked; a tampered, reordered,
 * replayed, reflected or truncated stream is an error (the pair is reset),
 * never plaintext passed on. Wire format: seal_frame.h.
 *
 * Keys:
 *   - The master key comes from the file's contents through Argon2id
 *     (libsodium crypto_pwhash, OPSLIMIT/MEMLIMIT_INTERACTIVE: about 64 MiB
 *     and a tenth of a second, once per key file at startup) with the fixed
 *     application salt "sockjoin psk v1". A password hash, not a plain hash,
 *     because the file may hold a passphrase: whoever records a session
 *     (the relay) can test guesses against it offline, and each guess
 *     then costs an Argon2id run. The salt is fixed because both ends must
 *     derive the same key from the file alone; random key files (which
 *     need no stretching) lose nothing by it.
 *   - Per connection each side sends a fresh 32-byte random nonce in its
 *     hello. The key of each direction is BLAKE2b (keyed with the master
 *     key) of a label, the sender's nonce and the receiver's nonce, so the
 *     two directions have independent keys, every connection new ones, and
 *     bytes replayed from another connection or reflected back to their
 *     sender fail authentication (a hello echoing our own nonce is refused
 *     outright).
 *   - Each direction is a crypto_secretstream_xchacha20poly1305 stream: its
 *     header follows the hello, then a key confirmation message, then data
 *     messages of at most 16 KiB each (the length prefix is authenticated as
 *     additional data), then an empty FINAL message at shutdown.
 *
 * The handshake completes (the layer callback's status 0) only when the
 * PEER's header and key confirmation have arrived and verified: a peer
 * with another key fails it with "encrypt: peer has a different key or is
 * not sockjoin". Before that, nothing is written from above.
 */
#ifndef SJ_SEAL_H
#define SJ_SEAL_H

#include "filter.h"
#include "secret.h"

typedef struct {
  unsigned char bytes[32];
} sj_seal_key_t;

/* Derives the master key from a secret (slow on purpose, see above).
 * Returns 0, or UV_ENOMEM when Argon2id cannot have its memory. */
int sj_seal_key_derive(const sj_secret_t *secret, sj_seal_key_t *key);
/* Loads the key file and derives its key: 0, or a negative code with a
 * reason naming the file in err ("encrypt: secret file k is empty"). */
int sj_seal_key_load(const char *path, sj_seal_key_t *key, char *err, size_t errlen);
void sj_seal_key_wipe(sj_seal_key_t *key);

/*
 * Layers encryption over lower, which the new stream owns from now on. The
 * key is copied. cb (see sj_layer_cb in filter.h) reports the handshake,
 * which starts at once (the hello is sent). Returns 0 and *out, or
 * UV_ENOMEM with lower untouched.
 */
int sj_seal_stream_new(sj_stream_t *lower, const sj_seal_key_t *key, sj_layer_cb cb, void *arg,
                       sj_stream_t **out);

#endif
