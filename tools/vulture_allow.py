"""What vulture (`make lint`) reports as unused but an interface requires.

Each line names one such thing and says which interface.
"""

datefmt  # runtime.logs.IsoFormatter.formatTime keeps logging.Formatter.formatTime's signature
