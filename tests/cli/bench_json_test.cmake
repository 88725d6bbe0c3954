# `flashmla bench --json` on a tiny CPU case: the record carries the fields bench/results relies on
# (commit, device, date, per case the shape and the time), and the FLASHMLA_* variables of the
# run (which select kernel variants in A/B runs).
#   cmake -DFLASHMLA=<cli> -DWORK_DIR=<dir> -P bench_json_test.cmake
file(MAKE_DIRECTORY ${WORK_DIR})
set(json_file ${WORK_DIR}/bench.json)
file(REMOVE ${json_file})
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env FLASHMLA_DECODE_64ROW=serial FLASHMLA_COMBINE_PDL=0
    ${FLASHMLA} bench --device cpu --batch 2 --s-k 70 --heads 3 --iters 2 --no-ceilings
    --json ${json_file}
  RESULT_VARIABLE status
  OUTPUT_VARIABLE output
  ERROR_VARIABLE output)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "flashmla bench failed (${status}):\n${output}")
endif()
if(NOT output MATCHES "FLASHMLA_COMBINE_PDL=0, FLASHMLA_DECODE_64ROW=serial")
  message(FATAL_ERROR "the header does not name the FLASHMLA_* variables:\n${output}")
endif()
file(READ ${json_file} json)
foreach(key git_commit date device backend timing_method)
  string(JSON value ERROR_VARIABLE error GET "${json}" ${key})
  if(error OR value STREQUAL "")
    message(FATAL_ERROR "record lacks ${key}: ${error}\n${json}")
  endif()
endforeach()
string(JSON pdl GET "${json}" environment FLASHMLA_COMBINE_PDL)
string(JSON loop GET "${json}" environment FLASHMLA_DECODE_64ROW)
if(NOT pdl STREQUAL "0" OR NOT loop STREQUAL "serial")
  message(FATAL_ERROR "environment recorded as ${pdl} / ${loop}:\n${json}")
endif()
string(JSON cases LENGTH "${json}" cases)
if(NOT cases EQUAL 1)
  message(FATAL_ERROR "expected one case, got ${cases}:\n${json}")
endif()
foreach(key b h_q us)
  string(JSON value ERROR_VARIABLE error GET "${json}" cases 0 ${key})
  if(error)
    message(FATAL_ERROR "case lacks ${key}: ${error}\n${json}")
  endif()
endforeach()
string(JSON b GET "${json}" cases 0 b)
string(JSON us GET "${json}" cases 0 us)
if(NOT b EQUAL 2 OR NOT us GREATER 0)
  message(FATAL_ERROR "case recorded b=${b}, us=${us}:\n${json}")
endif()
