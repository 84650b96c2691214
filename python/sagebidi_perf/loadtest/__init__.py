"""The Locust load tester: ``locust -f loadtest/`` (thin locustfiles) on this library.

* :mod:`~sagebidi_perf.loadtest.users` -- abstract users (``SpeechUser``, ``EchoUser``,
  ``TextUser``) that fire Locust ``request`` events; imports Locust (gevent).
* :mod:`~sagebidi_perf.loadtest.plugin` -- the options, worker → master metric shipping, the
  end-of-run report and the SLO exit code; imports Locust.
* :mod:`~sagebidi_perf.loadtest.metrics` -- what is measured, defined precisely; HdrHistograms
  merged exactly across workers. Pure (no Locust, no gevent), as are ``options``, ``slo``,
  ``report``, ``sources`` and ``errors``.

This package's ``__init__`` imports nothing, so the pure modules load without Locust.
"""
