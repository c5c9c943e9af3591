/* The relay's registry of names: exact matches only, clashes refused,
 * removal frees a name at once, and growth keeps every name findable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "server_names.h"

static void set(sj_relay_name_t *n, const char *text) {
  assert_int_equal(sj_relay_name_set(n, text, strlen(text)), 0);
}

static void test_add_find_remove(void **state) {
  (void)state;
  sj_relay_names_t t;
  sj_relay_names_init(&t);
  sj_relay_name_t a, b, a2;
  assert_null(sj_relay_names_find(&t, "a", 1)); /* before any table exists */
  set(&a, "device_a");
  set(&b, "device_b");
  set(&a2, "device_a");
  assert_int_equal(sj_relay_names_add(&t, &a), 0);
  assert_int_equal(sj_relay_names_add(&t, &b), 0);
  assert_int_equal(sj_relay_names_add(&t, &a2), UV_EEXIST);
  assert_ptr_equal(sj_relay_names_find(&t, "device_a", 8), &a);
  assert_ptr_equal(sj_relay_names_find(&t, "device_b", 8), &b);
  assert_null(sj_relay_names_find(&t, "device_", 7));   /* a prefix is not a match */
  assert_null(sj_relay_names_find(&t, "device_ab", 9)); /* nor a longer name */
  sj_relay_names_remove(&t, &a);
  assert_null(sj_relay_names_find(&t, "device_a", 8));
  assert_int_equal(sj_relay_names_add(&t, &a2), 0); /* the name is free again */
  assert_ptr_equal(sj_relay_names_find(&t, "device_a", 8), &a2);
  assert_int_equal(t.count, 2);
  sj_relay_names_free(&t);
}

static void test_binary_names_and_limits(void **state) {
  (void)state;
  sj_relay_names_t t;
  sj_relay_names_init(&t);
  sj_relay_name_t x, y, big;
  assert_int_equal(sj_relay_name_set(&x, "a\0b", 3), 0);
  assert_int_equal(sj_relay_name_set(&y, "a\0c", 3), 0);
  assert_int_equal(sj_relay_names_add(&t, &x), 0);
  assert_int_equal(sj_relay_names_add(&t, &y), 0); /* differs after the NUL */
  assert_ptr_equal(sj_relay_names_find(&t, "a\0c", 3), &y);
  char text[SJ_RELAY_NAME_MAX + 1];
  memset(text, 'n', sizeof text);
  assert_int_equal(sj_relay_name_set(&big, text, SJ_RELAY_NAME_MAX), 0);
  assert_int_equal(sj_relay_name_set(&big, text, SJ_RELAY_NAME_MAX + 1), UV_EINVAL);
  assert_int_equal(sj_relay_name_set(&big, text, 0), UV_EINVAL);
  sj_relay_names_free(&t);
}

/* Enough names to double the table several times, removed in another
 * order than they were added. */
static void test_growth(void **state) {
  (void)state;
  enum { N = 5000 };
  sj_relay_names_t t;
  sj_relay_names_init(&t);
  sj_relay_name_t *names = calloc(N, sizeof *names);
  assert_non_null(names);
  char text[32];
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof text, "client-%d", i);
    set(&names[i], text);
    assert_int_equal(sj_relay_names_add(&t, &names[i]), 0);
  }
  assert_true(t.nbuckets >= N);
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof text, "client-%d", i);
    assert_ptr_equal(sj_relay_names_find(&t, text, strlen(text)), &names[i]);
  }
  for (int i = 0; i < N; i += 2)
    sj_relay_names_remove(&t, &names[i]);
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof text, "client-%d", i);
    sj_relay_name_t *found = sj_relay_names_find(&t, text, strlen(text));
    if (i % 2 == 0)
      assert_null(found);
    else
      assert_ptr_equal(found, &names[i]);
  }
  assert_int_equal(t.count, N / 2);
  sj_relay_names_free(&t);
  free(names);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_find_remove),
      cmocka_unit_test(test_binary_names_and_limits),
      cmocka_unit_test(test_growth),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
