# unix: the main script is the first file lexed with no Python frame active.
FAILSTOP_WRAP += mp_lexer_new_from_file
# unix: the fault path knows whether the program ever started a thread.
FAILSTOP_WRAP += mp_thread_create
