/* Formatting of relayed chunks for --log-traffic: ascii lines or a
 * hexdump -C layout. Pure. */
#include "sockjoin.h"
#include "strbuf.h"

static int printable(unsigned char ch) { return ch >= 0x20 && ch < 0x7f; }

static void hex_line(sj_strbuf_t *sb, const unsigned char *p, size_t off, size_t n) {
  sj_strbuf_printf(sb, "\n%08zx  ", off);
  for (size_t i = 0; i < 16; i++) {
    if (i < n)
      sj_strbuf_printf(sb, "%02x ", p[i]);
    else
      sj_strbuf_printf(sb, "   ");
    if (i == 7)
      sj_strbuf_putc(sb, ' ');
  }
  sj_strbuf_printf(sb, " |");
  for (size_t i = 0; i < n; i++)
    sj_strbuf_putc(sb, printable(p[i]) ? (char)p[i] : '.');
  sj_strbuf_putc(sb, '|');
}

int sj_traffic_format(sj_traffic_mode_t mode, sj_side_t from, uint64_t pair_id,
                      const void *bytes, size_t n, char *buf, size_t len) {
  const unsigned char *p = bytes;
  sj_strbuf_t sb;
  sj_strbuf_init(&sb, buf, len);
  sj_strbuf_printf(&sb, "%s (pair %llu, %zu bytes):",
                   from == SJ_A ? "A -> B" : "B -> A", (unsigned long long)pair_id, n);
  if (mode == SJ_TRAFFIC_HEX) {
    for (size_t off = 0; off < n; off += 16)
      hex_line(&sb, p + off, off, n - off < 16 ? n - off : 16);
  } else {
    sj_strbuf_putc(&sb, ' ');
    for (size_t i = 0; i < n; i++)
      sj_strbuf_putc(&sb, printable(p[i]) ? (char)p[i] : '.');
  }
  return (int)sb.len;
}
