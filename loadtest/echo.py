"""Echo sessions: fixed-size frames at a fixed rate, every echo checked byte for byte
(``sagebidi serve --model echo``).

    locust -f loadtest/ --host ws://127.0.0.1:8080 --headless -u 100 -r 50 -t 30s EchoSessions
"""

from sagebidi_perf.loadtest.users import EchoUser


class EchoSessions(EchoUser):
    """--frame-bytes every 1/--frame-rate s for --session-seconds (default 3200 B, 10/s, 10 s)."""
