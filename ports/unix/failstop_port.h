// failstop port configuration: unix.
#ifndef MICROPY_INCLUDED_FAILSTOP_PORT_H
#define MICROPY_INCLUDED_FAILSTOP_PORT_H

// MicroPython threads are pthreads: one shadow frame stack per thread.
#define FAILSTOP_TLS __thread

#endif
