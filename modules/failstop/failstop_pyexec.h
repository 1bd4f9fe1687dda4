// failstop: the main program's bracket for ports whose main.c runs boot.py and main.py
// through pyexec_file_if_exists (rp2, esp32). Their glue wraps that function:
//   int __wrap_pyexec_file_if_exists(const char *file) {
//       return failstop_pyexec_main(file, __real_pyexec_file_if_exists);
//   }
// Inline: ports without it (unix, the QEMU board) carry no copy.
#ifndef MICROPY_INCLUDED_FAILSTOP_PYEXEC_H
#define MICROPY_INCLUDED_FAILSTOP_PYEXEC_H

#include <string.h>
#include "py/builtin.h"
#include "failstop.h"

static inline int failstop_pyexec_main(const char *file, int (*real)(const char *)) {
    if (strcmp(file, "main.py") != 0 || mp_import_stat(file) != MP_IMPORT_STAT_FILE) {
        return real(file); // no main program: no healthy run either
    }
    if (!failstop_main_begin()) {
        return 1; // safe mode: main.py does not run; go on to the REPL
    }
    int ret = real(file);
    // It ended without a fail-stop fault (or under RAISE, as stock): a healthy run.
    failstop_main_end();
    return ret;
}

#endif // MICROPY_INCLUDED_FAILSTOP_PYEXEC_H
