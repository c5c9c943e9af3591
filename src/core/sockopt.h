/* The socket options every relayed TCP socket gets. */
#ifndef SJ_SOCKOPT_H
#define SJ_SOCKOPT_H

#include "sockjoin.h"

#include <uv.h>

/* TCP_NODELAY on, and keep-alive as ka says (SO_KEEPALIVE off when disabled).
 * Every option is tried; the first failure is returned. */
int sj_tcp_tune(uv_tcp_t *tcp, const sj_keepalive_t *ka);
int sj_tcp_tune_fd(int fd, const sj_keepalive_t *ka);

#endif
