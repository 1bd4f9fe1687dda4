# unix: the main script is the first file lexed with no Python frame active.
FAILSTOP_WRAP += mp_lexer_new_from_file
