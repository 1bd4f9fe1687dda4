// failstop integration glue for the esp32 port: the main program's bracket (the
// platform itself, with IDF's panic and task-watchdog hooks, is in failstop_hal.c).
#include <string.h>

#include "py/runtime.h"
#include "py/builtin.h"
#include "shared/runtime/pyexec.h"
#include "failstop.h"

// --- main.py -----------------------------------------------------------------------

// main.c runs boot.py, then main.py (friendly REPL only), both through this function.
int __real_pyexec_file_if_exists(const char *file);
int __wrap_pyexec_file_if_exists(const char *file) {
    if (strcmp(file, "main.py") != 0 || mp_import_stat(file) != MP_IMPORT_STAT_FILE) {
        return __real_pyexec_file_if_exists(file); // no main program: no healthy run either
    }
    if (!failstop_main_begin()) {
        return 1; // safe mode: main.py does not run; go on to the REPL
    }
    int ret = __real_pyexec_file_if_exists(file);
    // It ended without a fail-stop fault (or under RAISE, as stock): a healthy run.
    failstop_main_end();
    return ret;
}
