"""Run the compiled regions: the step clock (``clock``), each call slot's caches (``state``), the
compiled variants by key (``variants``), one graph region's call (``region``) and the check of each
new variant against its reference (``self_check``)."""
