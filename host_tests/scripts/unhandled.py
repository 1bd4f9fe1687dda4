# An exception escaping the main program is a fault; sys.print_exception is not.
import failstop
import sys

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type, r.message, r.location, r.traceback)))
else:
    try:
        {}["missing"]
    except KeyError as e:
        sys.print_exception(e)  # printed, not a fault
    print("still running")

    def lookup(table):
        return table["valve"]  # FAULT

    lookup({})
