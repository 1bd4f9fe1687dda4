// failstop port configuration: unix.
#ifndef MICROPY_INCLUDED_FAILSTOP_PORT_H
#define MICROPY_INCLUDED_FAILSTOP_PORT_H

// MicroPython threads are pthreads: one shadow frame stack per thread.
#define FAILSTOP_TLS __thread

// Set once the program starts a thread (failstop_glue.c): before that the fault path has
// no other thread to stop.
extern volatile unsigned char failstop_unix_threads_started;

#endif
