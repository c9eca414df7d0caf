"""``saverzoo demo``: real digits, a zoo trained on them (``data``), the whole run (``run``)."""
