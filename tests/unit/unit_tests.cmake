# The core's internal tests: they link the static layers and reach their C++ classes. Included by
# tests/CMakeLists.txt and, with DALA_PHONE_TESTS, by tests/phone (the cross builds run them under qemu).
add_executable(dala_unit_tests
  ${CMAKE_CURRENT_LIST_DIR}/test_main.cc ${CMAKE_CURRENT_LIST_DIR}/crypto_test.cc ${CMAKE_CURRENT_LIST_DIR}/merkle_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/keyfile_test.cc ${CMAKE_CURRENT_LIST_DIR}/store_test.cc ${CMAKE_CURRENT_LIST_DIR}/store_keys_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/padding_test.cc ${CMAKE_CURRENT_LIST_DIR}/outbox_test.cc ${CMAKE_CURRENT_LIST_DIR}/attachment_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/portability_test.cc)
target_link_libraries(dala_unit_tests PRIVATE dala_store GTest::gtest OpenSSL::Crypto)
target_compile_definitions(dala_unit_tests PRIVATE DALA_TEST_SOURCE_DIR="${PROJECT_SOURCE_DIR}/tests")
gtest_discover_tests(dala_unit_tests PROPERTIES LABELS unit DISCOVERY_TIMEOUT 120)
