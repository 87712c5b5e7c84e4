"""Run the compiled regions: the step clock (``clock``), each call slot's caches (``state``), the
compiled variants by key (``variants``) and one graph region's call (``region``)."""
