/*
 * The connector for the tunnels: sides whose streams are of the caller's
 * making (mux channels) instead of sockets, so that a tunnel joins a
 * channel to a socket with the same connector, pumps, stats and logs as
 * any other pair.
 *
 *   SJ__SIDE_FED   a side fed only by sj__connector_add_stream(), as a
 *                  listening side is fed by its listener (the tunnel end
 *                  that the peer opens channels to);
 *   SJ__SIDE_OPEN  a side that "dials" by calling an open function that
 *                  gives a stream at once (a new mux channel), once per
 *                  stream of the other side, as connect: dials per accept.
 *
 * Put the kind in the side's spec for sj_connector_new(). A side of either
 * kind faces a listen:/connect: side of the usual kinds (or the other of
 * the two), never stdio, and not with --persist.
 */
#ifndef SJ_CONNECTOR_EXT_H
#define SJ_CONNECTOR_EXT_H

#include "stream.h"

#define SJ__SIDE_FED ((sj_side_kind_t)100)
#define SJ__SIDE_OPEN ((sj_side_kind_t)101)

/* Gives a new stream of the side at once (*out, owned by the connector), or
 * a negative code, which fails the stream it was opened for. */
typedef int (*sj_open_fn)(void *data, sj_stream_t **out);

/* Sets the open function of an SJ__SIDE_OPEN side (before the first stream
 * of the other side arrives, i.e. right after sj_connector_new()). */
void sj__connector_set_open(sj_connector_t *c, sj_side_t side, sj_open_fn fn, void *data);

/* Hands a stream to the connector as a new stream of side; the connector
 * owns it from this call on, also when it fails (then it is closed).
 * Returns 0 or SJ_ECLOSED once the connector is done. */
int sj__connector_add_stream(sj_connector_t *c, sj_side_t side, sj_stream_t *s);

#endif
