# Writes OUTPUT from TEMPLATE with the commit of SOURCE_DIR (`git rev-parse HEAD`) and whether
# the work tree differs from it. Run with cmake -P; configure_file leaves OUTPUT untouched when
# the content is unchanged, so dependents rebuild only after a commit or a change of state.
set(FLASHMLA_GIT_COMMIT "unknown")
set(FLASHMLA_GIT_DIRTY -1)  # -1: unknown
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} -C ${SOURCE_DIR} rev-parse HEAD
                  OUTPUT_VARIABLE commit RESULT_VARIABLE commit_rc
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(commit_rc EQUAL 0 AND commit)
    set(FLASHMLA_GIT_COMMIT "${commit}")
    # Untracked sources count (they are built too); ignored build folders do not. No optional
    # locks: others may be running git in the same tree.
    execute_process(COMMAND ${GIT_EXECUTABLE} --no-optional-locks -C ${SOURCE_DIR} status
                            --porcelain
                    OUTPUT_VARIABLE changes RESULT_VARIABLE status_rc ERROR_QUIET)
    if(status_rc EQUAL 0)
      if(changes STREQUAL "")
        set(FLASHMLA_GIT_DIRTY 0)
      else()
        set(FLASHMLA_GIT_DIRTY 1)
      endif()
    endif()
  endif()
endif()
configure_file(${TEMPLATE} ${OUTPUT} @ONLY)
