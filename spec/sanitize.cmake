# Configure, build and test a sanitizer sub-build: cmake -DSRC= -DDIR= -DKIND= -P sanitize.cmake
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC} -B ${DIR} -DCMAKE_BUILD_TYPE=RelWithDebInfo
                        -DMB_SANITIZE=${KIND} -DMB_SANITIZER_SUITES=OFF
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configure failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${DIR} -j 2 RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "build failed")
endif()
execute_process(COMMAND ${CMAKE_CTEST_COMMAND} --test-dir ${DIR} --output-on-failure RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "${KIND} suite failed")
endif()
