"""Entry point: the ``ncdma`` command line (:mod:`.main`) and its views for people."""
