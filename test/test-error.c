/* pbl_strerror and pbl_err_name: our codes, libuv's, and unknown ones. */
#include "helpers.h"

#include <string.h>

static void test_own_codes_have_names_and_words(void **state) {
  (void)state;
  assert_string_equal(pbl_err_name(PBL_EEXPIRED), "PBL_EEXPIRED");
  assert_string_equal(pbl_err_name(PBL_ECLOSED), "PBL_ECLOSED");
  assert_string_equal(pbl_err_name(PBL_EFAILED), "PBL_EFAILED");
  assert_string_equal(pbl_err_name(PBL_ENOFUNC), "PBL_ENOFUNC");
  assert_string_equal(pbl_err_name(PBL_EPROTO), "PBL_EPROTO");
  assert_string_equal(pbl_err_name(PBL_EDEADLK), "PBL_EDEADLK");
  assert_string_equal(pbl_strerror(PBL_EEXPIRED),
                      "the process running the task died");
  assert_string_equal(pbl_strerror(PBL_EDEADLK),
                      "wait on the loop thread cannot finish");
}

static void test_own_codes_are_outside_libuv(void **state) {
  (void)state;
  int ours[] = {PBL_EEXPIRED, PBL_ECLOSED, PBL_EFAILED,
                PBL_ENOFUNC,  PBL_EPROTO,  PBL_EDEADLK};
  char buf[64];
  for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
    uv_err_name_r(ours[i], buf, sizeof(buf));
    assert_true(strncmp(buf, "Unknown", 7) == 0); /* libuv has no such */
    for (size_t j = 0; j < i; j++)
      assert_int_not_equal(ours[i], ours[j]);
  }
}

static void test_libuv_codes_pass_through(void **state) {
  (void)state;
  assert_string_equal(pbl_err_name(UV_EINVAL), "EINVAL");
  assert_string_equal(pbl_err_name(UV_ETIMEDOUT), "ETIMEDOUT");
  assert_string_equal(pbl_err_name(UV_ECANCELED), "ECANCELED");
  assert_string_equal(pbl_strerror(UV_ENOMEM), uv_strerror(UV_ENOMEM));
}

static void test_zero_and_unknown(void **state) {
  (void)state;
  assert_string_equal(pbl_err_name(0), "OK");
  assert_string_equal(pbl_strerror(0), "success");
  assert_string_equal(pbl_strerror(-123456), "unknown error -123456");
  assert_string_equal(pbl_err_name(-123457), "unknown error -123457");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_own_codes_have_names_and_words),
      cmocka_unit_test(test_own_codes_are_outside_libuv),
      cmocka_unit_test(test_libuv_codes_pass_through),
      cmocka_unit_test(test_zero_and_unknown),
  };
  return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
