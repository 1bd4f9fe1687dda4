# The module's API as a program sees it: the full profile, or what the lean one keeps.
import failstop

print("API", sorted(n for n in dir(failstop) if not n.startswith("__")))
