# The node's entry point: node.main() loads /config.json and /secrets.json,
# prints one `config error: <field>: <problem>` line and idles when they are
# invalid (reachable over the REPL, no reset loop), else runs the node.
# A crash of the runtime resets the chip after a pause (the outbox keeps the
# readings, the pause bounds a crash loop); Ctrl-C still reaches the REPL.
import sys
import time

import node

try:
    node.main()
except KeyboardInterrupt:
    raise
except Exception as e:  # anything else: report, pause, reset
    show = getattr(sys, "print_exception", None)
    if show:
        show(e)
    else:
        print("node: crashed: %r" % (e,))
    time.sleep(10)
    import board

    board.reset()
