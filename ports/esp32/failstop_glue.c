// failstop integration glue for the esp32 port: the main program's bracket (the
// platform itself, with IDF's panic and task-watchdog hooks, is in failstop_hal.c).
#include <string.h>

#include "py/runtime.h"
#include "py/builtin.h"
#include "shared/runtime/pyexec.h"
#include "failstop.h"
#include "failstop_pyexec.h"

// --- main.py -----------------------------------------------------------------------

// main.c runs boot.py, then main.py (friendly REPL only), both through this function.
int __real_pyexec_file_if_exists(const char *file);
int __wrap_pyexec_file_if_exists(const char *file) {
    return failstop_pyexec_main(file, __real_pyexec_file_if_exists);
}
