"""``saverzoo demo``: real digits, a zoo trained on them (``data``), the whole run (``run``)."""

WIDTH = 100  # the columns the demo's output fits: a README's excerpt, a log, a terminal
