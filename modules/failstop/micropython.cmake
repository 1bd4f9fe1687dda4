# failstop user C module (CMake-based ports: rp2, esp32).
# The platform half lives in ports/<port>/ of this repository; the port is
# MICROPY_PORT_DIR's name (ports/rp2 -> rp2), or -DFAILSTOP_PORT=... .
get_filename_component(FAILSTOP_ROOT ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)
if(NOT FAILSTOP_PORT)
    get_filename_component(FAILSTOP_PORT ${MICROPY_PORT_DIR} NAME)
endif()
set(FAILSTOP_PORT_DIR ${FAILSTOP_ROOT}/ports/${FAILSTOP_PORT})
if(NOT EXISTS ${FAILSTOP_PORT_DIR}/failstop_hal.c)
    message(FATAL_ERROR "failstop: no HAL for port '${FAILSTOP_PORT}' in ${FAILSTOP_ROOT}/ports (set FAILSTOP_PORT)")
endif()

add_library(usermod_failstop INTERFACE)

target_sources(usermod_failstop INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/failstop_core.c
    ${CMAKE_CURRENT_LIST_DIR}/failstop_frames.c
    ${CMAKE_CURRENT_LIST_DIR}/failstop_hooks.c
    ${CMAKE_CURRENT_LIST_DIR}/modfailstop.c
    ${FAILSTOP_PORT_DIR}/failstop_hal.c
)
# The port's integration glue (its --wrap shims of MicroPython and SDK functions), apart
# from the platform HAL, where the port has any.
if(EXISTS ${FAILSTOP_PORT_DIR}/failstop_glue.c)
    target_sources(usermod_failstop INTERFACE ${FAILSTOP_PORT_DIR}/failstop_glue.c)
    set(FAILSTOP_GLUE ${FAILSTOP_PORT_DIR}/failstop_glue.c)
endif()

target_include_directories(usermod_failstop INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}
    ${FAILSTOP_PORT_DIR}
)

# -DFAILSTOP_PROFILE=lean: the lean module (failstop_config.h), for every source of the
# firmware (port glue included).
if(FAILSTOP_PROFILE STREQUAL "lean")
    target_compile_definitions(usermod_failstop INTERFACE MICROPY_FAILSTOP_LEAN=1)
elseif(FAILSTOP_PROFILE AND NOT FAILSTOP_PROFILE STREQUAL "full")
    message(FATAL_ERROR "failstop: FAILSTOP_PROFILE=${FAILSTOP_PROFILE}: full or lean")
endif()

# The fault paths of py/, as in micropython.mk; a port adds its own in failstop_port.cmake.
# --wrap only redirects calls between translation units, and LTO merges them first:
# the hooks would silently never run.
if(CMAKE_INTERPROCEDURAL_OPTIMIZATION)
    message(FATAL_ERROR "failstop: LTO (CMAKE_INTERPROCEDURAL_OPTIMIZATION) bypasses the --wrap hooks; build without it")
endif()
set(FAILSTOP_WRAP m_malloc_fail mp_raise_recursion_depth nlr_jump_fail
    mp_execute_bytecode mp_obj_print_exception mp_init mp_deinit)
include(${FAILSTOP_PORT_DIR}/failstop_port.cmake OPTIONAL)
# Link options travel with the usermod interface onto the firmware target
# (target_link_libraries(${MICROPY_TARGET} usermod) in the port).
foreach(sym ${FAILSTOP_WRAP})
    target_link_options(usermod_failstop INTERFACE -Wl,--wrap=${sym})
endforeach()
# Keep the hooked calls out of any per-file LTO a port may add.
set_source_files_properties(
    ${CMAKE_CURRENT_LIST_DIR}/failstop_hooks.c ${FAILSTOP_PORT_DIR}/failstop_hal.c ${FAILSTOP_GLUE}
    PROPERTIES COMPILE_OPTIONS -fno-lto)

target_link_libraries(usermod INTERFACE usermod_failstop)
