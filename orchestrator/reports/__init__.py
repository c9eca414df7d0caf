"""A dataset's report: the page and its tables (``page``), and the plots (``plots``)."""
